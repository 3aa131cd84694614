"""prunetune.evaluators"""
