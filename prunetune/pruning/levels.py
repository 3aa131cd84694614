"""The level database: every prunable layer reconstructed at every level of the grid, once.

A search over reconstructed weights cannot afford a solve per candidate. As EvoPress does,
each layer is pruned and re-fitted (:class:`~prunetune.pruning.reconstruction.LayerSolver`)
at each grid level independently, from the dense model's calibration inputs, so any
combination of levels is a valid candidate; a candidate is then assembled by copying
stored weights in, at the cost of a memory copy.

Allocations need not lie on the grid (budget mode hands out counts to the weight): a
count ``k`` between two levels takes the lower level's weights and removes ``k - k_a``
more, the next ones of that level's *top-up order* (its remaining weights by OBS saliency,
balanced over rows as the level itself is). Counts stay exact to the weight.

Storage per (layer, level): a bitmask of the kept weights (one bit a weight), the kept
values in half precision (float32 where a value does not fit), and the top-up order as
int32 positions. The same tensors are the on-disk form (one safetensors file, keyed by
what determines them: :class:`LevelCache`) and the in-memory one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from prunetune.pruning.cache import save_atomically
from prunetune.pruning.calibration import InputStats
from prunetune.pruning.masks import Pruner, parse_nm
from prunetune.pruning.reconstruction import LayerSolver, SparseGPTConfig
from prunetune.spaces.space import PrunableLayer

log = logging.getLogger(__name__)

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as uint8 bytes, eight entries a byte, most significant bit first."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-len(flat)) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) << _SHIFTS.to(flat.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` entries of a :func:`pack_bits` result, as a flat boolean tensor."""
    bits = (packed[:, None] >> _SHIFTS.to(packed.device)) & 1
    return bits.reshape(-1)[:n].bool()


@dataclass(frozen=True)
class Level:
    """One layer reconstructed at ``count`` pruned weights."""

    count: int
    kept: torch.Tensor  # packed bits, 1 = kept, over the (out, in) view in row-major order
    values: torch.Tensor  # the kept weights, row-major, float16 (or float32)
    topup: torch.Tensor  # int32 flat positions of the next weights to remove, in order
    row_pruned: torch.Tensor  # int32 pruned weights per row
    row_order: torch.Tensor  # int32 rows, cheapest first to take from this level over the one below

    @property
    def nbytes(self) -> int:
        parts = (self.kept, self.values, self.topup, self.row_pruned, self.row_order)
        return sum(t.numel() * t.element_size() for t in parts)


@dataclass(frozen=True)
class Assembly:
    """How one layer is assembled at a count: the rows of ``below`` (None: the dense
    weight), the ``rows`` of ``above`` in their place, then ``zero`` (flat positions)
    removed on top, unfitted."""

    below: Level | None
    above: Level | None
    rows: torch.Tensor
    zero: torch.Tensor


def _removal_order(candidates: torch.Tensor, salience: torch.Tensor, limit: int, groups: str) -> torch.Tensor:
    """Flat positions of the ``limit`` least salient ``candidates`` (a boolean mask), least
    salient first; with ``groups="row"`` any prefix spreads over rows as evenly as it can."""
    rows, cols = candidates.shape
    sal = torch.where(candidates, salience.float(), torch.full_like(salience, math.inf, dtype=torch.float32))
    if limit <= 0:
        return torch.zeros(0, dtype=torch.int32)
    if groups == "layer":
        order = torch.sort(sal.reshape(-1), stable=True).indices[:limit]
        return order.to(torch.int32).cpu()
    depth = min(cols, math.ceil(limit / rows) + 1)
    vals, idx = torch.topk(sal, depth, dim=1, largest=False, sorted=True)
    by_rank = torch.argsort(vals, dim=0, stable=True)  # per rank, rows by their weight's salience
    ranks = torch.arange(depth, device=vals.device)[None, :].expand_as(by_rank)
    flat = (by_rank * cols + idx[by_rank, ranks]).t().reshape(-1)
    finite = vals[by_rank, ranks].t().reshape(-1).isfinite()
    return flat[finite][:limit].to(torch.int32).cpu()


@dataclass
class LevelDatabase:
    """Reconstructed levels of every layer: ``weight(name, k, dense)`` assembles any count.

    Attributes:
        levels: per layer name, its levels sorted by count (count 0 is the dense weight
            and is not stored).
        caps: per layer, the largest count the database can assemble.
        build_seconds: time to build it (0 when read from the cache).
    """

    levels: dict[str, list[Level]]
    caps: dict[str, int]
    shapes: dict[str, tuple[int, int]]
    method: str = "sparsegpt"
    build_seconds: float = 0.0
    dense_topup: dict[str, torch.Tensor] = field(default_factory=dict)
    _counts: dict[str, list[int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._counts = {n: [lv.count for lv in lvs] for n, lvs in self.levels.items()}

    @property
    def nbytes(self) -> int:
        return sum(lv.nbytes for lvs in self.levels.values() for lv in lvs)

    def level_for(self, name: str, k: int) -> Level | None:
        """The stored level an assembly of ``k`` starts from (None: the dense weight)."""
        counts = self._counts[name]
        below = [i for i, c in enumerate(counts) if c <= k]
        return self.levels[name][below[-1]] if below else None

    def plan(self, name: str, k: int, pattern: bool = False) -> Assembly:
        """How ``k`` pruned weights of layer ``name`` are assembled.

        Between two levels the layer mixes rows: the update of a reconstruction is row by
        row, so a row taken whole from the level above is as well fitted as the rest.
        Rows go over in the order that raises the layer's output error least, as many as
        fit under ``k``; the few weights still missing (fewer than one row's difference)
        come from the level below's top-up order, unfitted."""
        if k > self.caps[name]:
            raise ValueError(f"layer {name!r}: {k} pruned weights asked of a level database that goes up to "
                             f"{self.caps[name]}; rebuild it with a larger space.max")
        none = torch.zeros(0, dtype=torch.long)
        if pattern:
            return Assembly(self.levels[name][-1], None, none, none)
        below = self.level_for(name, k)
        base = 0 if below is None else below.count
        above = next((lv for lv in self.levels[name] if lv.count > k), None)
        # Small arrays, many calls: numpy keeps the planning far below a forward pass.
        topup = (self.dense_topup[name] if below is None else below.topup).numpy()
        if above is None or k == base:
            return Assembly(below, None, none, torch.from_numpy(topup[: k - base].astype(np.int64)))
        order = above.row_order.numpy().astype(np.int64)
        under = below.row_pruned.numpy() if below is not None else 0
        cum = np.cumsum((above.row_pruned.numpy() - under)[order].astype(np.int64))
        taken = int(np.searchsorted(cum, k - base, side="right"))
        rows_of = topup // self.shapes[name][1]
        moved = np.zeros(len(order), dtype=bool)
        while True:  # the rest from the rows left; one row fewer when their top-up is too short
            moved[:] = False
            moved[order[:taken]] = True
            done = base + (int(cum[taken - 1]) if taken else 0)
            rest = topup[~moved[rows_of]]
            if len(rest) >= k - done or taken == 0:
                break
            taken -= 1
        if len(rest) < k - done:  # pragma: no cover - the orders are built a step deep
            raise RuntimeError(f"layer {name!r}: the top-up order is too short for {k} pruned weights")
        rows = torch.from_numpy(order[:taken].copy())
        zero = torch.from_numpy(rest[: k - done].astype(np.int64))
        return Assembly(below, above, rows, zero)

    def expand(self, name: str, level: Level, device: torch.device | str = "cpu") -> torch.Tensor:
        """A stored level as a dense ``(out, in)`` tensor in its stored precision."""
        rows, cols = self.shapes[name]
        keep = unpack_bits(level.kept.to(device), rows * cols)
        out = torch.zeros(rows * cols, dtype=level.values.dtype, device=device)
        out[keep] = level.values.to(device)
        return out.view(rows, cols)

    def weight(self, name: str, k: int, dense: torch.Tensor, pattern: bool = False) -> torch.Tensor:
        """The ``(out, in)`` weight of layer ``name`` with ``k`` weights pruned, on
        ``dense``'s device, in float32. ``pattern``: the layer's one stored N:M level."""
        if k == 0:
            return dense.float()
        plan = self.plan(name, k, pattern)
        out = dense.float().clone() if plan.below is None else self.expand(name, plan.below, dense.device).float()
        above = None if plan.above is None else self.expand(name, plan.above, dense.device)
        finish(out, plan, above)
        return out

    # -- storage -----------------------------------------------------------------------

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, lvs in self.levels.items():
            out[f"{name}/dense/topup"] = self.dense_topup[name]
            for lv in lvs:
                out[f"{name}/{lv.count}/kept"] = lv.kept
                out[f"{name}/{lv.count}/values"] = lv.values
                out[f"{name}/{lv.count}/topup"] = lv.topup
                out[f"{name}/{lv.count}/row_pruned"] = lv.row_pruned
                out[f"{name}/{lv.count}/row_order"] = lv.row_order
        return out

    def metadata(self) -> dict[str, str]:
        return {"method": self.method, "caps": json.dumps(self.caps), "shapes": json.dumps(self.shapes),
                "build_seconds": repr(self.build_seconds)}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> LevelDatabase:
        shapes = {n: (int(r), int(c)) for n, (r, c) in json.loads(metadata["shapes"]).items()}
        levels: dict[str, list[Level]] = {n: [] for n in shapes}
        dense_topup = {}
        for key in tensors:
            name, count, part = key.rsplit("/", 2)
            if count == "dense":
                dense_topup[name] = tensors[key]
            elif part == "kept":
                levels[name].append(Level(int(count), *(tensors[f"{name}/{count}/{part}"] for part in (
                    "kept", "values", "topup", "row_pruned", "row_order"))))
        for lvs in levels.values():
            lvs.sort(key=lambda lv: lv.count)
        return cls(levels, {n: int(v) for n, v in json.loads(metadata["caps"]).items()}, shapes,
                   method=metadata.get("method", "sparsegpt"), dense_topup=dense_topup)


def finish(out: torch.Tensor, plan: Assembly, above: torch.Tensor | None) -> None:
    """Complete an assembly in place: ``out`` holds the level below (or the dense weight);
    copy in the plan's rows of ``above`` (that level expanded) and zero its top-up
    positions. ``out`` may be a strided view (GPT-2's transposed weights)."""
    if above is not None and len(plan.rows):
        rows = plan.rows.to(out.device)
        out[rows] = above[rows].to(out.dtype)
    if len(plan.zero):
        flat = plan.zero.to(out.device)
        cols = out.shape[1]
        out.index_put_((flat // cols, flat % cols), torch.zeros((), dtype=out.dtype, device=out.device))


def _stored_values(weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    values = weight.reshape(-1)[keep.reshape(-1)]
    half = values.half()
    return half.cpu() if bool(torch.isfinite(half).all()) else values.float().cpu()


def build_levels(
    weights: Mapping[str, torch.Tensor],
    stats: Mapping[str, InputStats],
    counts: Mapping[str, Sequence[int]],
    caps: Mapping[str, int],
    config: SparseGPTConfig | None = None,
    pattern: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
) -> LevelDatabase:
    """Reconstruct every layer at each of its ``counts`` (pruned weights; 0 is skipped).

    Args:
        weights: dense ``(out, in)`` weights by layer name.
        stats: each layer's calibration statistics with ``gram`` (see
            :class:`~prunetune.pruning.calibration.InputNormAccumulator`).
        counts: the level counts of each layer.
        caps: the largest count each layer may be assembled at (top-up orders reach it).
        pattern: N:M instead: one level per layer, the pattern (``counts`` ignored).
        device: where the solves run (a GPU when there is one).
    """
    config = config or SparseGPTConfig()
    start = time.perf_counter()
    levels: dict[str, list[Level]] = {}
    dense_topup: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, int]] = {}
    for name, dense in weights.items():
        gram = stats[name].gram
        if gram is None:
            raise ValueError(f"layer {name!r}: its calibration statistics have no gram matrix (collect with gram=True)")
        solver = LayerSolver(dense.to(device), gram.to(device), config)
        rows, cols = solver.rows, solver.cols
        shapes[name] = (rows, cols)
        wanted = [(1, pattern)] if pattern else [(int(k), None) for k in sorted(set(counts[name])) if k > 0]
        nexts = [c for c, _ in wanted[1:]] + [int(caps[name])]
        lvs = []
        solved = solver.prune_many([k for k, _ in wanted], pattern)
        h = gram.to(device).float()
        previous = torch.zeros(rows, device=solver.dense.device)  # each row's output error, dense: 0
        for (k, pat), nxt, w in zip(wanted, nexts, solved, strict=True):
            keep = w != 0 if pat else _kept_mask(w, k)
            count = rows * cols - int(keep.sum())
            diff = w - solver.dense
            error = ((diff @ h) * diff).sum(dim=1)  # each row's squared output error on calibration
            lvs.append(Level(count, pack_bits(keep).cpu(), _stored_values(w, keep),
                             _removal_order(keep, solver.saliency(w), 0 if pat else nxt - k, config.groups),
                             (~keep).sum(dim=1).to(torch.int32).cpu(),
                             torch.argsort(error - previous, stable=True).to(torch.int32).cpu()))
            previous = error
        first = lvs[0].count if lvs and not pattern else int(caps[name])
        dense_topup[name] = _removal_order(torch.ones_like(solver.dense, dtype=torch.bool),
                                           solver.saliency(solver.dense), first, config.groups)
        levels[name] = lvs
    db = LevelDatabase(levels, {n: int(caps[n]) for n in weights}, shapes, dense_topup=dense_topup,
                       build_seconds=time.perf_counter() - start)
    log.info("level database: %d layers, %d levels, %.1f MB, %.1f s", len(levels),
             sum(len(v) for v in levels.values()), db.nbytes / 1e6, db.build_seconds)
    return db


def _kept_mask(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Kept = not among the ``k`` pruned weights. A solve leaves exactly ``k`` zeros where it
    pruned; a kept weight that is exactly zero (a dense zero) still counts as kept."""
    keep = weight != 0
    missing = int(keep.sum()) - (weight.numel() - k)
    if missing < 0:  # dense zeros the solver did not prune: mark the first ones kept
        zeros = (~keep).reshape(-1).nonzero().reshape(-1)
        keep.view(-1)[zeros[: -missing]] = True
    return keep


class LevelCache:
    """``get(key)`` / ``put(key, db)`` of level databases as safetensors files, beside the
    score cache (``levels-<key>.safetensors``)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"levels-{key}.safetensors"

    def get(self, key: str) -> LevelDatabase | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                metadata = f.metadata() or {}
            return LevelDatabase.from_tensors(load_file(str(path)), metadata)
        except Exception:  # a truncated file from a killed writer: rebuild
            return None

    def put(self, key: str, db: LevelDatabase) -> Path:
        return save_atomically(db.tensors(), self.path(key), db.metadata())


def grid_counts(layers: Sequence[PrunableLayer], grid: Sequence[float], hi: float) -> tuple[dict[str, list[int]], dict[str, int]]:
    """Level counts (``round(level * numel)``, as masks count them) and caps (the most a
    layer may lose at sparsity ``hi``: ``floor(hi * numel)`` from a budget projection,
    ``round(hi * numel)`` from a sparsity of exactly ``hi``) of each layer."""
    counts = {layer.name: sorted({round(float(g) * layer.numel) for g in grid}) for layer in layers}
    caps = {layer.name: max(math.floor(hi * layer.numel + 1e-9), round(hi * layer.numel), *counts[layer.name])
            for layer in layers}
    return counts, caps


class LevelPruner(Pruner):
    """A :class:`~prunetune.pruning.masks.Pruner` whose candidates are assembled from a
    level database instead of masked: same counts (exact to the weight), same
    ``apply`` / ``restore`` contract (restore is bit for bit), reconstructed weights.

    Levels in use are kept expanded (dense, stored precision) up to ``cache_bytes``, so
    assembling a layer is one copy plus the few top-up zeros; ``apply`` writes only the
    layers whose count differs from what is live.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        layers: Sequence[PrunableLayer],
        database: LevelDatabase,
        pattern: str | tuple[int, int] | None = None,
        cache_bytes: int = 2 << 30,
    ) -> None:
        from prunetune.pruning.layers import weight_matrix

        modules = dict(model.named_modules())
        self.layers = list(layers)
        missing = [layer.name for layer in self.layers if layer.name not in database.levels]
        if missing:
            raise ValueError(f"the level database has no levels for layers {missing[:3]}")
        self.database = database
        self._weights = [weight_matrix(modules[layer.name], layer) for layer in self.layers]
        self._dense = [w.detach().clone() for w in self._weights]
        self.pattern = None if pattern is None else parse_nm(pattern)
        self._live = [0] * len(self.layers)
        self._dirty: list[int] = []
        self._expanded: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()
        self._expanded_bytes = 0
        self._cache_bytes = cache_bytes
        self._plans: OrderedDict[tuple[int, int], Assembly] = OrderedDict()
        # When every level fits expanded, expand them now, so that no evaluation pays for a
        # first use (on a GPU they then live on it).
        expanded = sum(layer.numel * lv.values.element_size()
                       for layer in self.layers for lv in database.levels[layer.name])
        if expanded <= cache_bytes:
            for i, layer in enumerate(self.layers):
                for level in database.levels[layer.name]:
                    self._level_weight(layer.name, level, self._weights[i].device)

    #: the evaluator may leave a candidate live until the next ``apply`` (which then moves
    #: only the layers that differ) instead of restoring after every evaluation
    live_between_candidates = True

    def _plan(self, i: int, k: int) -> Assembly:
        key = (i, k)
        if key not in self._plans:
            self._plans[key] = self.database.plan(self.layers[i].name, k, self.pattern is not None)
            if len(self._plans) > 50_000:
                self._plans.popitem(last=False)
        return self._plans[key]

    def _level_weight(self, name: str, level: Level, device: torch.device) -> torch.Tensor:
        key = (name, level.count)
        if key in self._expanded:
            self._expanded.move_to_end(key)
            return self._expanded[key]
        w = self.database.expand(name, level, device)
        self._expanded[key] = w
        self._expanded_bytes += w.numel() * w.element_size()
        while self._expanded_bytes > self._cache_bytes and len(self._expanded) > 1:
            _, old = self._expanded.popitem(last=False)
            self._expanded_bytes -= old.numel() * old.element_size()
        return w

    def _write(self, i: int, k: int) -> None:
        w, name = self._weights[i], self.layers[i].name
        if k == 0:
            w.copy_(self._dense[i])
            return
        plan = self._plan(i, k)
        w.copy_(self._dense[i] if plan.below is None else self._level_weight(name, plan.below, w.device))
        finish(w, plan, None if plan.above is None else self._level_weight(name, plan.above, w.device))

    def apply(self, sparsities: Sequence[float]) -> None:
        for i, k in enumerate(self.counts(sparsities)):
            if k != self._live[i]:
                self._write(i, k)
                self._live[i] = k
        self._dirty = [i for i, k in enumerate(self._live) if k]

    def restore(self) -> None:
        for i in self._dirty:
            self._weights[i].copy_(self._dense[i])
            self._live[i] = 0
        self._dirty.clear()

    def keep_masks(self, sparsities: Sequence[float]) -> dict[str, torch.Tensor]:
        masks = {}
        for i, k in enumerate(self.counts(sparsities)):
            layer = self.layers[i]
            w = self.database.weight(layer.name, k, self._dense[i], self.pattern is not None)
            masks[layer.name] = (w != 0).cpu() if k else torch.ones(layer.rows, layer.cols, dtype=torch.bool)
        return masks
