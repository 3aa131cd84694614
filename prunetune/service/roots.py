"""Where the service may read models and data and write exports, and which code it runs.

Paths are confined by :func:`prunetune.paths.confine` (the one confinement function;
see there for ``PRUNETUNE_ROOTS``). This module applies it to every path a submitted
spec carries: ``model.path``, a file ``task.data`` and every ``strategy.options.*_path``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prunetune.errors import SpecError
from prunetune.paths import ROOTS_ENV, configured_roots, confine

__all__ = [
    "CODE_ENV",
    "ROOTS_ENV",
    "check_paths_at_open",
    "code_allowed",
    "configured_roots",
    "confine",
    "confine_spec",
    "is_data_path",
    "refuse_code",
]

# model.factory and task.function import and run code on the workers: a server accepts
# them only when its operator says so.
CODE_ENV = "PRUNETUNE_ALLOW_CODE"
# task.data values that name bundled data, not files.
_BUNDLED_DATA = ("pydoc", "digits")
# strategy options whose names end so are files the strategy reads or writes
# (policy-gradient's policy_path; any later one is confined by its name alone).
PATH_OPTION_SUFFIX = "_path"


def is_data_path(data: str) -> bool:
    return data not in _BUNDLED_DATA and not data.startswith("sklearn:")


def code_allowed() -> bool:
    return os.environ.get(CODE_ENV, "") == "1"


def refuse_code(data: object) -> None:
    """Over HTTP, refuse spec fields that would run the submitter's code on the workers
    unless the server's operator allows it (an embedded client runs its own code)."""
    if not isinstance(data, dict) or code_allowed():
        return
    model, task = data.get("model"), data.get("task")
    if isinstance(model, dict) and model.get("factory") is not None:
        raise SpecError("spec.model.factory", model["factory"],
                        f"runs code on the workers; this server refuses it unless {CODE_ENV}=1")
    if isinstance(task, dict) and task.get("function") is not None:
        raise SpecError("spec.task.function", task["function"],
                        f"runs code on the workers; this server refuses it unless {CODE_ENV}=1")


def confine_spec(data: Any) -> Any:
    """The submitted (raw) spec with every path it carries confined and made absolute,
    checked before the spec is parsed, so a refused path is never even looked at (no 'no
    such directory' answers about folders outside the roots). The stored spec names the
    resolved files, so the runner opens what was checked, not a path relative to its own
    working folder. Anything that is not a spec mapping is returned as given (the parser
    names what is wrong with it)."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    model, task, strategy = data.get("model"), data.get("task"), data.get("strategy")
    if isinstance(model, dict) and model.get("path") is not None:
        out["model"] = {**model, "path": str(confine("spec.model.path", model["path"]))}
    if isinstance(task, dict) and isinstance(task.get("data"), str) and is_data_path(task["data"]):
        out["task"] = {**task, "data": str(confine("spec.task.data", task["data"]))}
    if isinstance(strategy, dict) and isinstance(strategy.get("options"), dict):
        options = dict(strategy["options"])
        for key, value in strategy["options"].items():
            if isinstance(key, str) and key.endswith(PATH_OPTION_SUFFIX) and value is not None:
                options[key] = str(confine(f"spec.strategy.options.{key}", value))
        out["strategy"] = {**strategy, "options": options}
    return out


def check_paths_at_open(spec: dict[str, Any]) -> None:
    """The runner's check of a stored spec before it opens anything: every path confined
    again (a symlink swapped in since submit is refused), and a ``policy_path`` that exists
    must be a policy file. Errors name the file, never its contents (torch's own message
    would quote its first byte)."""
    confine_spec(spec)
    options = (spec.get("strategy") or {}).get("options") or {}
    policy = options.get("policy_path")
    if not isinstance(policy, str) or not Path(policy).exists():
        return
    if not Path(policy).is_file():
        raise SpecError("strategy.options.policy_path", policy, "a policy file (or a path where one is written); "
                        "this is a folder")
    import torch

    try:
        state = torch.load(policy, weights_only=True)
    except Exception as err:
        raise SpecError("strategy.options.policy_path", policy,
                        f"a policy file written by the policy-gradient strategy; this file is not one "
                        f"({type(err).__name__})") from None
    if not isinstance(state, dict) or "state" not in state:
        raise SpecError("strategy.options.policy_path", policy,
                        "a policy file written by the policy-gradient strategy; this file is not one")
