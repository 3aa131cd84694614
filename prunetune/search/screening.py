"""Multi-fidelity screening: score a candidate on a slice first, promote the promising.

``PromotionRule`` decides whether a low-fidelity (slice) result earns a full evaluation.
One question in both modes: *could this candidate still improve the final result?*

- Its full-fidelity quality is predicted from its slice score by a straight line fitted
  to the (slice, full) pairs of the candidates promoted so far. The slice is fixed, so
  the two scores differ mostly by an offset and a scale shared by every candidate
  (measured on MiniLM at 70% sparsity: better candidates gain a little more on the full
  split); the line takes both out. The margin is the one-sided prediction interval at
  confidence ``z`` (2: a candidate is dropped only when the chance that its full score
  would have made it is below ~2.3%).
- Pareto mode: promoted when the prediction plus the margin beats every full-fidelity
  result at its size or smaller, i.e. when it would not be dominated by the current
  full front and so could add hypervolume.
- Budget mode (every candidate the same size): promoted when the prediction plus the
  margin beats the best full-fidelity result, i.e. when it could still become the best.

In effect slice scores are compared with slice scores (a full result is its own slice
score put through the same line, plus its residual), so the shared bias cancels. The
first ``warmup`` candidates are promoted unconditionally, and so is everything until
three (slice, full) pairs exist (no spread to measure before then). Simpler rules do
not pay: promoting the top quarter of the slice scores seen so far (in budget mode early
results are always in the top quarter), or anything non-dominated by a mean-gap
prediction plus two standard deviations of the gap, promotes half to nine tenths of
MiniLM's candidates (``benchmarks/multifidelity.py``).

``ScreenedStrategy`` wraps any strategy: its proposals are scored at ``fraction``, and
the promoted ones come back as full-fidelity candidates (origin ``promoted``, with
``info.screened_trial`` and ``info.screen_quality``), so both fidelities are recorded.
The front is built from full-fidelity results only (``store.studies.result_front``).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from prunetune.records import check_fraction
from prunetune.search.base import Candidate, Strategy, TrialResult


@dataclass
class PromotionRule:
    """Decides promotions; ``observe`` every finished result, in order, then ``promote``.

    Attributes:
        pareto: True in Pareto mode, False in budget mode.
        warmup: promotions made unconditionally first (to calibrate), >= 0.
        z: confidence of the margin as a standard normal quantile, >= 0 (2: a candidate
            is dropped only when the chance that it would have made it is below ~2.3%).
    """

    pareto: bool
    warmup: int = 3
    z: float = 2.0
    _full: list[tuple[float, float]] = field(default_factory=list)  # (quality, size)
    _pairs: list[tuple[float, float]] = field(default_factory=list)  # (slice, full)
    _done: set[tuple[float, ...]] = field(default_factory=set)  # promoted or scored in full

    def __post_init__(self) -> None:
        if self.z < 0:
            raise ValueError(f"z must be >= 0; got {self.z}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0; got {self.warmup}")

    def predict(self, low: float) -> tuple[float, float]:
        """The full-fidelity quality predicted for slice score ``low``, and the margin.

        The prediction is the least-squares line through the (slice, full) pairs of the
        promoted candidates; the margin is the one-sided prediction interval of a new
        observation at the confidence ``z`` stands for (Student t with n - 2 degrees of
        freedom, so a handful of pairs gives a wide margin). Before three pairs exist
        (no spread to measure) the prediction is ``low`` and the margin infinite.
        """
        n = len(self._pairs)
        if n < 3:
            return low, math.inf
        xs = [x for x, _ in self._pairs]
        ys = [y for _, y in self._pairs]
        mean_x = statistics.fmean(xs)
        sxx = sum((x - mean_x) ** 2 for x in xs)
        if sxx > 0:
            slope, intercept = statistics.linear_regression(xs, ys)
        else:  # every slice score equal: only the offset can be measured
            slope, intercept = 1.0, statistics.fmean(ys) - mean_x
        resid = sum((y - intercept - slope * x) ** 2 for x, y in self._pairs)
        spread = math.sqrt(resid / (n - 2) * (1 + 1 / n + ((low - mean_x) ** 2 / sxx if sxx > 0 else 0.0)))
        from scipy.stats import t as student_t  # scikit-learn's dependency; imported when needed

        quantile = float(student_t.ppf(statistics.NormalDist().cdf(self.z), n - 2))
        return intercept + slope * low, quantile * spread

    def observe(self, result: TrialResult) -> None:
        if not result.ok or result.candidate.fidelity < 1.0:
            return
        assert result.quality is not None and result.size is not None
        self._full.append((result.quality, result.size))
        self._done.add(result.candidate.sparsities)
        screen = result.candidate.info.get("screen_quality")
        if screen is not None:
            self._pairs.append((float(screen), result.quality))

    def promote(self, result: TrialResult, promoted_so_far: int) -> bool:
        """Whether the low-fidelity ``result`` deserves a full evaluation.

        A True answer claims the allocation: a duplicate proposal of it (or one already
        scored in full) is not promoted again.
        """
        if not result.ok or result.candidate.fidelity >= 1.0 or result.candidate.sparsities in self._done:
            return False
        assert result.quality is not None and result.size is not None
        if promoted_so_far >= self.warmup:
            if self.pareto:
                best = max((q for q, s in self._full if s <= result.size), default=-math.inf)
            else:
                best = max((q for q, _ in self._full), default=-math.inf)
            predicted, margin = self.predict(result.quality)
            if predicted + margin <= best:
                return False
        self._done.add(result.candidate.sparsities)
        return True


class ScreenedStrategy(Strategy):
    """Any strategy, screened: proposals at ``fraction``, promotions at full fidelity.

    The inner strategy works on slice scores alone: it is told (and restored from) its
    own proposals' slice results, presented at fidelity 1.0 as it asked for them, so
    strategies that learn only from full-fidelity results (NSGA-II's pool, Bayesian
    optimisation) still learn. An inner strategy that screens on its own (evolutionary
    ``screen``) is refused: two layers of screening would compare slices to slices.

    Raises:
        ValueError: ``fraction`` is not in (0, 1), or the inner strategy proposes a
            candidate below full fidelity.
    """

    name = "screened"

    def __init__(self, inner: Strategy, fraction: float = 0.25, rule: PromotionRule | None = None) -> None:
        super().__init__(inner.space, seed=inner.seed, budget=inner.budget, context=inner.context)
        self.inner = inner
        self.fraction = check_fraction(fraction)
        if self.fraction == 1.0:
            raise ValueError("screening fraction must be below 1; use the inner strategy alone")
        self.rule = rule or PromotionRule(pareto=inner.space.target is None)
        self._queue: list[Candidate] = []
        self.promoted = 0

    def _propose(self, index: int) -> Candidate | None:  # pragma: no cover - ask is overridden
        return None

    def ask(self, n: int) -> list[Candidate]:
        out = [self._queue.pop(0) for _ in range(min(n, len(self._queue)))]
        for c in self.inner.ask(n - len(out)):
            if c.fidelity < 1.0:
                raise ValueError(
                    f"the {self.inner.name!r} strategy proposed a candidate at fidelity {c.fidelity}: it "
                    "screens on its own; turn its own screening off or do not wrap it"
                )
            out.append(dataclasses.replace(c, fidelity=self.fraction))
        self.asked += len(out)
        return out

    def _promote(self, r: TrialResult, queue: bool) -> None:
        if not self.rule.promote(r, self.promoted):
            return
        self.promoted += 1
        if queue:
            self._queue.append(Candidate(
                r.candidate.sparsities, origin="promoted",
                info={"screened_trial": r.number, "screen_quality": r.quality,
                      "screen_fraction": r.candidate.fidelity},
            ))

    @staticmethod
    def _as_inner(results: Sequence[TrialResult]) -> list[TrialResult]:
        return [dataclasses.replace(r, candidate=dataclasses.replace(r.candidate, fidelity=1.0))
                for r in results if r.candidate.fidelity < 1.0]

    def tell(self, results: Sequence[TrialResult]) -> None:
        for r in results:
            self.rule.observe(r)
        for r in results:
            if r.candidate.fidelity < 1.0:
                self._promote(r, queue=True)
        self.inner.tell(self._as_inner(results))

    def restore(self, results: Sequence[TrialResult]) -> None:
        self.asked = len(results)
        self.inner.restore(self._as_inner(results))
        done = {r.candidate.info.get("screened_trial") for r in results if r.candidate.fidelity >= 1.0}
        for r in results:
            self.rule.observe(r)
            if r.candidate.fidelity < 1.0:
                self._promote(r, queue=r.number not in done)
