"""What runs a job: the workbench (model, task, scores, pruner), the job runner, the
model sources and the REPORT-split scoring."""
