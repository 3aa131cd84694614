"""Evolutionary search: EvoPress-style (1+λ) level switches, in budget mode and along a front.

Budget mode keeps the budget exact by construction: a *level switch* moves a number of
weights from one layer (or whole block) to another, working on integer pruned counts, so
every offspring prunes exactly ``round(target * N)`` weights. Offspring can be screened
on a slice of the search split (``screen``, a fraction) and only those that beat the
parent's score on the same slice are confirmed at full fidelity.

Pareto mode (``front: "levels"``, the default) spends the evaluations where a user reads
the front, the space's front levels (``target.sparsities``, default 0.5/0.6/0.7/0.8):

1. a coarse uniform sweep: each level, the space's upper bound and one level below the
   first (uniform Wanda is a strong prior, and these anchor the front's ends);
2. one (1+λ) level-switch search per level, taken in turn, that share what they learn:
   a switch that improves one level is applied to its neighbours' parents as well
   (a *transfer*), so a layer found sensitive at 60% is spared at 50% and 70% too;
3. the last ``fill`` of the budget fills the front between its points: the widest gap
   (quality difference times size difference of two neighbouring front points) gets
   the allocation halfway between them in pruned counts, a level shift that carries
   both shapes to the size between.

``front: "nsga2"`` runs NSGA-II selection through ``deap.tools`` instead (``selNSGA2``,
``selTournamentDCD`` on plain lists with a locally defined fitness, no ``creator``
globals), opening with a sweep of ``population`` uniform levels; a child is its parent
with level switches, a level shift, or both.

No population is held apart from the results: parents are derived from the results
told so far, so ``restore`` (replaying the stored trials) rebuilds the state.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from deap import base, tools

from prunetune.errors import OptionError
from prunetune.pareto import non_dominated
from prunetune.search.base import Candidate, SearchContext, Strategy, TrialResult
from prunetune.spaces.space import SearchSpace

# The front search's gap filling: a quarter of the budget, at most this many evaluations.
DEFAULT_FILL, DEFAULT_FILL_MAX = 0.25, 16
# The front search's switches draw from 0.5, 1 and 2 steps from this many evaluations per
# front level (a level's search then has the evaluations to try large and small moves).
MIXED_STEPS_PER_LEVEL = 32


class _Fitness(base.Fitness):
    weights = (1.0, -1.0)  # quality up, size down


class _Individual(list):  # type: ignore[type-arg]
    """A per-layer allocation with a DEAP fitness, built locally (no ``creator``)."""

    def __init__(self, values: Sequence[float], fitness: tuple[float, float] | None = None) -> None:
        super().__init__(values)
        self.fitness = _Fitness()
        if fitness is not None:
            self.fitness.values = fitness


@contextmanager
def _deap_random(seed: Sequence[int]) -> Iterator[None]:
    """DEAP's operators draw from the global ``random``; seed it for one call and put the
    caller's state back, so the strategy stays reproducible without side effects."""
    state = random.getstate()
    random.seed(int(np.random.default_rng(list(seed)).integers(2**63)))
    try:
        yield
    finally:
        random.setstate(state)


def _spread(amount: int, room: np.ndarray, numels: np.ndarray) -> np.ndarray:
    """Split ``amount`` weights over layers in proportion to size, never beyond ``room``."""
    out = np.minimum(np.floor(amount * numels / numels.sum()).astype(np.int64), room)
    left = amount - int(out.sum())
    while left > 0:
        free = room - out
        if free.sum() <= 0:
            break
        extra = np.minimum(np.ceil(left * free / free.sum()).astype(np.int64), free)
        for i in np.argsort(-free, kind="stable"):
            take = min(int(extra[i]), left)
            out[i] += take
            left -= take
            if left == 0:
                break
    return out


class EvolutionarySearch(Strategy):
    """Options:
        offspring: λ, offspring per parent in budget mode (used to size screening), default 8.
        moves: most level switches per mutation (budget mode), default 3.
        step: sparsity moved per switch (fraction of the smaller side), default the grid step.
        step_scales: multiples of ``step`` a switch draws its size from; default (1,), and
            (0.5, 1, 2) with ``front: nsga2`` or when the front search has at least 32
            evaluations per front level (decided on the validation split: budget mode's
            by ``benchmarks/decide_defaults.py``, the front search's by
            ``benchmarks/decide_front.py``: fixed steps won with 16 a level, mixed ones
            with 64).
        screen: fraction of the search split to screen offspring on (0 or 1: no screening),
            default 0 (every offspring at full fidelity); e.g. 0.25.
        front: Pareto mode, "levels" (level-switch searches at the front levels, then
            gap filling; default) or "nsga2".
        fill: Pareto mode ("levels"), fraction of the budget spent last on filling the
            widest gaps of the front; default a quarter of the budget, at most 16
            evaluations (the gaps between a few front levels need a fixed number of fills,
            not a share of a larger budget; decided on the validation split by
            ``benchmarks/decide_front.py``).
        population: NSGA-II population size (``front: nsga2``), default 16; "uniform" in
            ``warm_start`` opens it with this many uniform levels.
        warm_start: allocations to evaluate first: "uniform", "owl" or explicit lists;
            default ["uniform"] (Pareto mode, "levels": at the front levels, the upper
            bound and one level below the first).
        partitions: the groupings a level switch moves weights between, each drawn with
            equal chance: "layer" (one layer to another), "block" (one block's layers to
            another's), "kind" (every layer of one role, e.g. all value projections, to
            every layer of another); default ["layer", "block"] (decided on the
            validation split by ``benchmarks/decide_defaults.py``).
    """

    name = "evolutionary"
    uses_context = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        budget: int = 64,
        context: SearchContext | None = None,
        offspring: int = 8,
        moves: int = 3,
        step: float | None = None,
        step_scales: Sequence[float] | None = None,
        screen: float = 0.0,
        population: int = 16,
        warm_start: Sequence[Any] = ("uniform",),
        partitions: Sequence[str] = ("layer", "block"),
        front: str = "levels",
        fill: float | None = None,
    ) -> None:
        super().__init__(space, seed=seed, budget=budget, context=context)
        if front not in ("levels", "nsga2"):
            raise OptionError("front", front, "must be 'levels' or 'nsga2'")
        if fill is None:
            fill = min(DEFAULT_FILL, DEFAULT_FILL_MAX / max(budget, 1))
        if not (isinstance(fill, (int, float)) and 0.0 <= fill < 1.0):
            raise OptionError("fill", fill, "must be a fraction in [0, 1)")
        self.front = front if space.target is None else "budget"
        if not (isinstance(offspring, int) and offspring >= 1):
            raise OptionError("offspring", offspring, "must be an integer >= 1")
        if not (isinstance(moves, int) and moves >= 1):
            raise OptionError("moves", moves, "must be an integer >= 1")
        if not 0.0 <= screen <= 1.0:
            raise OptionError("screen", screen, "must be a fraction in [0, 1]")
        if not (isinstance(population, int) and population >= 4):
            raise OptionError("population", population, "must be an integer >= 4")
        self.step = space.step if step is None else float(step)
        if not 0.0 < self.step < 1.0:
            raise OptionError("step", step, "must be in (0, 1)")
        if step_scales is None:
            mixed = self.front == "nsga2" or (
                self.front == "levels" and budget >= MIXED_STEPS_PER_LEVEL * len(space.front_levels()))
            step_scales = (0.5, 1.0, 2.0) if mixed else (1.0,)
        scales = [float(x) for x in step_scales]
        if not scales or not all(0.0 < x * self.step < 1.0 for x in scales):
            raise OptionError("step_scales", list(step_scales), f"must be a non-empty list of multiples of "
                              f"step ({self.step}) that keep each switch in (0, 1)")
        self.step_scales = scales
        self.offspring, self.moves, self.population = offspring, moves, population
        self.screen = screen if 0.0 < screen < 1.0 else 1.0
        n = np.asarray(space.numels, dtype=np.int64)
        self._numels = n
        self._lo_k = np.array([int(np.ceil(space.lo * x - 1e-9)) for x in n], dtype=np.int64)
        self._hi_k = np.array([int(np.floor(space.hi * x + 1e-9)) for x in n], dtype=np.int64)
        self._partitions = self._groupings(space, partitions)
        if self.front == "levels":
            self._levels = _FrontLevels(self, fill)
            self.warm_start_named(warm_start, levels=self._levels.sweep)
        else:
            self.warm_start_named(warm_start, levels=population)
        # Budget-mode state, all derived from told results.
        self._parent: TrialResult | None = None
        self._anchor: float | None = None  # the parent's quality at screening fidelity
        self._confirm: list[Candidate] = []
        self._screened: dict[tuple[float, ...], float] = {}
        self._screen_failures = 0
        self._results: list[TrialResult] = []

    @staticmethod
    def _groupings(space: SearchSpace, partitions: Sequence[str]) -> list[tuple[str, list[list[int]]]]:
        """Index groups per named partition; a partition with fewer than two groups (one
        block, one kind) cannot move anything, so it stands in as the layer partition."""
        allowed = ("layer", "block", "kind")
        names = [partitions] if isinstance(partitions, str) else list(partitions)
        bad = [x for x in names if x not in allowed]
        if not names or bad:
            raise OptionError("partitions", list(names), f"must be a non-empty list of {', '.join(allowed)}")
        keys: dict[str, list[Any]] = {
            "layer": list(range(space.dim)),
            # a layer outside any block (or of no known role) is a group of its own
            "block": [layer.block if layer.block >= 0 else f"layer{i}" for i, layer in enumerate(space.layers)],
            "kind": [layer.kind if layer.kind != "other" else f"layer{i}" for i, layer in enumerate(space.layers)],
        }
        out = []
        for name in dict.fromkeys(names):
            groups = [[i for i, k in enumerate(keys[name]) if k == key] for key in dict.fromkeys(keys[name])]
            out.append((name, groups) if len(groups) >= 2 else ("layer", [[i] for i in range(space.dim)]))
        return out

    # -- budget mode: (1+λ) level switches ---------------------------------------------

    def _counts(self, sparsities: Sequence[float]) -> np.ndarray:
        return np.array([round(s * n) for s, n in zip(sparsities, self._numels, strict=True)], dtype=np.int64)

    def _fractions(self, k: np.ndarray) -> list[float]:
        return [int(c) / int(n) for c, n in zip(k, self._numels, strict=True)]

    def _level_switch(self, k: np.ndarray, rng: np.random.Generator) -> list[str]:
        """Move weights between layers or groups of layers of the counts ``k`` (in place)."""
        done: list[str] = []
        for _ in range(int(rng.integers(1, self.moves + 1))):
            name, groups = self._partitions[int(rng.integers(len(self._partitions)))]
            up, down = (groups[i] for i in rng.choice(len(groups), 2, replace=False))
            n_up, n_down = self._numels[up], self._numels[down]
            scales = self.step_scales  # one scale draws nothing: the fixed-step stream
            step = self.step * (scales[0] if len(scales) == 1 else scales[int(rng.integers(len(scales)))])
            want = round(step * min(n_up.sum(), n_down.sum()))
            room_up = self._hi_k[up] - k[up]
            room_down = k[down] - self._lo_k[down]
            amount = int(min(want, room_up.sum(), room_down.sum()))
            if amount <= 0:
                continue
            k[up] += _spread(amount, room_up, n_up)
            k[down] -= _spread(amount, room_down, n_down)
            tag = "" if name == "layer" else name[0]  # "3>7", "b6>b18", "k2>k4" (first layers)
            done.append(f"{tag}{up[0]}>{tag}{down[0]}")
        return done

    def _level_shift(self, k: np.ndarray, amount: int) -> int:
        """Prune ``amount`` more weights (fewer when negative) over all layers in proportion
        to size, so the shape is kept (in place); returns the amount actually moved."""
        if amount > 0:
            room = self._hi_k - k
            moved = _spread(min(amount, int(room.sum())), room, self._numels)
            k += moved
        else:
            room = k - self._lo_k
            moved = _spread(min(-amount, int(room.sum())), room, self._numels)
            k -= moved
        return int(moved.sum()) * (1 if amount > 0 else -1)

    def _budget_propose(self, index: int) -> Candidate | None:
        if self._confirm:
            return self._confirm.pop(0)
        parent = self._parent
        if parent is None:  # nothing scored yet: start from the uniform allocation
            t = self.space.target
            assert t is not None
            return Candidate(tuple(self.space.project([t] * self.space.dim)), origin="uniform")
        if self.screen < 1.0 and self._anchor is None:
            return Candidate(parent.candidate.sparsities, origin="anchor", fidelity=self.screen,
                             info={"parent": parent.number})
        rng = np.random.default_rng([self.seed, index])
        k = self._counts(parent.candidate.sparsities)
        moves = self._level_switch(k, rng)
        child = self._fractions(k)
        # Guard the exact budget: level switches conserve counts; the projection of an
        # exact allocation returns it unchanged.
        if sum(self._counts(child)) != sum(self._counts(parent.candidate.sparsities)):
            raise RuntimeError("internal: level switch changed the budget")
        return Candidate(tuple(child), origin="mutation", fidelity=self.screen,
                         info={"parent": parent.number, "moves": moves})

    def _budget_tell(self, r: TrialResult) -> None:
        cand = r.candidate
        if cand.fidelity < 1.0:
            if not r.ok:
                self._screen_failures += 1
                if self._screen_failures >= self.offspring and not any(
                    x.ok and x.candidate.fidelity < 1.0 for x in self._results
                ):
                    self.screen = 1.0  # the task cannot score slices: evaluate at full fidelity
                return
            self._screened[cand.sparsities] = float(r.quality)  # type: ignore[arg-type]
            if cand.origin == "anchor":
                if self._parent is not None and cand.sparsities == self._parent.candidate.sparsities:
                    self._anchor = r.quality
            elif self._anchor is not None and r.quality is not None and r.quality > self._anchor:
                self._confirm.append(Candidate(cand.sparsities, origin="confirm", info=dict(cand.info)))
            return
        self._confirm = [c for c in self._confirm if c.sparsities != cand.sparsities]
        if not r.ok:
            return
        assert r.quality is not None
        if self._parent is None or r.quality > (self._parent.quality or float("-inf")):
            self._parent = r
            # A confirmed offspring was screened already: its slice score is the new anchor.
            self._anchor = self._screened.get(cand.sparsities)

    # -- Pareto mode: NSGA-II ------------------------------------------------------------

    def _pareto_propose(self, index: int) -> Candidate:
        sp = self.space
        rng = np.random.default_rng([self.seed, index])
        pool = [
            _Individual(r.candidate.sparsities, (float(r.quality), float(r.size)))  # type: ignore[arg-type]
            for r in self._results
            if r.ok and r.candidate.fidelity == 1.0 and r.size is not None
        ]
        if len(pool) < 4:  # no opening sweep (or it failed): random levels with noise
            level = float(rng.uniform(sp.lo, sp.hi))
            proposal = level + rng.normal(0.0, 0.1, sp.dim)
            return Candidate(tuple(sp.project(proposal)), origin="random", info={"level": level})
        with _deap_random([self.seed, index]):
            elite = tools.selNSGA2(pool, min(self.population, len(pool)))
            k = 4 if len(elite) >= 4 else len(elite) - len(elite) % 4
            parent = tools.selTournamentDCD(elite, k)[0]
        counts = self._counts(parent)
        kind = int(rng.integers(3))  # 0: switches only, 1: shift only, 2: both
        moves = self._level_switch(counts, rng) if kind != 1 else []
        shift = 0
        if kind != 0:
            # Up to two steps of the whole model's prunable weights, either way.
            amount = round(rng.uniform(-2.0, 2.0) * self.step * int(self._numels.sum()))
            shift = self._level_shift(counts, amount)
        if not moves and shift == 0:  # at a bound (e.g. every layer at the cap): step away
            amount = round(rng.uniform(0.25, 2.0) * self.step * int(self._numels.sum()))
            shift = self._level_shift(counts, -amount) or self._level_shift(counts, amount)
        return Candidate(tuple(self._fractions(counts)), origin="nsga2",
                         info={"moves": moves, "shift": shift})

    # -- ask/tell ----------------------------------------------------------------------

    def _propose(self, index: int) -> Candidate | None:
        if self.front == "budget":
            return self._budget_propose(index)
        if self.front == "levels":
            return self._levels.propose(index)
        return self._pareto_propose(index)

    def tell(self, results: Sequence[TrialResult]) -> None:
        for r in results:
            self._results.append(r)
            if self.front == "budget":
                self._budget_tell(r)
            elif self.front == "levels":
                self._levels.tell(r)


class _FrontLevels:
    """Pareto mode's front search at the space's front levels (see the module docstring).

    A result belongs to a level when its total pruned count is that level's exact count;
    each level's parent is its best such result. Transfers and fills are derived from
    told results only, so replaying them (``restore``) rebuilds the state.
    """

    def __init__(self, search: EvolutionarySearch, fill: float) -> None:
        sp = search.space
        self.search = search
        self.levels = sp.front_levels()
        below = [round(sp.lo + (self.levels[0] - sp.lo) / 2, 4)] if self.levels[0] - sp.lo >= 2 * sp.step else []
        above = [sp.hi] if sp.hi - self.levels[-1] >= sp.step / 2 else []
        self.sweep = [*self.levels, *above, *below]
        self.fill_from = search.budget - round(fill * search.budget)
        self.totals = [int(search._counts(sp.project([t] * sp.dim, target=t)).sum()) for t in self.levels]
        self.parents: list[TrialResult | None] = [None] * len(self.levels)
        self.counts: dict[int, np.ndarray] = {}  # trial number -> pruned counts
        self.transfers: list[Candidate] = []
        self.pending: dict[tuple[float, ...], tuple[float, float]] = {}  # asked fills: (quality, size) guess
        self.front: list[TrialResult] = []

    # -- proposals ---------------------------------------------------------------------

    def propose(self, index: int) -> Candidate | None:
        if index >= self.fill_from:
            cand = self._fill()
            if cand is not None:
                return cand
        if self.transfers:
            return self.transfers.pop(0)
        alive = [i for i, p in enumerate(self.parents) if p is not None]
        if not alive:  # the sweep failed at every level: try the levels' uniform allocations again
            t = self.levels[index % len(self.levels)]
            sp = self.search.space
            return Candidate(tuple(sp.project([t] * sp.dim, target=t)), origin="uniform", info={"level": t})
        level = alive[index % len(alive)]
        parent = self.parents[level]
        assert parent is not None
        rng = np.random.default_rng([self.search.seed, index])
        k = self.search._counts(parent.candidate.sparsities)
        moves = self.search._level_switch(k, rng)
        return Candidate(tuple(self.search._fractions(k)), origin="mutation",
                         info={"parent": parent.number, "level": self.levels[level], "moves": moves})

    def _fill(self) -> Candidate | None:
        """Halfway (in pruned counts) between the two neighbouring front points whose gap
        (quality difference times size difference) is widest; asked fills count as points."""
        pts = [(float(r.quality), float(r.size), self.search._counts(r.candidate.sparsities))  # type: ignore[arg-type]
               for r in self.front]
        pts += [(q, z, self.search._counts(c)) for c, (q, z) in self.pending.items()]
        pts.sort(key=lambda p: p[1])
        best: tuple[float, np.ndarray, float, float] | None = None
        for (q_a, z_a, k_a), (q_b, z_b, k_b) in itertools.pairwise(pts):
            gap = (q_b - q_a) * (z_b - z_a)
            mid = (k_a + k_b) // 2
            if gap <= 0 or int(mid.sum()) in (int(k_a.sum()), int(k_b.sum())):
                continue
            if best is None or gap > best[0]:
                best = (gap, mid, (q_a + q_b) / 2, (z_a + z_b) / 2)
        if best is None:
            return None
        _, mid, q, z = best
        cand = Candidate(tuple(self.search._fractions(mid)), origin="fill")
        self.pending[cand.sparsities] = (q, z)
        return cand

    # -- learning ----------------------------------------------------------------------

    def tell(self, r: TrialResult) -> None:
        self.pending.pop(r.candidate.sparsities, None)
        self.transfers = [c for c in self.transfers if c.sparsities != r.candidate.sparsities]
        if not r.ok or r.candidate.fidelity < 1.0 or r.size is None:
            return
        k = self.search._counts(r.candidate.sparsities)
        self.counts[r.number] = k
        self._add_to_front(r)
        total = int(k.sum())
        if total not in self.totals:
            return
        level = self.totals.index(total)
        parent = self.parents[level]
        if parent is not None and float(r.quality) <= float(parent.quality):  # type: ignore[arg-type]
            return
        self.parents[level] = r
        # Share the improving switch with the neighbouring levels (a transfer that improves
        # passes it on, away from where it came from).
        source = r.candidate.info.get("parent")
        if parent is None or not isinstance(source, int) or source not in self.counts:
            return
        delta = k - self.counts[source]
        came_from = r.candidate.info.get("from_level")
        for nb in (level - 1, level + 1):
            if 0 <= nb < len(self.levels) and self.levels[nb] != came_from:
                self._transfer(delta, nb, r)

    def _transfer(self, delta: np.ndarray, level: int, r: TrialResult) -> None:
        parent = self.parents[level]
        if parent is None:
            return
        s = self.search
        base = s._counts(parent.candidate.sparsities)
        k = np.clip(base + delta, s._lo_k, s._hi_k)
        short = int(base.sum()) - int(k.sum())  # clipping broke the count: spread the rest
        if short > 0:
            k += _spread(short, s._hi_k - k, s._numels)
        elif short < 0:
            k -= _spread(-short, k - s._lo_k, s._numels)
        if int(k.sum()) != int(base.sum()) or np.array_equal(k, base):
            return
        self.transfers.append(Candidate(
            tuple(s._fractions(k)), origin="transfer",
            info={"parent": parent.number, "level": self.levels[level],
                  "from_level": r.candidate.info.get("level"), "from_trial": r.number}))

    def _add_to_front(self, r: TrialResult) -> None:
        pts = [*self.front, r]
        keep = non_dominated([(float(x.quality), float(x.size)) for x in pts])  # type: ignore[arg-type]
        self.front = [pts[i] for i in keep]

