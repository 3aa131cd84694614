"""Importance criteria: small callables in a registry, higher score = more important.

A criterion maps a layer's ``(out, in)`` weight view and its calibration statistics to a
score tensor of the same shape. Adding a criterion is adding one class and one test.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from prunetune.pruning.calibration import InputStats


class Criterion(ABC):
    """Base class. ``needs_inputs`` asks the calibration pass for input statistics."""

    name: ClassVar[str]
    needs_inputs: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, weight: torch.Tensor, inputs: InputStats | None) -> torch.Tensor:
        """Scores shaped like ``weight`` (float32, on the weight's device)."""


class Magnitude(Criterion):
    """|w|."""

    name = "magnitude"

    def __call__(self, weight: torch.Tensor, inputs: InputStats | None) -> torch.Tensor:
        return weight.detach().abs().float()


class Wanda(Criterion):
    """|w_ij| · ‖X_j‖₂ (Sun et al., 2023): a weight matters as much as its input is large."""

    name = "wanda"
    needs_inputs = True

    def __call__(self, weight: torch.Tensor, inputs: InputStats | None) -> torch.Tensor:
        if inputs is None:
            raise ValueError("criterion 'wanda' needs calibration inputs; none were collected")
        norm = inputs.norm.to(device=weight.device, dtype=torch.float32)
        return weight.detach().abs().float() * norm[None, :]


CRITERIA: dict[str, type[Criterion]] = {c.name: c for c in (Magnitude, Wanda)}


def get_criterion(name: str) -> Criterion:
    try:
        return CRITERIA[name]()
    except KeyError:
        raise ValueError(
            f"criterion {name!r} is unknown; allowed: {', '.join(sorted(CRITERIA))}"
        ) from None
