"""Structured masks: whole heads, neurons, channels and blocks, applied in place.

Same contract as :class:`~prunetune.pruning.masks.Pruner` (``apply``, ``restore``,
``applied``, ``keep_masks``), so the evaluator and the search do not care which one they
hold. Structure scores are sorted once; a candidate costs a few ``index_fill_`` calls (and
for blocks a forward hook), and restore copies the dense tensors back bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from prunetune.pruning.export import STATE_ATTR, PruneState
from prunetune.pruning.masks import Pruner
from prunetune.pruning.structures import StructureUnit, find_units
from prunetune.spaces.space import PrunableLayer


def structure_counts(sparsities: Sequence[float], units: Sequence[StructureUnit], strict: bool = False) -> list[int]:
    """Structures each unit loses: ``round(s * count)``.

    With ``strict`` (the one-shot API), a heads fraction must name a whole number of kv
    groups; the search rounds to the nearest group instead.
    """
    if len(sparsities) != len(units):
        raise ValueError(f"allocation has {len(sparsities)} entries for {len(units)} units")
    out = []
    for s, unit in zip(sparsities, units, strict=True):
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity of unit {unit.name!r} must be in [0, 1); got {s}")
        if strict and unit.kind == "heads" and unit.heads_per_structure > 1:
            heads = unit.count * unit.heads_per_structure
            want = s * heads
            if abs(want - round(want)) > 1e-6 or round(want) % unit.heads_per_structure:
                g = unit.heads_per_structure
                raise ValueError(
                    f"heads of {unit.name!r}: removing {want:g} of {heads} query heads is incompatible "
                    f"with {unit.count} key/value groups of {g} query heads; remove a multiple of {g} "
                    f"heads (sparsity a multiple of {g / heads:g})"
                )
        out.append(round(s * unit.count))
    return out


def resolve_units(model: nn.Module, entries: Sequence[StructureUnit] | Sequence[PrunableLayer]) -> list[StructureUnit]:
    if all(isinstance(e, StructureUnit) for e in entries):
        return list(entries)  # type: ignore[arg-type]
    kinds = tuple(dict.fromkeys(e.kind for e in entries))
    found = {u.name: u for u in find_units(model, kinds)}
    missing = [e.name for e in entries if e.name not in found]
    if missing:
        raise ValueError(f"no {'/'.join(kinds)} unit named {missing[0]!r} in the model; it has {list(found)[:3]}")
    return [found[e.name] for e in entries]


def _skip(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
    """Forward hook that turns a block into the identity (its residual path alone)."""
    hidden = args[0] if args else kwargs["hidden_states"]
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden


def kept_params(model: nn.Module, units: Sequence[StructureUnit], removed: Mapping[str, Sequence[int]]) -> int:
    """Parameters the model has once ``removed`` (``{unit name: structure indices}``) is
    cut out, as :func:`prunetune.pruning.export.export` writes it: every cut index of a
    tensor counted once, even where the structures of two units cross (a conv's output
    channels and the next conv's input channels), and removed blocks gone whole."""
    cut: dict[tuple[str, int], set[int]] = {}
    dropped: list[str] = []
    for unit in units:
        gone = list(removed.get(unit.name, []))
        if unit.kind == "blocks":
            dropped += [f"{unit.name}.{i}." for i in gone]
            continue
        for sl in unit.slices:
            cut.setdefault((sl.tensor, sl.dim), set()).update(sl.index(gone))
    total = 0
    for name, p in model.named_parameters():  # tied parameters once, as model.parameters()
        if any(name.startswith(prefix) for prefix in dropped):
            continue
        kept = 1
        for dim, size in enumerate(p.shape):
            kept *= size - len(cut.get((name, dim), ()))
        total += kept
    return total


class StructuredPruner(Pruner):
    """Applies per-unit structure fractions to a live model and restores it exactly.

    Args:
        units: the structure units (one allocation entry each).
        scores: ``{unit name: (count,) tensor}``, higher = more important.
    """

    def __init__(
        self,
        model: nn.Module,
        units: Sequence[StructureUnit] | Sequence[PrunableLayer],
        scores: Mapping[str, torch.Tensor],
        groups: str = "row",
        pattern: object = None,
        *,
        strict: bool = False,
    ) -> None:
        """``units`` may also be their search entries (``unit.as_layer()``); the units are
        then found again on ``model``. ``groups`` and ``pattern`` are ignored (they
        only mean something for single weights)."""
        self.model = model
        self.units = resolve_units(model, units)
        self.layers = [u.as_layer() for u in self.units]
        self.pattern = None
        self.strict = strict
        tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        self._orders_s: list[torch.Tensor] = []
        for unit in self.units:
            if unit.name not in scores:
                raise ValueError(f"no scores for unit {unit.name!r}; scores name {list(scores)[:3]}")
            sc = scores[unit.name].reshape(-1)
            if sc.numel() != unit.count:
                raise ValueError(f"scores of {unit.name!r} have {sc.numel()} entries for {unit.count} structures")
            self._orders_s.append(torch.sort(sc.float(), stable=True).indices)
        names = sorted({s.tensor for u in self.units for s in u.slices if s.zero})
        self._tensors = {n: tensors[n] for n in names}
        self._dense_t = {n: t.detach().clone() for n, t in self._tensors.items()}
        self._dirty_t: set[str] = set()
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._state: PruneState | None = None

    def counts(self, sparsities: Sequence[float]) -> list[int]:
        """Parameters each unit loses."""
        return [k * u.params_per_structure for k, u in zip(self.structures(sparsities), self.units, strict=True)]

    def structures(self, sparsities: Sequence[float]) -> list[int]:
        return structure_counts(sparsities, self.units, self.strict)

    def achieved(self, sparsities: Sequence[float]) -> list[float]:
        return [k / u.count for k, u in zip(self.structures(sparsities), self.units, strict=True)]

    def removed(self, sparsities: Sequence[float]) -> dict[str, list[int]]:
        """``{unit name: sorted indices of the structures removed}``."""
        return {
            u.name: sorted(self._orders_s[i][:k].tolist())
            for i, (u, k) in enumerate(zip(self.units, self.structures(sparsities), strict=True))
        }

    def kept_params(self, sparsities: Sequence[float]) -> int:
        """Parameters of the whole model exported at ``sparsities`` (see :func:`kept_params`)."""
        return kept_params(self.model, self.units, self.removed(sparsities))

    def apply(self, sparsities: Sequence[float]) -> None:
        self.apply_removed(self.removed(sparsities))

    def apply_removed(self, removed: Mapping[str, list[int]]) -> None:
        """Mask exactly the structures named: ``{unit name: structure indices}``.

        The model carries what was removed (``export`` reads it, so exporting inside
        ``applied(...)`` writes physically smaller tensors) until ``restore``.
        """
        self.restore()
        self.zero(removed)
        kinds = "+".join(dict.fromkeys(u.kind for u in self.units))
        self._state = PruneState(kinds, self.units, {n: list(v) for n, v in removed.items()})
        object.__setattr__(self.model, STATE_ATTR, self._state)

    def zero(self, removed: Mapping[str, list[int]]) -> None:
        """Zero (and skip) the named structures on top of the current weights."""
        modules = dict(self.model.named_modules())
        for unit in self.units:
            gone = removed.get(unit.name, [])
            if not gone:
                continue
            if unit.kind == "blocks":
                for j in gone:
                    self._hooks.append(modules[unit.blocks[j]].register_forward_hook(_skip, with_kwargs=True))
                continue
            for sl in unit.slices:
                if not sl.zero:
                    continue
                t = self._tensors[sl.tensor]
                t.data.index_fill_(sl.dim, torch.tensor(sl.index(gone), device=t.device), 0)
                self._dirty_t.add(sl.tensor)

    def restore(self) -> None:
        for name in self._dirty_t:
            self._tensors[name].data.copy_(self._dense_t[name])
        self._dirty_t.clear()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if getattr(self, "_state", None) is not None and getattr(self.model, STATE_ATTR, None) is self._state:
            object.__delattr__(self.model, STATE_ATTR)
        self._state = None

    def drop_hooks(self) -> None:
        """Forget the block hooks (a successor pruner registers its own)."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def keep_masks(self, sparsities: Sequence[float]) -> dict[str, torch.Tensor]:
        """Boolean masks over each unit's structures (True = kept)."""
        masks = {}
        for unit, gone in zip(self.units, self.removed(sparsities).values(), strict=True):
            mask = torch.ones(unit.count, dtype=torch.bool)
            mask[gone] = False
            masks[unit.name] = mask
        return masks
