"""Starting or joining Ray for one job.

By default a job starts its own local Ray: CPUs from the machine, no dashboard, quiet
logs, and every file Ray writes (session folders, logs, sockets) under the job's folder
instead of ``/tmp/ray``, and no auth token in ``~/.ray`` (the token is handed over in
the environment). With an address it joins an
existing cluster instead. A Ray session that is already running in this process (a
notebook, a test, Ray Tune) is reused and left running.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

RAY_MISSING = (
    "resources.workers >= 1 and --ray-address need Ray: pip install 'ray[tune]>=2.40' "
    "(or run with --workers 0 to evaluate in this process)"
)

# Ray puts Unix sockets under <temp>/session_<date>_<pid>/sockets/; the whole path must
# fit in 107 bytes, which leaves about 40 for the temp folder itself.
_MAX_TEMP_DIR_LEN = 40

_PROCESS_TOKEN = secrets.token_hex(32)


def import_ray() -> ModuleType:
    """``import ray``, or an ImportError that says what to install."""
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"{RAY_MISSING} ({err})") from err
    return ray


@dataclass
class RaySession:
    """What ``start_ray`` set up, and therefore what ``close`` takes down."""

    owned: bool
    address: str | None = None
    temp_dir: Path | None = None
    remove_dir: bool = False
    link: Path | None = None
    saved_env: dict[str, str | None] = field(default_factory=dict)

    def close(self) -> None:
        if not self.owned:
            return
        self.owned = False
        import_ray().shutdown()
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self.link is not None:
            self.link.unlink(missing_ok=True)
        if self.remove_dir and self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def _set_env(session: RaySession, key: str, value: str) -> None:
    session.saved_env.setdefault(key, os.environ.get(key))
    os.environ[key] = value


def _short_temp_dir(folder: Path, session: RaySession) -> Path:
    """``folder`` itself when its path is short enough for Ray's sockets, else a short
    symlink to it in the system temp folder (removed at close; the files stay in
    ``folder``)."""
    if len(str(folder)) <= _MAX_TEMP_DIR_LEN:
        return folder
    link = Path(tempfile.gettempdir()) / f"pt-ray-{secrets.token_hex(4)}"
    link.symlink_to(folder, target_is_directory=True)
    session.link = link
    return link


def start_ray(address: str | None, *, num_cpus: float, job_dir: str | Path | None = None) -> RaySession:
    """Join ``address``, or start a local Ray with at least ``num_cpus`` CPUs.

    Args:
        address: a Ray cluster address (``"host:6379"``, ``"ray://host:10001"``,
            ``"auto"``), or None for a local Ray owned by this job.
        num_cpus: CPUs the job's actors reserve in all; a local Ray gets the machine's
            CPUs or this many, whichever is more (more actors than cores share them).
        job_dir: the job's folder; Ray's files go to ``job_dir/ray``. None: a fresh
            folder in the system temp folder, removed at close.
    """
    ray = import_ray()
    if ray.is_initialized():
        log.info("reusing the Ray session already running in this process")
        return RaySession(owned=False)
    session = RaySession(owned=True, address=address)
    _set_env(session, "RAY_USAGE_STATS_ENABLED", os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))
    common = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address is not None:
        try:
            ray.init(address=address, **common)
        except ConnectionError as err:
            session.owned = False
            raise ConnectionError(
                f"--ray-address {address!r}: no Ray cluster answered ({err}); start one with "
                "`ray start --head` or drop --ray-address to start a local Ray"
            ) from err
        return session

    if job_dir is None:
        folder = Path(tempfile.mkdtemp(prefix="prunetune-ray-"))
        session.remove_dir = True
    else:
        folder = Path(job_dir).expanduser().resolve() / "ray"
        folder.mkdir(parents=True, exist_ok=True)
    session.temp_dir = folder
    temp = _short_temp_dir(folder, session)
    if not any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        # A local ray.init turns token auth on (setting RAY_AUTH_MODE itself, which we
        # undo at close) and writes a token to ~/.ray unless it finds one. Hand it one
        # through the environment instead, so no token file is written at all. Ray caches
        # the token it first reads, so a process keeps one token for all its jobs.
        session.saved_env.setdefault("RAY_AUTH_MODE", None)
        _set_env(session, "RAY_AUTH_TOKEN", _PROCESS_TOKEN)
    machine = os.cpu_count() or 1
    cpus = max(machine, math.ceil(num_cpus))
    if cpus > machine:
        log.warning("the actors reserve %s CPUs on a %d-CPU machine: they will share cores", num_cpus, machine)
    # Ray warns that it turned token auth on; that is the default and not news.
    auth_log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=str(temp), **common)
    except BaseException:
        session.close()
        raise
    finally:
        auth_log.setLevel(level)
    return session
