"""Provenance shared by the benchmark scripts: what a result file needs so that a reader
can tell which code, model, data, seeds and machine produced it.

``provenance(config, bench=..., seeds=...)`` returns one dict for the result's
``"provenance"`` key: a hash of the benchmark's configuration (the spec's own digest when
a spec is given), the model fingerprint and data-split hashes of a workbench, the seeds,
package versions, the git commit, the date (UTC), the machine and its CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from prunetune.engine.runner import package_versions
from prunetune.engine.workbench import Workbench
from prunetune.evaluators.model import LoadedModel
from prunetune.evaluators.tasks import Task
from prunetune.spec import SearchSpec

ROOT = Path(__file__).resolve().parents[1]


def config_hash(config: Mapping[str, Any]) -> str:
    """16 hex digits of SHA-256 over the config as sorted JSON (paths and objects as str)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def machine() -> str:
    """``x86_64 Linux, 2 CPUs`` plus the processor name where the platform reports one."""
    cpu = platform.processor()
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs" + (f" ({cpu})" if cpu else "")


def cpu() -> str:
    """The processor and the vector kernels torch picked on it, e.g. ``AMD EPYC (family 25
    model 17), torch AVX512``. Float results of the same code can differ in the last bits
    between kernel levels, and a model trained from scratch (the benchmarks' Llama) then
    comes out another model: this is what tells such a rerun apart."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']} model {fields['model']})"
    return f"{name}, torch {torch.backends.cpu.get_cpu_capability()}"


def project_path(path: Path) -> str:
    """A path as a result file records it: relative to the project root when it lies inside
    the project (so the file reads the same on every checkout), as given otherwise."""
    return str(path.relative_to(ROOT) if path.is_absolute() and path.is_relative_to(ROOT) else path)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return out.stdout.strip()


# The commit the benchmark's code came from: taken when the benchmark starts, since a long
# run may end after later commits.
COMMIT_AT_START = git_commit()


def provenance(
    config: Mapping[str, Any],
    *,
    bench: Workbench | None = None,
    spec: SearchSpec | None = None,
    loaded: LoadedModel | None = None,
    task: Task | None = None,
    seeds: Sequence[int] = (0,),
) -> dict[str, Any]:
    """Provenance for a result file.

    Args:
        config: the benchmark's settings (e.g. ``vars(args)``); hashed as ``config_hash``.
        bench: the workbench the run used, for the model fingerprint and data-split hashes.
        spec: the job spec, hashed as ``spec_hash`` (defaults to ``bench.spec``).
        loaded, task: the model and task of a run without a workbench (default: the bench's).
        seeds: every seed the run used.
    """
    if bench is not None:
        spec, loaded, task = spec or bench.spec, loaded or bench.loaded, task or bench.task
    out: dict[str, Any] = {
        "config_hash": config_hash(config),
        "spec_hash": spec.digest() if spec is not None else None,
        "model": loaded.name if loaded is not None else None,
        "model_fingerprint": (bench.fingerprint if bench is not None
                              else loaded.fingerprint() if loaded is not None else None),
        "data_hashes": task.data_hashes() if task is not None else None,
        "seeds": list(seeds),
        "versions": package_versions(),
        "git_commit": COMMIT_AT_START,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "cpu": cpu(),
    }
    return out
