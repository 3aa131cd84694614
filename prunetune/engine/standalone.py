"""One candidate scored outside a search (``prunetune evaluate``): an allocation applied
to the spec's model, or a model exported by ``prunetune export`` / ``prune``, on the
spec's task and REPORT split, against the dense model's reference."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from prunetune.spec import SearchSpec


def read_allocation(path: Path, names: list[str]) -> list[float]:
    """Per-layer sparsities, in ``names`` order, from a JSON file holding ``{layer:
    sparsity}`` or an object with an ``allocation`` of that form (a front.json point).

    Raises:
        ValueError: naming ``--allocation``, the file and what is wrong.
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"option '--allocation': got {str(path)!r}; a readable JSON file ({err})") from None
    if isinstance(data, dict) and isinstance(data.get("allocation"), dict):
        data = data["allocation"]
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise ValueError(f"option '--allocation': got {str(path)!r}; a JSON object {{layer: sparsity}}")
    unknown = sorted(set(data) - set(names))
    missing = [n for n in names if n not in data]
    if unknown or missing:
        raise ValueError(
            f"option '--allocation': {str(path)!r} names layers {unknown[:3]} the model does not have and lacks "
            f"{missing[:3]}; the spec's model has {len(names)} entries: {', '.join(names[:3])}, ...")
    values = [float(data[n]) for n in names]
    bad = [(n, v) for n, v in zip(names, values, strict=True) if not (math.isfinite(v) and 0.0 <= v < 1.0)]
    if bad:
        raise ValueError(f"option '--allocation': sparsity of {bad[0][0]!r} is {bad[0][1]}; allowed: [0, 1)")
    return values


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in metrics.items()}


def score_allocation(spec: SearchSpec, path: Path) -> dict[str, Any]:
    """REPORT-split metrics of the allocation in ``path`` applied to the spec's model, as a
    search scores a trial (the model is restored afterwards)."""
    from prunetune.engine.workbench import build_workbench

    bench = build_workbench(spec)
    sparsities = read_allocation(path, bench.space.names)
    metrics = bench.evaluator.evaluate(sparsities, split="report")
    q = bench.task.quality_name
    return {"split": "report", "quality": q, q: metrics[q], "nonzero_params": metrics["nonzero_params"],
            "sparsity": metrics["sparsity"], "metrics": _finite(metrics),
            "dense": _finite(bench.task.dense_reference())}


def score_export(spec: SearchSpec, directory: Path) -> dict[str, Any]:
    """REPORT-split metrics of the model exported in ``directory``, against the dense
    model the spec names (a plain module is rebuilt from the spec's model first)."""
    from prunetune.engine.sources import load_model
    from prunetune.evaluators.registry import build_task
    from prunetune.pruning.export import MANIFEST, load_pruned

    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise ValueError(f"option '--export': got {str(directory)!r}; a folder written by prunetune export or "
                         f"prunetune prune (it has no {MANIFEST})")
    dense = load_model(spec.model, seed=spec.seed)
    task = build_task(dense, spec.task)
    task.prepare(dense.model)
    manifest = json.loads((directory / MANIFEST).read_text())
    skeleton = None if manifest.get("library") == "transformers" else load_model(spec.model, seed=spec.seed).model
    model = load_pruned(directory, model=skeleton)
    metrics = task.score(model, "report")
    q = task.quality_name
    params = list(model.parameters())
    return {"split": "report", "quality": q, q: metrics[q],
            "parameters": sum(p.numel() for p in params),
            "nonzero_params": sum(int(torch.count_nonzero(p)) for p in params),
            "metrics": _finite(metrics), "dense": _finite(task.dense_reference())}
