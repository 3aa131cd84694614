"""What a submitted spec must satisfy before anything is written.

The parser (:mod:`prunetune.spec`) judges the fields it knows; two things it leaves open
are checked here, so a job is refused at submit time (422 naming the field) instead of
being stored and failing on the runner, or worse, being stored and unreadable:

- every value can be stored and served back: strings in valid UTF-8 (a lone surrogate is
  refused: the row would commit and every later ``GET /jobs/{id}`` fail), finite
  numbers, string keys, nesting at most :data:`MAX_DEPTH` deep;
- ``strategy.options`` names only options the strategy accepts.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from prunetune.errors import SpecError

MAX_DEPTH = 32
# Constructor arguments that the controller passes itself, never a spec.
_NOT_OPTIONS = {"self", "space", "budget", "context"}


def check_storable(value: Any, field: str = "spec", depth: int = 0) -> None:
    """Raise SpecError on the first value under ``field`` that cannot be stored as JSON
    and served back as UTF-8."""
    if depth > MAX_DEPTH:
        raise SpecError(field, "...", f"values nested at most {MAX_DEPTH} deep")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError(field, value, "text in valid UTF-8 (no lone surrogates)") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError(field, value, "a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SpecError(field, key, "mapping keys are strings")
            check_storable(key, f"{field}.<key>", depth + 1)
            check_storable(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_storable(item, f"{field}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, (bool, int)):
        raise SpecError(field, type(value).__name__, "JSON values only")


def strategy_options(name: str) -> set[str] | None:
    """The options strategy ``name`` accepts (keyword arguments of its constructor);
    None when it takes any (``**kwargs``)."""
    from prunetune.search.registry import strategy_class

    params = inspect.signature(strategy_class(name).__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name not in _NOT_OPTIONS
            and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def check_strategy_options(spec: dict[str, Any]) -> None:
    """Refuse a ``strategy.options`` key that the named strategy does not take (the
    runner would fail the job with a TypeError after loading the model)."""
    strategy = spec.get("strategy") or {}
    options = strategy.get("options") or {}
    allowed = strategy_options(strategy.get("name", "random"))
    if allowed is None:
        return
    for key in options:
        if key not in allowed:
            raise SpecError(f"spec.strategy.options.{key}", options[key],
                            f"strategy {strategy.get('name', 'random')!r} takes the options "
                            f"{', '.join(sorted(allowed))}")
