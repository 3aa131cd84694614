"""Everything a job evaluates with, built once: model, task, layers, scores, pruner.

Used by the controller in-process and by every worker actor, so a worker builds exactly
what the controller would. Scores come from the on-disk cache when the same model,
criterion and calibration data were scored before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from prunetune.engine.sources import load_model
from prunetune.evaluators.evaluator import Evaluator
from prunetune.evaluators.model import LoadedModel
from prunetune.evaluators.registry import build_task
from prunetune.evaluators.tasks import Task
from prunetune.pruning.cache import ScoreCache, cache_key
from prunetune.pruning.calibration import Calibration, collect_input_stats
from prunetune.pruning.granularity import build_pruner, parse_granularity, search_entries
from prunetune.pruning.layers import discover_layers, weight_matrix
from prunetune.pruning.levels import (
    LevelCache,
    LevelDatabase,
    LevelPruner,
    build_levels,
    grid_counts,
)
from prunetune.pruning.masks import Pruner
from prunetune.pruning.reconstruction import SparseGPTConfig
from prunetune.pruning.scoring import score_layers, score_units
from prunetune.pruning.structured import resolve_units
from prunetune.pruning.structures import STRUCTURE_KINDS, StructureUnit
from prunetune.search.base import SearchContext
from prunetune.search.strategies.owl_stats import layer_stats
from prunetune.spaces.space import PrunableLayer, SearchSpace
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
    units: list[StructureUnit] = field(default_factory=list)  # structured granularities
    score_key: str = ""  # the score cache entry build_workbench filled
    score_cache: ScoreCache | None = None
    levels: LevelDatabase | None = None  # space.reconstruction: the level database

    def scores(self) -> dict[str, torch.Tensor]:
        """The job's importance scores, read back from the cache ``build_workbench``
        filled; scored again on the dense weights only if that entry has gone."""
        cache = self.score_cache or ScoreCache()
        scores = cache.get(self.score_key)
        if scores is None:
            log.info("score cache entry %s not found; scoring again", self.score_key)
            self.pruner.restore()
            scores = compute_scores(self.loaded, self.task, self.layers, self.spec.space.criterion, self.units)
            cache.put(self.score_key, scores)
        return scores

    def search_context(self) -> SearchContext:
        """Score statistics for strategies that use them (OWL's), from the cached scores."""
        return SearchContext(stats=layer_stats(self.scores(), self.layers))


def compute_scores(
    loaded: LoadedModel,
    task: Task,
    layers: list[PrunableLayer],
    criterion_name: str,
    units: list[StructureUnit] | None = None,
) -> dict[str, torch.Tensor]:
    """Importance scores of every layer's ``(out, in)`` view, or of every structure of
    ``units`` for structured granularities (one calibration pass; gradient criteria use
    ``task.loss``)."""
    calibration = Calibration(task.calibration_batches(), task.forward, task.loss, task.token_mask)
    if units is None and layers and all(layer.kind in STRUCTURE_KINDS for layer in layers):
        units = resolve_units(loaded.model, layers)  # callers that pass a structured bench.layers
    if units:
        return score_units(loaded.model, units, criterion_name, calibration)
    return score_layers(loaded.model, layers, criterion_name, calibration)


def assemble(
    spec: SearchSpec,
    model: nn.Module,
    task: Task,
    layers: Sequence[PrunableLayer],
    units: Sequence[StructureUnit],
    space: SearchSpace,
    scores: Mapping[str, torch.Tensor],
    levels: LevelDatabase | None = None,
) -> tuple[Pruner, Evaluator]:
    """The pruner and evaluator of a job, for the controller's workbench and for every
    worker alike (so a worker prunes with the job's granularity, N:M pattern and groups,
    and assembles reconstructed levels when the job has a level database)."""
    granularity = parse_granularity(spec.space.granularity)
    if levels is not None:
        pruner: Pruner = LevelPruner(model, layers, levels, pattern=granularity.pattern)
    else:
        pruner = build_pruner(model, granularity, layers, units, scores, groups=spec.space.groups)
    # Size metrics and recovery read real weight matrices; structured entries are units,
    # so those see the layers underneath (zeroed rows and columns count as pruned there).
    weights = replace(space, layers=tuple(discover_layers(model, spec.space.include,
                                                          spec.space.exclude))) if units else space
    evaluator = Evaluator(model, task, pruner, weights, spec=spec)
    evaluator.space = space
    return pruner, evaluator


def build_workbench(spec: SearchSpec, cache: ScoreCache | None = None) -> Workbench:
    if spec.resources.threads:
        torch.set_num_threads(spec.resources.threads)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    loaded = load_model(spec.model, seed=spec.seed)
    timings["load"] = time.perf_counter() - t

    t = time.perf_counter()
    task = build_task(loaded, spec.task)
    granularity = parse_granularity(spec.space.granularity)
    # Structured granularities: one entry per unit (a block's heads, its MLP neurons...).
    layers, units = search_entries(loaded.model, granularity, spec.space.include, spec.space.exclude)
    total = sum(p.numel() for p in loaded.model.parameters())
    prunable = sum(layer.numel for layer in layers)
    space = SearchSpace(
        layers=tuple(layers),
        lo=spec.space.min,
        hi=spec.space.max,
        step=spec.space.step,
        target=spec.target.sparsity if spec.target else None,
        levels=tuple(spec.target.sparsities or ()) if spec.target else (),
        extra_params=total - prunable,
    )
    fingerprint = loaded.fingerprint()
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    cache = cache or ScoreCache()
    # Structured scores differ from per-weight ones; unstructured keys stay as they were.
    extra: dict[str, str] = {} if spec.space.granularity == "unstructured" else {"granularity": spec.space.granularity}
    key = cache_key(
        model=fingerprint,
        criterion=spec.space.criterion,
        calibration=task.data_hashes()["calibration"],
        layers=[layer.name for layer in layers],
        **extra,
    )
    scores = cache.get(key)
    if scores is None:
        scores = compute_scores(loaded, task, layers, spec.space.criterion, units)
        cache.put(key, scores)
        log.info("scored %d layers with %s", len(layers), spec.space.criterion)
    timings["scores"] = time.perf_counter() - t

    levels = None
    if spec.space.reconstruction is not None:
        t = time.perf_counter()
        levels = level_database(spec, loaded.model, task, layers, space, fingerprint, LevelCache(cache.directory))
        timings["levels"] = time.perf_counter() - t

    t = time.perf_counter()
    task.prepare(loaded.model)
    timings["dense_reference"] = time.perf_counter() - t
    pruner, evaluator = assemble(spec, loaded.model, task, layers, units, space, scores, levels)
    return Workbench(spec, loaded, task, layers, space, pruner, evaluator, fingerprint, timings, units,
                     score_key=key, score_cache=cache, levels=levels)


def level_database(
    spec: SearchSpec, model: nn.Module, task: Task, layers: Sequence[PrunableLayer], space: SearchSpace,
    fingerprint: str, cache: LevelCache,
) -> LevelDatabase:
    """The job's level database (``space.reconstruction``): read from ``cache`` when the same
    model, calibration data, method and grid were built before, else built from one
    calibration pass (input Hessians) and stored there."""
    recon = spec.space.reconstruction
    if recon is None:
        raise ValueError("space.reconstruction is not set: this job has no level database")
    granularity = parse_granularity(spec.space.granularity)
    config = SparseGPTConfig(damping=recon.damping, block_size=recon.block_size, groups=spec.space.groups)
    counts, caps = grid_counts(layers, space.grid.tolist(), space.hi)
    key = cache_key(
        levels_format=3, model=fingerprint, calibration=task.data_hashes()["calibration"], method=recon.method,
        damping=recon.damping, block_size=recon.block_size, groups=spec.space.groups,
        pattern=granularity.pattern, layers=[layer.name for layer in layers],
        counts=[counts[layer.name] for layer in layers], caps=[caps[layer.name] for layer in layers],
    )
    db = cache.get(key)
    if db is not None:
        return db
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    stats = collect_input_stats(model, layers, task.calibration_batches(), task.forward, task.token_mask,
                                gram=True)
    modules = dict(model.named_modules())
    weights = {layer.name: weight_matrix(modules[layer.name], layer).detach() for layer in layers}
    db = build_levels(weights, stats, counts, caps, config, pattern=granularity.pattern, device=device)
    cache.put(key, db)
    log.info("built the level database in %.1f s (%.1f MB)", db.build_seconds, db.nbytes / 1e6)
    return db
