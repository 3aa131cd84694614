"""Everything a job evaluates with, built once: model, task, layers, scores, pruner.

Used by the controller in-process and by every worker actor, so a worker builds exactly
what the controller would. Scores come from the on-disk cache when the same model,
criterion and calibration data were scored before.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from prunetune.evaluators.evaluator import Evaluator
from prunetune.evaluators.sources import LoadedModel, load_model
from prunetune.evaluators.tasks import Task, build_task
from prunetune.pruning.cache import ScoreCache, cache_key
from prunetune.pruning.calibration import collect_input_stats
from prunetune.pruning.importance import get_criterion
from prunetune.pruning.masks import Pruner
from prunetune.spaces.layers import PrunableLayer, discover_layers, weight_matrix
from prunetune.spaces.space import SearchSpace
from prunetune.spec import SearchSpec

log = logging.getLogger(__name__)


@dataclass
class Workbench:
    spec: SearchSpec
    loaded: LoadedModel
    task: Task
    layers: list[PrunableLayer]
    space: SearchSpace
    pruner: Pruner
    evaluator: Evaluator
    fingerprint: str
    timings: dict[str, float] = field(default_factory=dict)


def compute_scores(
    loaded: LoadedModel, task: Task, layers: list[PrunableLayer], criterion_name: str
) -> dict[str, torch.Tensor]:
    """Importance scores of every layer's ``(out, in)`` view (one calibration pass)."""
    criterion = get_criterion(criterion_name)
    stats = None
    if criterion.needs_inputs:
        stats = collect_input_stats(
            loaded.model, layers, task.calibration_batches(), task.forward, task.token_mask
        )
    modules = dict(loaded.model.named_modules())
    return {
        layer.name: criterion(
            weight_matrix(modules[layer.name], layer), None if stats is None else stats[layer.name]
        ).contiguous()
        for layer in layers
    }


def build_workbench(spec: SearchSpec, cache: ScoreCache | None = None) -> Workbench:
    if spec.resources.threads:
        torch.set_num_threads(spec.resources.threads)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    loaded = load_model(spec.model, seed=spec.seed)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    task = build_task(loaded, spec.task)
    layers = discover_layers(loaded.model, spec.space.include, spec.space.exclude)
    total = sum(p.numel() for p in loaded.model.parameters())
    prunable = sum(layer.numel for layer in layers)
    space = SearchSpace(
        layers=tuple(layers),
        lo=spec.space.min,
        hi=spec.space.max,
        step=spec.space.step,
        target=spec.target.sparsity if spec.target else None,
        extra_params=total - prunable,
    )
    fingerprint = loaded.fingerprint()
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    cache = cache or ScoreCache()
    key = cache_key(
        model=fingerprint,
        criterion=spec.space.criterion,
        calibration=task.data_hashes()["calibration"],
        layers=[layer.name for layer in layers],
    )
    scores = cache.get(key)
    if scores is None:
        scores = compute_scores(loaded, task, layers, spec.space.criterion)
        cache.put(key, scores)
        log.info("scored %d layers with %s", len(layers), spec.space.criterion)
    timings["scores"] = time.perf_counter() - t

    t = time.perf_counter()
    task.prepare(loaded.model)
    timings["dense_reference"] = time.perf_counter() - t
    pruner = Pruner(loaded.model, layers, scores, groups=spec.space.groups)
    evaluator = Evaluator(loaded.model, task, pruner, space, spec=spec)
    return Workbench(spec, loaded, task, layers, space, pruner, evaluator, fingerprint, timings)
