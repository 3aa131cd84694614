"""Project exceptions. A user error names the field, the value it got and what is allowed."""

from __future__ import annotations


class PrunetuneError(Exception):
    """Base class for errors raised by prunetune."""


class SpecError(PrunetuneError, ValueError):
    """A job spec (or one of its fields) was rejected.

    ``str(err)`` is a single line: ``spec field 'space.max': got 1.5; <what is allowed>``.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"spec field '{field}': got {value!r}; {allowed}")


class BudgetError(PrunetuneError, ValueError):
    """A sparsity target cannot be met within the per-layer bounds."""


class EvaluationError(PrunetuneError, RuntimeError):
    """An evaluation produced no usable result (raised, NaN, infinite)."""
