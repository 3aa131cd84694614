"""Importance criteria: small callables in a registry, higher score = more important.

A weight criterion maps a weight tensor (a layer's ``(out, in)`` view, or any parameter
of a structure) and its calibration statistics to a score tensor of the same shape. A
structure's score is the sum of its weights' scores (``reduce="l2"``: the root of the sum).
Criteria that only make sense for whole structures (APoZ, BatchNorm |γ|) and the
Monte-Carlo criterion are scored in :mod:`prunetune.pruning.scoring`, which reads the
``needs`` and ``structures_only`` flags declared here. Adding a criterion is adding one
class and one test.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from prunetune.pruning.calibration import InputStats

Need = Literal["inputs", "grads", "zeros", "perturb"]


@dataclass
class GradStats:
    """Per-weight gradient statistics over calibration batches, shaped like the weight.

    ``abs_mean`` is the mean of ``|g|``, ``sq_mean`` the mean of ``g²`` (the empirical
    Fisher diagonal), ``taylor`` the mean of ``|w·g|``; means are over batches.
    """

    abs_mean: torch.Tensor
    sq_mean: torch.Tensor
    taylor: torch.Tensor

    def t(self) -> GradStats:
        return GradStats(self.abs_mean.t(), self.sq_mean.t(), self.taylor.t())

    def as_view(self, rows: int, cols: int, transposed: bool) -> GradStats:
        """Statistics laid out like a layer's ``(out, in)`` weight view."""
        g = self.t() if transposed else self
        return GradStats(*(x.reshape(rows, cols) for x in (g.abs_mean, g.sq_mean, g.taylor)))


@dataclass
class WeightStats:
    """What a calibration pass knows about one weight tensor."""

    inputs: InputStats | None = None
    grads: GradStats | None = None


class Criterion(ABC):
    """Base class.

    Attributes:
        name: the registry key (what a spec or ``prune(criterion=...)`` names).
        needs: calibration statistics the scorer must collect first.
        reduce: how weight scores become a structure's score: ``sum`` or ``l2``.
        structures_only: True when the criterion scores structures, never single weights.
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[Need]] = frozenset()
    reduce: ClassVar[Literal["sum", "l2"]] = "sum"
    structures_only: ClassVar[bool] = False

    def __call__(self, weight: torch.Tensor, inputs: InputStats | WeightStats | None) -> torch.Tensor:
        """Scores shaped like ``weight`` (float32, on the weight's device)."""
        stats = inputs if isinstance(inputs, WeightStats) else WeightStats(inputs=inputs)
        return self.score(weight.detach(), stats).float()

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        raise ValueError(
            f"criterion {self.name!r} scores whole structures only; use it with granularity "
            "'heads', 'neurons', 'blocks' or 'channels'"
        )

    def _grads(self, stats: WeightStats) -> GradStats:
        if stats.grads is None:
            raise ValueError(
                f"criterion {self.name!r} needs gradients: give a calibration set and a loss "
                "(prune(..., calibration=batches, loss=fn) or a task with Task.loss)"
            )
        return stats.grads


class Magnitude(Criterion):
    """|w|; summed over a structure it is the structure's L1 norm."""

    name = "magnitude"

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        return weight.abs()


class L1Norm(Magnitude):
    """L1 norm of a structure (per weight: |w|)."""

    name = "l1"


class L2Norm(Criterion):
    """L2 norm of a structure (per weight: |w|, which orders single weights like L2)."""

    name = "l2"
    reduce = "l2"

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        return weight.abs()


class Wanda(Criterion):
    """|w_ij| · ‖X_j‖₂ (Sun et al., 2023): a weight matters as much as its input is large."""

    name = "wanda"
    needs = frozenset({"inputs"})

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        if weight.dim() != 2:  # biases and norms of a structure have no input: magnitude
            return weight.abs()
        if stats.inputs is None:
            raise ValueError("criterion 'wanda' needs calibration inputs; none were collected")
        norm = stats.inputs.norm.to(device=weight.device, dtype=torch.float32)
        return weight.abs().float() * norm[None, :]


class GradientL1(Criterion):
    """Mean |∂L/∂w| over calibration batches."""

    name = "gradient-l1"
    needs = frozenset({"grads"})

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        return self._grads(stats).abs_mean.to(weight.device)


class GradientL2(Criterion):
    """Root mean square of ∂L/∂w over calibration batches."""

    name = "gradient-l2"
    needs = frozenset({"grads"})
    reduce = "l2"

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        return self._grads(stats).sq_mean.to(weight.device).sqrt()


class Taylor(Criterion):
    """First-order Taylor |w · ∂L/∂w| (Molchanov et al., 2019), averaged over batches:
    the loss change to first order when the weight is set to zero."""

    name = "taylor"
    needs = frozenset({"grads"})

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        return self._grads(stats).taylor.to(weight.device)


class Fisher(Criterion):
    """OBD saliency ½·h·w² with the Hessian diagonal h approximated by the empirical
    Fisher (mean squared gradient over batches): the second-order loss change."""

    name = "fisher"
    needs = frozenset({"grads"})

    def score(self, weight: torch.Tensor, stats: WeightStats) -> torch.Tensor:
        h = self._grads(stats).sq_mean.to(weight.device)
        return 0.5 * h * weight.float() ** 2


class MonteCarlo(Criterion):
    """Randomly drop (or perturb) weights or structures, measure the change of the loss
    (or, without a loss, of the output), and attribute it: an element's score is the mean
    change over samples where it was perturbed minus the mean where it was not.

    Args:
        samples: perturbed forward passes per scored unit.
        rate: probability that an element is perturbed in a sample (0 < rate < 1).
        noise: 0 drops elements (sets them to zero); > 0 multiplies them by
            ``1 + noise * N(0, 1)`` instead.
        seed: seeds the random subsets, so scores are reproducible.
    """

    name = "monte-carlo"
    needs = frozenset({"perturb"})

    def __init__(self, samples: int = 64, rate: float = 0.1, noise: float = 0.0, seed: int = 0) -> None:
        if samples < 2:
            raise ValueError(f"monte-carlo samples must be >= 2; got {samples}")
        if not 0.0 < rate < 1.0:
            raise ValueError(f"monte-carlo rate must be in (0, 1); got {rate}")
        if noise < 0.0:
            raise ValueError(f"monte-carlo noise must be >= 0; got {noise}")
        self.samples, self.rate, self.noise, self.seed = samples, rate, noise, seed


class APoZ(Criterion):
    """1 − APoZ (Hu et al., 2016): the fraction of calibration positions where a neuron's
    or channel's post-activation output is positive. APoZ counts outputs ≤ 0 as zero, so
    GELU/SiLU networks (whose negative outputs are tiny) are treated like ReLU ones."""

    name = "apoz"
    needs = frozenset({"zeros"})
    structures_only = True


class BatchNormScale(Criterion):
    """|γ| of the BatchNorm that follows a conv channel (Liu et al., 2017, network slimming)."""

    name = "bn-gamma"
    structures_only = True


CRITERIA: dict[str, type[Criterion]] = {
    c.name: c
    for c in (Magnitude, L1Norm, L2Norm, Wanda, GradientL1, GradientL2, Taylor, Fisher, MonteCarlo, APoZ, BatchNormScale)
}


def get_criterion(name: str | Criterion, **options: object) -> Criterion:
    """The criterion called ``name`` (options go to its constructor, e.g. monte-carlo's)."""
    if isinstance(name, Criterion):
        return name
    try:
        cls = CRITERIA[name]
    except KeyError:
        raise ValueError(
            f"criterion {name!r} is unknown; allowed: {', '.join(sorted(CRITERIA))}"
        ) from None
    try:
        return cls(**options)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"criterion {name!r} takes no options {sorted(options)}") from None
