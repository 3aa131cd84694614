"""Multi-fidelity screening: score a candidate on a slice first, promote the promising.

``PromotionRule`` decides whether a low-fidelity result earns a full evaluation:

- Pareto mode: only if it could still reach the front, i.e. its predicted full-fidelity
  quality plus a margin beats every full-fidelity result at its size or smaller. The
  prediction corrects the low-fidelity score by the mean gap (full - low) seen on promoted
  candidates, and the margin is ``z`` standard deviations of that gap: the subset is
  fixed, so most of the gap is a shared offset and the rest is what the margin covers.
  Until ``warmup`` such pairs exist every candidate is promoted (the gap is unknown).
- Budget mode (every candidate the same size): only if its low-fidelity quality is in the
  top ``top`` fraction of all low-fidelity results so far (the first ``warmup`` pass).

``ScreenedStrategy`` wraps any strategy: its proposals are scored at ``fraction``, and
the promoted ones come back as full-fidelity candidates (origin ``promoted``, with
``info.screened_trial`` and ``info.screen_quality``), so both fidelities are recorded.
The front is built from full-fidelity results only (``controller.pareto_front``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from prunetune.evaluators.fidelity import check_fraction
from prunetune.search.base import Candidate, Strategy, TrialResult


@dataclass
class PromotionRule:
    """Decides promotions; ``observe`` every finished result, in order, then ``promote``.

    Attributes:
        pareto: True in Pareto mode, False in budget mode.
        top: budget mode: share of low-fidelity results promoted (in (0, 1]).
        warmup: promotions made unconditionally first (to learn the gap).
        z: Pareto mode: margin in standard deviations of the low/full gap.
    """

    pareto: bool
    top: float = 0.25
    warmup: int = 4
    z: float = 2.0
    _full: list[tuple[float, float]] = field(default_factory=list)  # (quality, size)
    _low: list[float] = field(default_factory=list)
    _pairs: list[tuple[float, float]] = field(default_factory=list)  # (low, full)

    def __post_init__(self) -> None:
        if self.z < 0:
            raise ValueError(f"z must be >= 0; got {self.z}")
        if not 0.0 < self.top <= 1.0:
            raise ValueError(f"top must be in (0, 1]; got {self.top}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0; got {self.warmup}")

    @property
    def gap(self) -> float:
        """Mean of full - low fidelity quality over promoted candidates."""
        return statistics.fmean(f - lo for lo, f in self._pairs) if self._pairs else 0.0

    @property
    def margin(self) -> float:
        if len(self._pairs) < 2:
            return math.inf
        return self.z * statistics.stdev(f - lo for lo, f in self._pairs)

    def observe(self, result: TrialResult) -> None:
        if not result.ok:
            return
        assert result.quality is not None and result.size is not None
        if result.candidate.fidelity < 1.0:
            self._low.append(result.quality)
            return
        self._full.append((result.quality, result.size))
        screen = result.candidate.info.get("screen_quality")
        if screen is not None:
            self._pairs.append((float(screen), result.quality))

    def promote(self, result: TrialResult, promoted_so_far: int) -> bool:
        """Whether the low-fidelity ``result`` deserves a full evaluation."""
        if not result.ok or result.candidate.fidelity >= 1.0:
            return False
        assert result.quality is not None and result.size is not None
        if promoted_so_far < self.warmup or (self.pareto and len(self._pairs) < self.warmup):
            return True
        if not self.pareto:
            ranked = sorted(self._low, reverse=True)
            cut = ranked[max(0, min(len(ranked), round(self.top * len(ranked))) - 1)]
            return result.quality >= cut
        best = max((q for q, s in self._full if s <= result.size), default=float("-inf"))
        return result.quality + self.gap + self.margin > best


class ScreenedStrategy(Strategy):
    """Any strategy, screened: proposals at ``fraction``, promotions at full fidelity.

    The inner strategy is told (and restored from) its own low-fidelity results only.
    """

    name = "screened"

    def __init__(self, inner: Strategy, fraction: float = 0.25, rule: PromotionRule | None = None) -> None:
        super().__init__(inner.space, seed=inner.seed, budget=inner.budget)
        self.inner = inner
        self.fraction = check_fraction(fraction)
        if self.fraction == 1.0:
            raise ValueError("fraction must be below 1 for screening; use the inner strategy alone")
        self.rule = rule or PromotionRule(pareto=inner.space.target is None)
        self._queue: list[Candidate] = []
        self.promoted = 0

    def _propose(self, index: int) -> Candidate | None:  # pragma: no cover - ask is overridden
        return None

    def ask(self, n: int) -> list[Candidate]:
        out = [self._queue.pop(0) for _ in range(min(n, len(self._queue)))]
        for c in self.inner.ask(n - len(out)):
            out.append(Candidate(c.sparsities, origin=c.origin, info=c.info, fidelity=self.fraction))
        self.asked += len(out)
        return out

    def tell(self, results: Sequence[TrialResult]) -> None:
        for r in results:
            self.rule.observe(r)
        own = [r for r in results if r.candidate.fidelity < 1.0]
        for r in own:
            if self.rule.promote(r, self.promoted):
                self.promoted += 1
                self._queue.append(Candidate(
                    r.candidate.sparsities, origin="promoted",
                    info={"screened_trial": r.number, "screen_quality": r.quality,
                          "screen_fraction": r.candidate.fidelity},
                ))
        self.inner.tell(own)

    def restore(self, results: Sequence[TrialResult]) -> None:
        self.asked = len(results)
        self.inner.restore([r for r in results if r.candidate.fidelity < 1.0])
        done = {r.candidate.info.get("screened_trial") for r in results if r.candidate.fidelity >= 1.0}
        for r in results:
            self.rule.observe(r)
            if r.candidate.fidelity < 1.0 and self.rule.promote(r, self.promoted):
                self.promoted += 1
                if r.number not in done:
                    self._queue.append(Candidate(
                        r.candidate.sparsities, origin="promoted",
                        info={"screened_trial": r.number, "screen_quality": r.quality,
                              "screen_fraction": r.candidate.fidelity},
                    ))
