"""The task registry: every kind a spec allows names a Task class, loaded lazily."""

from __future__ import annotations

import typing

import pytest

from prunetune.errors import SpecError
from prunetune.evaluators.registry import TASKS, task_class
from prunetune.evaluators.tasks import Task
from prunetune.spec import TaskSpec


def test_every_spec_kind_is_registered() -> None:
    kinds = typing.get_args(TaskSpec.model_fields["kind"].annotation)
    assert set(kinds) == set(TASKS)
    for kind in kinds:
        assert issubclass(task_class(kind), Task)


def test_an_unknown_kind_names_the_choices() -> None:
    with pytest.raises(SpecError, match=r"task.kind.*nonsense.*embedding, classification, causal-lm, callable"):
        task_class("nonsense")
