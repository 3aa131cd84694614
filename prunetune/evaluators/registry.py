"""Task kinds a spec may name (``task.kind``), mapped lazily to their classes.

The base module (``tasks.py``) knows none of its subclasses; adding a task is adding
one module and one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prunetune.errors import SpecError
from prunetune.lazy import load_entry

if TYPE_CHECKING:
    from prunetune.evaluators.model import LoadedModel
    from prunetune.evaluators.tasks import Task
    from prunetune.spec import TaskSpec

# kind -> "module:Class"
TASKS: dict[str, str] = {
    "embedding": "prunetune.evaluators.tasks:EmbeddingTask",
    "classification": "prunetune.evaluators.classification:ClassificationTask",
    "causal-lm": "prunetune.evaluators.causal_lm:CausalLMTask",
    "callable": "prunetune.evaluators.callable_task:CallableTask",
}


def task_class(kind: str) -> type[Task]:
    """The task class registered under ``kind``; raises SpecError naming the choices."""
    if kind not in TASKS:
        raise SpecError("task.kind", kind, f"allowed: {', '.join(TASKS)}")
    return load_entry(TASKS, kind)  # type: ignore[no-any-return]


def build_task(loaded: LoadedModel, spec: TaskSpec) -> Task:
    """The task a spec names, with its data loaded and tokenised."""
    return task_class(spec.kind)(loaded, spec)  # type: ignore[call-arg]


__all__ = ["TASKS", "build_task", "task_class"]
