"""Project exceptions. A user error names the field, the value it got and what is allowed."""

from __future__ import annotations

# Values echoed in error messages are cut to this many characters: a request can carry
# megabytes, and its error should not.
SHOWN_CHARS = 200


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters (with how many were left out)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


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
        super().__init__(f"spec field '{field}': got {shown(value)}; {allowed}")


class BudgetError(PrunetuneError, ValueError):
    """A sparsity target cannot be met within the per-layer bounds."""


class EvaluationError(PrunetuneError, RuntimeError):
    """An evaluation produced no usable result (raised, NaN, infinite)."""


class OptionError(PrunetuneError, ValueError):
    """A component's constructor option was rejected (a strategy's ``m``, ``radius``, ...).

    Raised by the component, which knows only its own option names; whoever built it from
    a spec adds the path (``build_strategy`` reports ``strategy.options.<option>``).
    """

    def __init__(self, option: str, value: object, allowed: str) -> None:
        self.option = option
        self.value = value
        self.allowed = allowed
        super().__init__(f"option '{option}': got {shown(value)}; {allowed}")
