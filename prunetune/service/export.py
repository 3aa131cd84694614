"""Export one trial of a job: rebuild the job's model, apply the trial's allocation,
write the pruned model with :func:`prunetune.pruning.export.export` (loadable with
``prunetune.load_pruned``), and ``prunetune-job.json`` (job, trial, allocation, spec).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prunetune.spec import SearchSpec


def _bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def export_trial(spec: SearchSpec, allocation: dict[str, float], out: str | Path,
                 meta: dict[str, Any], weights: str = "dense") -> dict[str, Any]:
    """Write the model of ``spec`` pruned by ``allocation`` (layer -> sparsity) to ``out``,
    with the model's tokenizer; ``weights``: ``dense`` or ``compressed-tensors`` (see
    :func:`prunetune.pruning.export.export`).

    Returns ``{"path", "nbytes", "format"}``.
    """
    from prunetune.engine.workbench import build_workbench
    from prunetune.pruning.export import export

    out = Path(out).expanduser().resolve()
    bench = build_workbench(spec)
    missing = [n for n in bench.space.names if n not in allocation]
    if missing:
        raise ValueError(f"allocation lacks layers {missing[:3]}; the job's model has {len(bench.space.names)} layers")
    sparsities = [float(allocation[n]) for n in bench.space.names]
    meta = {**meta, "allocation": dict(zip(bench.space.names, sparsities, strict=True)),
            "spec": spec.to_dict(), "model": bench.loaded.name}
    with bench.pruner.applied(sparsities):
        export(bench.loaded.model, out, tokenizer=bench.loaded.tokenizer, format=weights)
        (out / "prunetune-job.json").write_text(json.dumps(meta, indent=2, default=str))
    return {"path": str(out), "nbytes": _bytes_under(out), "format": "prunetune.export"}


def pick_point(points: list[Any], *, job: int, best: bool = False, sparsity: float | None = None) -> Any:
    """The front point ``prunetune export --best`` / ``--sparsity X`` means.

    ``best``: the point of highest quality (REPORT split where every point has it, else
    the search split). ``sparsity``: the best point at least that sparse (a fraction).

    Raises:
        ValueError: naming the option, the value and what the front allows.
    """
    if sparsity is not None and not 0.0 <= sparsity < 1.0:
        raise ValueError(f"option '--sparsity': got {sparsity}; give a fraction in [0, 1), e.g. 0.7")
    if not points:
        raise ValueError(f"job {job} has no completed trial yet: its front is empty, nothing to export")
    reported = all(isinstance(p.report.get(p.quality_name), float) for p in points)

    def quality(p: Any) -> float:
        return float(p.report[p.quality_name] if reported else p.quality)

    pool = points
    if sparsity is not None:
        pool = [p for p in points if p.sparsity is not None and p.sparsity >= sparsity - 1e-9]
        if not pool:
            top = max((p.sparsity for p in points if p.sparsity is not None), default=0.0)
            raise ValueError(f"option '--sparsity': got {sparsity}; job {job}'s front reaches at most "
                             f"{top:.4f}: give a value <= {top:.4f}")
    return max(pool, key=lambda p: (quality(p), -p.trial))
