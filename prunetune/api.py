"""The one-shot API: ``prunetune.prune(model, allocation, ...)``, ``export``, ``load_pruned``.

>>> report = prunetune.prune(model, 0.5, criterion="wanda", calibration=batches)
>>> print(report)                      # per layer: requested, achieved, params before/after
>>> prunetune.export(model, "pruned/")
>>> model = prunetune.load_pruned("pruned/")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from prunetune.pruning.calibration import Calibration
from prunetune.pruning.export import STATE_ATTR, PruneState, export, load_pruned
from prunetune.pruning.granularity import Granularity, build_pruner, check_pair, parse_granularity
from prunetune.pruning.importance import get_criterion
from prunetune.pruning.layers import discover_layers, weight_matrix
from prunetune.pruning.masks import Groups, Pruner
from prunetune.pruning.oneshot import prune_in_place
from prunetune.pruning.reconstruction import SparseGPTConfig
from prunetune.pruning.scoring import score_layers, score_units
from prunetune.pruning.structured import StructuredPruner
from prunetune.pruning.structures import StructureUnit, find_units
from prunetune.spaces.space import PrunableLayer

__all__ = ["LayerReport", "PruneReport", "export", "load_pruned", "prune"]

Mode = Literal["per-layer", "global", "threshold", "progressive"]
MODES = ("per-layer", "global", "threshold", "progressive")
Allocation = float | Sequence[float] | Mapping[str, float]


@dataclass(frozen=True)
class LayerReport:
    """One allocation entry: a layer (unstructured, N:M) or a structure unit.

    ``requested`` and ``achieved`` are fractions of the entry's weights (structures for
    structured granularities); ``params_before``/``params_after`` count its nonzero
    parameters (structured: the parameters its structures hold before and after export).
    """

    name: str
    kind: str
    requested: float
    achieved: float
    params_before: int
    params_after: int


@dataclass(frozen=True)
class PruneReport:
    granularity: str
    criterion: str
    mode: str
    layers: tuple[LayerReport, ...]

    @property
    def params_before(self) -> int:
        return sum(r.params_before for r in self.layers)

    @property
    def params_after(self) -> int:
        return sum(r.params_after for r in self.layers)

    @property
    def sparsity(self) -> float:
        """Overall achieved sparsity, parameter-weighted over the pruned entries."""
        return 1.0 - self.params_after / max(self.params_before, 1)

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.layers]

    def __str__(self) -> str:
        lines = [f"{'layer':48} {'kind':8} {'requested':>9} {'achieved':>9} {'before':>10} {'after':>10}"]
        for r in self.layers:
            lines.append(f"{r.name:48} {r.kind:8} {r.requested:9.4f} {r.achieved:9.4f} "
                         f"{r.params_before:10d} {r.params_after:10d}")
        lines.append(f"overall sparsity {self.sparsity:.4f} ({self.granularity}, {self.criterion}, {self.mode})")
        return "\n".join(lines)


CALIBRATION_FORMS = (
    "a batch or a list of batches, each a tokenizer's BatchEncoding, a dict of tensors, a tensor "
    "or a tuple of model arguments; a torch DataLoader (or any iterable of batches); or a prunetune Calibration"
)


def _as_calibration(calibration: Any, loss: Callable[..., torch.Tensor] | None) -> Calibration | None:
    """A :class:`Calibration` from what users pass (see ``CALIBRATION_FORMS``).

    Raises:
        TypeError: naming ``calibration``, the type it got and the forms allowed.
    """
    if calibration is None or isinstance(calibration, Calibration):
        if loss is not None and calibration is not None:
            return replace(calibration, loss=loss)  # the caller's object stays as it was
        return calibration
    if isinstance(calibration, (Mapping, torch.Tensor)):  # one batch
        batches = [calibration]
    elif isinstance(calibration, Iterable) and not isinstance(calibration, (str, bytes)):
        batches = list(calibration)  # a list or tuple of batches, a DataLoader, a generator
    else:
        raise TypeError(f"calibration: got {type(calibration).__name__}; allowed: {CALIBRATION_FORMS}")
    for i, batch in enumerate(batches):
        if not isinstance(batch, (Mapping, torch.Tensor, list, tuple)):
            raise TypeError(f"calibration[{i}]: got {type(batch).__name__}; each batch is a BatchEncoding, "
                            f"a dict of tensors, a tensor or a tuple of model arguments (allowed: {CALIBRATION_FORMS})")
    if not batches:
        raise ValueError(f"calibration: got no batches; allowed: {CALIBRATION_FORMS}")
    return Calibration(batches, loss=loss)


def _resolve(allocation: Allocation, names: list[str], what: str) -> list[float]:
    """Per-entry sparsities from a float (all entries), a sequence or a name -> float map."""
    if isinstance(allocation, (int, float)):
        return [float(allocation)] * len(names)
    if isinstance(allocation, Mapping):
        unknown = [n for n in allocation if n not in names]
        if unknown:
            raise ValueError(
                f"allocation names unknown {what} {unknown[0]!r}; known {what}s: {', '.join(names[:4])}"
                + (", ..." if len(names) > 4 else "")
            )
        return [float(allocation.get(n, 0.0)) for n in names]
    values = [float(a) for a in allocation]
    if len(values) != len(names):
        raise ValueError(f"allocation has {len(values)} entries for {len(names)} {what}s ({', '.join(names[:3])}, ...)")
    return values


def _check_fractions(values: list[float], names: list[str]) -> None:
    for v, n in zip(values, names, strict=True):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"sparsity of {n!r} must be in [0, 1); got {v}")


def _normalised(scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Scores of different layers live on different scales; dividing by each layer's mean
    # magnitude makes one global threshold meaningful.
    return {n: s.float() / s.float().abs().mean().clamp(min=1e-12) for n, s in scores.items()}


def _global_counts(norm: Mapping[str, torch.Tensor], cost: list[int], target: float, names: list[str]) -> list[int]:
    """Elements per entry under one threshold that removes ``target`` of all parameters."""
    flat = torch.cat([norm[n].reshape(-1) for n in names])
    weight = torch.cat([torch.full((norm[n].numel(),), float(c)) for n, c in zip(names, cost, strict=True)])
    owner = torch.cat([torch.full((norm[n].numel(),), i) for i, n in enumerate(names)])
    order = torch.argsort(flat, stable=True)
    cum = torch.cumsum(weight[order], 0)
    take = int(torch.searchsorted(cum, target * float(cum[-1]), right=False)) + 1 if target > 0 else 0
    counts = torch.bincount(owner[order[:take]], minlength=len(names))
    return [min(int(k), norm[n].numel() - 1) for k, n in zip(counts, names, strict=True)]


def _units_and_scores(
    model: nn.Module, gran: Granularity, criterion: str, calibration: Calibration | None,
    include: Sequence[str], exclude: Sequence[str], options: dict[str, Any],
) -> tuple[list[PrunableLayer], list[StructureUnit], dict[str, torch.Tensor]]:
    crit = get_criterion(criterion, **options)
    if gran.structured:
        layers = discover_layers(model, include, exclude) if {"heads", "neurons"} & set(gran.kinds) else None
        units = find_units(model, gran.kinds, layers)
        return [u.as_layer() for u in units], units, score_units(model, units, crit, calibration)
    layers = discover_layers(model, include, exclude)
    return layers, [], score_layers(model, layers, crit, calibration)


def prune(
    model: nn.Module,
    allocation: Allocation,
    *,
    criterion: str = "magnitude",
    granularity: str = "unstructured",
    calibration: Any = None,
    loss: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    mode: Mode = "per-layer",
    groups: Groups = "row",
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    steps: int = 3,
    recover: Callable[[nn.Module, int], None] | None = None,
    criterion_options: Mapping[str, Any] | None = None,
    reconstruction: str | None = None,
    sequential: bool = False,
    damping: float = 0.01,
    block_size: int = 128,
) -> PruneReport:
    """Prune ``model`` in place and report what was removed.

    Args:
        allocation: per-layer mode: one sparsity for every entry, a sequence (one per
            entry, model order) or ``{name: sparsity}`` (unnamed entries stay dense);
            global and progressive modes: the overall target; threshold mode: the
            threshold on scores normalised by each entry's mean score. Sparsities are
            fractions in [0, 1); for structured granularities, of the entry's structures.
        criterion: a name from ``prunetune.pruning.importance.CRITERIA``.
        granularity: unstructured, N:M (``"2:4"``), heads, neurons, heads+neurons,
            blocks or channels.
        calibration: data for data-driven criteria: one batch or a list of batches (each a
            tokenizer's ``BatchEncoding``, a dict of tensors, a tensor, or a tuple of model
            arguments), a ``DataLoader``, or a :class:`Calibration`.
        loss: ``loss(model, batch)`` for gradient criteria (else the output's ``.loss``).
        mode: per-layer, global, threshold or progressive (``steps`` steps, calling
            ``recover(model, step)`` after each; pruned weights stay zero).
        groups: unstructured comparison group: ``row`` or ``layer``.
        reconstruction: ``"sparsegpt"``: each layer's remaining weights are re-fitted to
            its calibration inputs (OBS; ``damping`` as a fraction of the mean Hessian
            diagonal, ``block_size`` columns per mask choice), and OBS saliency, not
            ``criterion``, picks what goes. Unstructured and N:M, per-layer mode.
        sequential: calibrate block by block, each block on the outputs of the blocks
            before it already pruned (one calibration pass per block); with or without
            reconstruction. Per-layer mode.

    Raises:
        TypeError: ``calibration`` of another form (naming it and the forms allowed).
        ValueError: naming the argument and value: a sparsity outside [0, 1), an M that
            does not divide a layer's input dimension, a head count that does not fit the
            key/value groups, an unknown layer name, an unsupported criterion/granularity.
    """
    gran = parse_granularity(granularity)
    check_pair(criterion, gran)
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is unknown; allowed: {', '.join(MODES)}")
    if gran.pattern and mode != "per-layer":
        raise ValueError(f"granularity {granularity!r} fixes each layer's sparsity; use mode 'per-layer'")
    if mode == "progressive" and steps < 1:
        raise ValueError(f"steps must be >= 1 for mode 'progressive'; got {steps}")
    cal = _as_calibration(calibration, loss)
    options = dict(criterion_options or {})
    if reconstruction is not None or sequential:
        return _prune_oneshot(model, allocation, gran, criterion, cal, mode, groups, include, exclude, options,
                              reconstruction, sequential, damping, block_size)
    total_steps = steps if mode == "progressive" else 1
    before: dict[str, int] | None = None
    for step in range(1, total_steps + 1):
        entries, units, scores = _units_and_scores(model, gran, criterion, cal, include, exclude, options)
        names = [e.name for e in entries]
        if before is None:
            before = _nonzeros(model, entries, units)
        state = getattr(model, STATE_ATTR, None)
        if state is not None and step > 1:  # progressive: once pruned, pruned first again
            for n, gone in state.removed.items():
                if n in scores and gone:
                    scores[n][gone] = -float("inf")
            for n, keep in (state.masks or {}).items():
                if n in scores:
                    scores[n][~keep] = -float("inf")
        requested, sparsities = _allocate(mode, allocation, step / total_steps, scores, entries, names, gran)
        _apply(model, gran, entries, units, scores, sparsities, groups, criterion, requested, before, mode)
        if recover is not None and mode == "progressive":
            recover(model, step)
            _reapply(model)
    report: PruneReport = getattr(model, STATE_ATTR).summary
    return report


def _prune_oneshot(
    model: nn.Module, allocation: Allocation, gran: Granularity, criterion: str, cal: Calibration | None,
    mode: str, groups: Groups, include: Sequence[str], exclude: Sequence[str], options: dict[str, Any],
    reconstruction: str | None, sequential: bool, damping: float, block_size: int,
) -> PruneReport:
    what = f"reconstruction={reconstruction!r}" if reconstruction is not None else "sequential=True"
    if reconstruction not in (None, "sparsegpt"):
        raise ValueError(f"reconstruction {reconstruction!r} is unknown; allowed: 'sparsegpt' or None")
    if gran.structured:
        raise ValueError(f"{what} prunes single weights; granularity {gran.name!r} removes structures: "
                         "use unstructured or N:M")
    if mode != "per-layer":
        raise ValueError(f"{what} takes mode 'per-layer'; got {mode!r}")
    if cal is None:
        raise ValueError(f"{what} needs calibration=[batch, ...]: the layers' inputs decide what is kept")
    layers = discover_layers(model, include, exclude)
    names = [layer.name for layer in layers]
    before = _nonzeros(model, layers, [])
    requested, _ = _allocate("per-layer", allocation, 1.0, {}, layers, names, gran)
    counts = Pruner.counts_of(requested, layers, gran.pattern)
    prune_in_place(
        model, layers, counts, cal, groups=groups, pattern=gran.pattern, sequential=sequential,
        criterion=None if reconstruction else get_criterion(criterion, **options),
        reconstruction=SparseGPTConfig(damping, block_size, groups) if reconstruction else None,
    )
    modules = dict(model.named_modules())
    views = {layer.name: weight_matrix(modules[layer.name], layer) for layer in layers}
    after = {n: int(torch.count_nonzero(w)) for n, w in views.items()}
    rows = tuple(
        LayerReport(layer.name, layer.kind, float(r), 1 - after[layer.name] / layer.numel, before[layer.name],
                    after[layer.name])
        for layer, r in zip(layers, requested, strict=True)
    )
    label = reconstruction or criterion
    report = PruneReport(gran.name, label, mode + (", sequential" if sequential else ""), rows)
    masks = {n: (w != 0).cpu() for n, w in views.items()}
    state = PruneState(gran.name, [], {}, report.rows(), summary=report, masks=masks)
    object.__setattr__(model, STATE_ATTR, state)
    return report


def _allocate(
    mode: str, allocation: Allocation, fraction: float, scores: dict[str, torch.Tensor],
    entries: list[PrunableLayer], names: list[str], gran: Granularity,
) -> tuple[list[float], list[float]]:
    if mode in ("per-layer", "progressive"):
        requested = [v * fraction for v in _resolve(allocation, names, "unit" if gran.structured else "layer")]
        _check_fractions(requested, names)
        if gran.pattern:
            n, m = gran.pattern
            for v, name in zip(requested, names, strict=True):
                if v and abs(v - (1 - n / m)) > 1e-9:
                    raise ValueError(
                        f"granularity {gran.name!r} gives sparsity {1 - n / m:g} per layer; got {v} for {name!r}: "
                        f"use {1 - n / m:g} or 0 to leave the layer dense"
                    )
        return requested, requested
    if not isinstance(allocation, (int, float)):
        raise ValueError(f"mode {mode!r} takes one number as allocation; got {type(allocation).__name__}")
    value = float(allocation)
    norm = _normalised(scores)
    cost = [e.cols if gran.structured else 1 for e in entries]
    if mode == "global":
        _check_fractions([value], ["allocation"])
        counts = _global_counts(norm, cost, value, names)
    else:  # threshold
        if value < 0:
            raise ValueError(f"threshold allocation must be >= 0; got {value}")
        counts = [min(int((norm[n] < value).sum()), norm[n].numel() - 1) for n in names]
    sizes = [norm[n].numel() for n in names]
    sparsities = [k / s for k, s in zip(counts, sizes, strict=True)]
    return [value] * len(names), sparsities


def _nonzeros(model: nn.Module, entries: list[PrunableLayer], units: list[StructureUnit]) -> dict[str, int]:
    if units:
        return {u.name: u.count * u.params_per_structure for u in units}
    modules = dict(model.named_modules())
    return {e.name: int(torch.count_nonzero(weight_matrix(modules[e.name], e))) for e in entries}


def _apply(
    model: nn.Module, gran: Granularity, entries: list[PrunableLayer], units: list[StructureUnit],
    scores: dict[str, torch.Tensor], sparsities: list[float], groups: Groups, criterion: str,
    requested: list[float], before: dict[str, int], mode: str,
) -> None:
    old = getattr(model, STATE_ATTR, None)
    if gran.structured and old is not None and isinstance(old.pruner, StructuredPruner):
        old.pruner.drop_hooks()  # the new pruner re-registers every removed block
    pruner = build_pruner(model, gran, entries, units, scores, groups, strict=mode == "per-layer")
    pruner.apply(sparsities)
    if isinstance(pruner, StructuredPruner):
        removed = pruner.removed(sparsities)
        achieved = pruner.achieved(sparsities)
        after = {u.name: (u.count - len(removed[u.name])) * u.params_per_structure for u in units}
    else:
        removed = {}
        modules = dict(model.named_modules())
        after = {e.name: int(torch.count_nonzero(weight_matrix(modules[e.name], e))) for e in entries}
        achieved = [1 - after[e.name] / e.numel for e in entries]
    rows = tuple(
        LayerReport(e.name, e.kind, float(r), float(a), before[e.name], after[e.name])
        for e, r, a in zip(entries, requested, achieved, strict=True)
    )
    report = PruneReport(gran.name, criterion, mode, rows)
    masks = None if gran.structured else pruner.keep_masks(sparsities)
    state = PruneState(gran.name, list(units), removed, report.rows(), summary=report, pruner=pruner, masks=masks)
    object.__setattr__(model, STATE_ATTR, state)


def _reapply(model: nn.Module) -> None:
    """After recovery, zero again what is pruned (an optimiser step may have moved it)."""
    state = getattr(model, STATE_ATTR)
    if state.structured:
        state.pruner.zero(state.removed)
        return
    modules = dict(model.named_modules())
    with torch.no_grad():
        for layer in state.pruner.layers:
            w = weight_matrix(modules[layer.name], layer)
            w.mul_(state.masks[layer.name].to(w.dtype))
