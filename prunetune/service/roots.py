"""Where the service may read models and data and write exports.

``PRUNETUNE_ROOTS`` (folders separated by ``os.pathsep``; ``prunetune serve --roots``
sets it) confines every path a request names: ``spec.model.path``, a file
``spec.task.data`` and an export's ``out`` must resolve (symlinks followed) inside one
of them. Unset, paths are not confined, but a request path with a ``..`` component is
refused all the same.
"""

from __future__ import annotations

import os
from pathlib import Path

from prunetune.errors import SpecError

ROOTS_ENV = "PRUNETUNE_ROOTS"
# model.factory and task.function import and run code on the workers: a server accepts
# them only when its operator says so.
CODE_ENV = "PRUNETUNE_ALLOW_CODE"
# task.data values that name bundled data, not files.
_BUNDLED_DATA = ("pydoc", "digits")


def configured_roots() -> list[Path] | None:
    raw = os.environ.get(ROOTS_ENV, "")
    roots = [Path(r).expanduser().resolve() for r in raw.split(os.pathsep) if r.strip()]
    return roots or None


def confine(field: str, path: str, roots: list[Path] | None = None) -> Path:
    """``path`` resolved, if it is allowed; otherwise a SpecError naming ``field``."""
    roots = roots if roots is not None else configured_roots()
    if ".." in Path(path).parts:
        raise SpecError(field, path, "a path without '..' components (path traversal is refused)")
    resolved = Path(path).expanduser().resolve()
    if roots is not None and not any(resolved.is_relative_to(r) for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise SpecError(field, path, f"a path inside the configured roots ({ROOTS_ENV}={shown})")
    return resolved


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


def confine_spec(data: object) -> None:
    """Check the paths of a submitted (raw) spec before it is parsed, so a refused path is
    never even looked at (no 'no such directory' answers about folders outside the roots)."""
    if not isinstance(data, dict):
        return
    model, task = data.get("model"), data.get("task")
    if isinstance(model, dict) and isinstance(model.get("path"), str):
        confine("spec.model.path", model["path"])
    if isinstance(task, dict) and isinstance(task.get("data"), str) and is_data_path(task["data"]):
        confine("spec.task.data", task["data"])
