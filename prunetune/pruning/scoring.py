"""From a criterion and calibration data to cached scores: one generic loop for all models.

``score_layers`` gives every prunable layer a score per weight (its ``(out, in)`` view);
``score_units`` gives every structure unit a score per structure. Both collect only the
statistics the criterion declares it needs, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from prunetune.pruning.calibration import (
    Calibration,
    collect_grad_stats,
    collect_input_stats,
    collect_nonpositive_fractions,
)
from prunetune.pruning.importance import (
    Criterion,
    GradStats,
    MonteCarlo,
    WeightStats,
    get_criterion,
)
from prunetune.pruning.layers import discover_layers, weight_matrix
from prunetune.pruning.structured import StructuredPruner
from prunetune.pruning.structures import StructureUnit
from prunetune.spaces.space import PrunableLayer


def _need_calibration(criterion: Criterion, calibration: Calibration | None) -> Calibration:
    if calibration is None:
        raise ValueError(
            f"criterion {criterion.name!r} needs calibration data ({', '.join(sorted(criterion.needs))}); "
            "pass calibration=[batch, ...]"
        )
    return calibration


def _grad_stats(model: nn.Module, names: Sequence[str], calibration: Calibration) -> dict[str, GradStats]:
    params = dict(model.named_parameters())
    raw = collect_grad_stats(model, {n: params[n] for n in names}, calibration)
    return {n: GradStats(*v) for n, v in raw.items()}


def score_layers(
    model: nn.Module,
    layers: Sequence[PrunableLayer],
    criterion: str | Criterion,
    calibration: Calibration | None = None,
) -> dict[str, torch.Tensor]:
    """``{layer name: scores shaped like its (out, in) view}``, higher = more important."""
    crit = get_criterion(criterion)
    if crit.structures_only:
        crit.score(torch.zeros(1), WeightStats())  # raises the criterion's own message
    modules = dict(model.named_modules())
    if isinstance(crit, MonteCarlo):
        return _monte_carlo_weights(model, layers, crit, _need_calibration(crit, calibration))
    inputs = grads = None
    if "inputs" in crit.needs:
        cal = _need_calibration(crit, calibration)
        inputs = collect_input_stats(model, layers, cal.batches, cal.forward, cal.token_mask)
    if "grads" in crit.needs:
        grads = _grad_stats(model, [f"{layer.name}.weight" for layer in layers], _need_calibration(crit, calibration))
    out = {}
    for layer in layers:
        g = None if grads is None else grads[f"{layer.name}.weight"].as_view(layer.rows, layer.cols, layer.transposed)
        stats = WeightStats(None if inputs is None else inputs[layer.name], g)
        out[layer.name] = crit(weight_matrix(modules[layer.name], layer), stats).contiguous()
    return out


def _objective(model: nn.Module, calibration: Calibration) -> Callable[[], float]:
    """The quantity Monte-Carlo perturbs: the mean loss when one is available, else the
    mean squared change of the model's output against the unperturbed model's."""
    batches = list(calibration.batches)
    try:
        with torch.inference_mode():
            calibration.loss_of(model, batches[0])
    except (ValueError, NotImplementedError):  # no loss: measure the output instead
        with torch.inference_mode():
            dense = [_output_tensor(calibration.forward(model, b)).float() for b in batches]

        def distance() -> float:
            with torch.inference_mode():
                d = [((_output_tensor(calibration.forward(model, b)).float() - r) ** 2).mean() for b, r in zip(batches, dense, strict=True)]
            return float(torch.stack(d).mean())

        return distance

    def loss() -> float:
        with torch.inference_mode():
            return float(torch.stack([calibration.loss_of(model, b).float() for b in batches]).mean())

    return loss


def _output_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("last_hidden_state", "logits"):
        value = getattr(out, key, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(out, (tuple, list)) and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot find an output tensor in a {type(out).__name__}; give a loss instead")


class _Attribution:
    """Running difference of means: E[Δ | perturbed] - E[Δ | not perturbed], per element."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.hit_sum = torch.zeros(shape, dtype=torch.float64)
        self.hit_n = torch.zeros(shape, dtype=torch.float64)
        self.total, self.n = 0.0, 0

    def add(self, hit: torch.Tensor, delta: float) -> None:
        self.hit_sum += hit.double() * delta
        self.hit_n += hit.double()
        self.total += delta
        self.n += 1

    def scores(self) -> torch.Tensor:
        hit = self.hit_sum / self.hit_n.clamp(min=1)
        miss = (self.total - self.hit_sum) / (self.n - self.hit_n).clamp(min=1)
        return (hit - miss).float()


def _monte_carlo_weights(
    model: nn.Module, layers: Sequence[PrunableLayer], crit: MonteCarlo, calibration: Calibration
) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    views = [weight_matrix(modules[layer.name], layer) for layer in layers]
    dense = [w.detach().clone() for w in views]
    f = _objective(model, calibration)
    base = f()
    gen = torch.Generator().manual_seed(crit.seed)
    attr = [_Attribution(tuple(w.shape)) for w in views]
    try:
        for _ in range(crit.samples):
            hits = []
            for w, d in zip(views, dense, strict=True):
                hit = torch.rand(w.shape, generator=gen) < crit.rate
                factor = torch.randn(w.shape, generator=gen) * crit.noise + 1.0 if crit.noise else torch.zeros(())
                w.copy_(torch.where(hit.to(w.device), d * factor.to(d), d))
                hits.append(hit)
            delta = f() - base
            for a, hit in zip(attr, hits, strict=True):
                a.add(hit, delta)
    finally:
        for w, d in zip(views, dense, strict=True):
            w.copy_(d)
    return {layer.name: a.scores() for layer, a in zip(layers, attr, strict=True)}


def _reduce(scores: torch.Tensor, unit: StructureUnit, dim: int, offset: int, width: int) -> torch.Tensor:
    part = scores.narrow(dim, offset, unit.count * width).movedim(dim, 0)
    return part.reshape(unit.count, -1).double().sum(dim=1)


def score_units(
    model: nn.Module,
    units: Sequence[StructureUnit],
    criterion: str | Criterion,
    calibration: Calibration | None = None,
) -> dict[str, torch.Tensor]:
    """``{unit name: (count,) scores}``, higher = more important."""
    crit = get_criterion(criterion)
    if isinstance(crit, MonteCarlo):
        return _monte_carlo_structures(model, units, crit, _need_calibration(crit, calibration))
    if crit.name == "apoz":
        return _apoz(model, units, _need_calibration(crit, calibration))
    if crit.name == "bn-gamma":
        return _bn_gamma(model, units)
    params = dict(model.named_parameters())
    # A block is scored by all of its parameters, each tensor summed whole.
    in_block = {
        u.name: [[f"{b}.{n}" for n, _ in model.get_submodule(b).named_parameters()] for b in u.blocks]
        for u in units if u.kind == "blocks"
    }
    names = sorted({s.tensor for u in units for s in u.slices if s.tensor in params}
                   | {n for per_block in in_block.values() for names_ in per_block for n in names_})
    if not names:
        raise ValueError(f"criterion {crit.name!r} needs parameters to score; units {[u.name for u in units][:3]} have none "
                         "(blocks are scored by 'monte-carlo')")
    try:
        by_weight = {f"{layer.name}.weight": layer for layer in discover_layers(model, include=("*",))}
    except ValueError:  # a pure conv network has no Linear/Conv1D
        by_weight = {}
    inputs = grads = None
    if "inputs" in crit.needs:
        cal = _need_calibration(crit, calibration)
        scored = [by_weight[n] for n in names if n in by_weight]
        inputs = collect_input_stats(model, scored, cal.batches, cal.forward, cal.token_mask)
    if "grads" in crit.needs:
        grads = _grad_stats(model, names, _need_calibration(crit, calibration))
    elementwise = {}
    for n in names:
        g = None if grads is None else grads[n]
        layer = by_weight.get(n)
        if layer is not None:  # score the (out, in) view, so Wanda lines up with inputs
            if g is not None:
                g = g.as_view(layer.rows, layer.cols, layer.transposed)
            stats = WeightStats(None if inputs is None else inputs[layer.name], g)
            s = crit(weight_matrix(model.get_submodule(layer.name), layer), stats)
            elementwise[n] = (s.t() if layer.transposed else s).reshape(params[n].shape)
        else:
            elementwise[n] = crit(params[n], WeightStats(None, g))
        if crit.reduce == "l2":
            elementwise[n] = elementwise[n] ** 2
    out = {}
    for unit in units:
        total = torch.zeros(unit.count, dtype=torch.float64)
        for sl in unit.slices:
            if sl.tensor in elementwise:
                total += _reduce(elementwise[sl.tensor], unit, sl.dim, sl.offset, sl.width)
        for j, names_ in enumerate(in_block.get(unit.name, [])):
            total[j] = sum(float(elementwise[n].double().sum()) for n in names_)
        out[unit.name] = (total.sqrt() if crit.reduce == "l2" else total).float()
    return out


def _consumer(unit: StructureUnit) -> tuple[str, int]:
    if unit.kind not in ("neurons", "channels"):
        raise ValueError(
            f"criterion 'apoz' needs post-activation outputs: granularity 'neurons' or 'channels'; "
            f"unit {unit.name!r} holds {unit.kind}"
        )
    last = unit.slices[-1]  # by construction: the input slice of the layer that reads it
    return last.tensor.rsplit(".", 1)[0], last.width


def _apoz(model: nn.Module, units: Sequence[StructureUnit], calibration: Calibration) -> dict[str, torch.Tensor]:
    consumers = {}
    for unit in units:
        name, width = _consumer(unit)
        module = model.get_submodule(name)
        weight: torch.Tensor = module.weight  # type: ignore[assignment]
        feats = module.in_channels if isinstance(module, nn.Conv2d) else weight.shape[unit.slices[-1].dim]
        consumers[name] = int(feats)
    fractions = collect_nonpositive_fractions(model, consumers, calibration)
    out = {}
    for unit in units:
        name, width = _consumer(unit)
        frac = fractions[name]
        if width > 1 and frac.numel() == unit.count:  # conv input seen per channel already
            width = 1
        out[unit.name] = (1.0 - frac.reshape(unit.count, width).mean(dim=1)).float()
    return out


def _bn_gamma(model: nn.Module, units: Sequence[StructureUnit]) -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    out = {}
    for unit in units:
        bn = [s for s in unit.slices if s.tensor.endswith(".weight")
              and isinstance(modules.get(s.tensor.rsplit(".", 1)[0]), nn.modules.batchnorm._BatchNorm)]
        if not bn:
            raise ValueError(f"criterion 'bn-gamma' needs a BatchNorm after each conv; unit {unit.name!r} has none")
        gamma = modules[bn[0].tensor.rsplit(".", 1)[0]].weight
        out[unit.name] = gamma.detach().abs().float().cpu()
    return out


def _monte_carlo_structures(
    model: nn.Module, units: Sequence[StructureUnit], crit: MonteCarlo, calibration: Calibration
) -> dict[str, torch.Tensor]:
    """Drops random subsets of structures of all units at once (one forward pass per
    sample), so the cost is ``samples`` passes whatever the number of units."""
    flat = {u.name: torch.zeros(u.count) for u in units}
    masker = StructuredPruner(model, units, flat)
    f = _objective(model, calibration)
    base = f()
    gen = torch.Generator().manual_seed(crit.seed)
    attr = {u.name: _Attribution((u.count,)) for u in units}
    try:
        for _ in range(crit.samples):
            hits = {u.name: torch.rand(u.count, generator=gen) < crit.rate for u in units}
            masker.apply_removed({n: h.nonzero().reshape(-1).tolist() for n, h in hits.items()})
            delta = f() - base
            masker.restore()
            for n, h in hits.items():
                attr[n].add(h, delta)
    finally:
        masker.restore()
    return {n: a.scores() for n, a in attr.items()}
