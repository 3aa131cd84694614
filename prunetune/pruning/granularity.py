"""Granularity names (what a spec's ``space.granularity`` or ``prune(granularity=...)``
says) and which criterion goes with which granularity.

``unstructured`` prunes single weights; ``N:M`` (e.g. ``2:4``) keeps N of every M
consecutive input weights; ``heads``, ``neurons``, ``blocks`` and ``channels`` remove
whole structures; ``heads+neurons`` gives each block's attention and MLP one entry each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from prunetune.pruning.importance import CRITERIA
from prunetune.pruning.layers import discover_layers
from prunetune.pruning.masks import Groups, Pruner, parse_nm
from prunetune.pruning.structured import StructuredPruner
from prunetune.pruning.structures import StructureUnit, find_units
from prunetune.spaces.space import PrunableLayer

SPEC_GRANULARITIES = ("unstructured", "2:4", "4:8", "heads", "neurons", "heads+neurons", "blocks", "channels")
FAMILIES = ("unstructured", "N:M", "heads", "neurons", "blocks", "channels")

_WEIGHT = set(FAMILIES)
# Which granularity families each criterion supports. APoZ needs a post-activation
# output; |γ| needs a BatchNorm; the rest score any weight.
SUPPORTED: dict[str, set[str]] = {
    "magnitude": _WEIGHT,
    "l1": _WEIGHT,
    "l2": _WEIGHT,
    "gradient-l1": _WEIGHT,
    "gradient-l2": _WEIGHT,
    "taylor": _WEIGHT,
    "fisher": _WEIGHT,
    "monte-carlo": _WEIGHT,
    "wanda": _WEIGHT,
    "apoz": {"neurons", "channels"},
    "bn-gamma": {"channels"},
}
if set(SUPPORTED) != set(CRITERIA):  # pragma: no cover - caught by the first test run
    raise RuntimeError("granularity.SUPPORTED must list every registered criterion")


@dataclass(frozen=True)
class Granularity:
    """A parsed granularity.

    Attributes:
        name: as given (``"2:4"``, ``"heads+neurons"``, ...).
        kinds: structure kinds for structured granularities, else empty.
        pattern: ``(N, M)`` for N:M, else None.
    """

    name: str
    kinds: tuple[str, ...] = ()
    pattern: tuple[int, int] | None = None

    @property
    def structured(self) -> bool:
        return bool(self.kinds)

    @property
    def families(self) -> tuple[str, ...]:
        if self.kinds:
            return self.kinds
        return ("N:M",) if self.pattern else ("unstructured",)


def parse_granularity(name: str) -> Granularity:
    """Raises ValueError naming the value and the allowed names."""
    if name == "unstructured":
        return Granularity(name)
    if ":" in name:
        return Granularity(name, pattern=parse_nm(name))
    kinds = tuple(name.split("+"))
    if all(k in ("heads", "neurons", "blocks", "channels") for k in kinds) and len(set(kinds)) == len(kinds):
        return Granularity(name, kinds=kinds)
    raise ValueError(
        f"granularity {name!r} is unknown; allowed: unstructured, N:M (e.g. 2:4, 4:8), heads, neurons, "
        "heads+neurons, blocks, channels"
    )


def check_pair(criterion: str, granularity: Granularity) -> None:
    """Raise ValueError when ``criterion`` cannot score ``granularity``."""
    allowed = SUPPORTED.get(criterion)
    if allowed is None:
        raise ValueError(f"criterion {criterion!r} is unknown; allowed: {', '.join(sorted(CRITERIA))}")
    bad = [f for f in granularity.families if f not in allowed]
    if bad:
        raise ValueError(
            f"criterion {criterion!r} does not support granularity {granularity.name!r}; "
            f"it supports: {', '.join(f for f in FAMILIES if f in allowed)}"
        )


def support_table() -> str:
    """The criterion x granularity table of docs/pruning.md (markdown)."""
    head = "| criterion | " + " | ".join(FAMILIES) + " |"
    rule = "|---" * (len(FAMILIES) + 1) + "|"
    rows = [
        f"| `{c}` | " + " | ".join("yes" if f in SUPPORTED[c] else "" for f in FAMILIES) + " |"
        for c in CRITERIA
    ]
    return "\n".join([head, rule, *rows])


def search_entries(
    model: nn.Module, granularity: Granularity, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[list[PrunableLayer], list[StructureUnit]]:
    """The allocation entries a search sees for ``granularity``: prunable layers, or one
    entry per structure unit (``unit.as_layer()``: rows = structures, cols = parameters
    per structure), with the units themselves."""
    layers = discover_layers(model, include, exclude)
    if not granularity.structured:
        return layers, []
    units = find_units(model, granularity.kinds, layers)
    return [u.as_layer() for u in units], units


def build_pruner(
    model: nn.Module,
    granularity: Granularity,
    entries: Sequence[PrunableLayer],
    units: Sequence[StructureUnit],
    scores: Mapping[str, torch.Tensor],
    groups: Groups = "row",
    *,
    strict: bool = False,
) -> Pruner:
    """The in-place masker for ``granularity``: top-k over cached scores, exact restore.

    Structured granularities get a :class:`StructuredPruner` over ``units`` (``strict``:
    a heads fraction must name whole key/value groups, as the one-shot API asks);
    the others a :class:`Pruner` over ``entries`` with ``groups`` and the N:M pattern.
    """
    if granularity.structured:
        return StructuredPruner(model, units, scores, strict=strict)
    return Pruner(model, entries, scores, groups=groups, pattern=granularity.pattern)
