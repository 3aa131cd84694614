"""The one place a path from a request is turned into a file the service may touch.

``PRUNETUNE_ROOTS`` (folders separated by ``os.pathsep``; ``prunetune serve --roots`` and
``prunetune runner --roots`` set it) confines every path a request can carry: the spec's
``model.path``, a file ``task.data``, every ``strategy.options.*_path`` and an export's
``out``. :func:`confine` is called when the request is accepted and again where the file
is opened (the runner, the data readers, the exporter), so a symlink swapped in between
is caught too.

A relative path is resolved against the roots (the first root it exists under, else the
first root), never against a process's working folder: the API server and a runner
started in different folders open the same file. Without roots, paths are not confined
(a local user's own machine), but a relative path is made absolute when the job is
submitted, and a ``..`` component is refused all the same.
"""

from __future__ import annotations

import os
from pathlib import Path

from prunetune.errors import SpecError

ROOTS_ENV = "PRUNETUNE_ROOTS"
# Linux limits (NAME_MAX, PATH_MAX): a longer name is an ENAMETOOLONG from the kernel,
# answered here as a 422 before any file system call sees it.
NAME_MAX = 255
PATH_MAX = 4096


def configured_roots() -> list[Path] | None:
    raw = os.environ.get(ROOTS_ENV, "")
    roots = [Path(r).expanduser().resolve() for r in raw.split(os.pathsep) if r.strip()]
    return roots or None


def _base(path: Path, roots: list[Path] | None) -> Path:
    if path.is_absolute():
        return path
    if roots is None:
        return Path.cwd() / path
    for root in roots:
        try:
            if (root / path).exists():
                return root / path
        except OSError:
            continue
    return roots[0] / path


def confine(field: str, path: object, roots: list[Path] | None = None) -> Path:
    """``path`` resolved (symlinks followed), if a request may name it.

    ``roots`` defaults to :func:`configured_roots`. Refused, as a :class:`SpecError`
    naming ``field``: a non-string, a NUL byte, text that is not valid UTF-8 (a lone
    surrogate), a name over 255 bytes or a path over 4096, a ``..`` component, a symlink
    loop, and (with roots) anything that resolves outside every root, symlinks included.
    Nothing is created and no file is read.
    """
    if not isinstance(path, str) or not path:
        raise SpecError(field, path, "a non-empty path (a string)")
    if "\x00" in path:
        raise SpecError(field, path, "a path without NUL bytes")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise SpecError(field, path, "a path in valid UTF-8 (no lone surrogates)") from None
    if len(encoded) > PATH_MAX:
        raise SpecError(field, path, f"a path of at most {PATH_MAX} bytes (got {len(encoded)})")
    parts = Path(path).parts
    longest = max((len(p.encode("utf-8")) for p in parts), default=0)
    if longest > NAME_MAX:
        raise SpecError(field, path, f"path components of at most {NAME_MAX} bytes (one has {longest})")
    if ".." in parts:
        raise SpecError(field, path, "a path without '..' components (path traversal is refused)")
    roots = roots if roots is not None else configured_roots()
    given = Path(path)
    if roots is None and path.startswith("~"):
        try:
            given = given.expanduser()
        except RuntimeError:
            raise SpecError(field, path, "a path whose '~' names an existing user") from None
    try:
        resolved = _base(given, roots).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop, an unreadable folder
        raise SpecError(field, path, f"a path that resolves ({type(err).__name__})") from None
    if len(str(resolved).encode("utf-8")) > PATH_MAX:
        raise SpecError(field, path, f"a path of at most {PATH_MAX} bytes once resolved")
    if roots is not None and not any(resolved.is_relative_to(r) for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise SpecError(field, path, f"a path inside the configured roots ({ROOTS_ENV}={shown}; "
                        "relative paths are read from there, symlinks must stay inside)")
    return resolved


def confine_open(field: str, path: str) -> Path:
    """Where a reader opens a request's file: :func:`confine` when roots are configured
    (the runner's own check, after the API's), the path as given otherwise."""
    if configured_roots() is None:
        return Path(path).expanduser()
    return confine(field, path)
