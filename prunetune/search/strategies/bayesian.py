"""Bayesian optimisation through Optuna's samplers, over a low-dimensional grouping.

Dozens of raw per-layer dimensions defeat Bayesian optimisation (measured: TPE over
MiniLM's 36 layers at 64 trials ends below uniform), so the sampler sees one offset per
group (per block by default; see :mod:`prunetune.spaces.groupings`), and each proposal is
decoded and projected exactly onto the budget. Pareto mode adds the overall sparsity as
one more parameter and optimises (quality, nonzero parameters) with multi-objective TPE.

The Optuna study used here is in memory and private to the strategy; the job's own
study in the database is the record. ``restore`` rebuilds the private study from the
stored trials (``add_trial``), using the offsets kept in each candidate's ``info``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState as OptunaState

from prunetune.errors import OptionError
from prunetune.search.base import Candidate, SearchContext, Strategy, TrialResult
from prunetune.spaces.groupings import make_grouping
from prunetune.spaces.space import SearchSpace

SAMPLERS = ("tpe", "gp")


class BayesianSearch(Strategy):
    """Options:
        sampler: ``tpe`` (default; multi-objective in Pareto mode) or ``gp`` (budget mode).
        grouping: ``per-block`` (default, decided on the validation split against
            ``block+type`` by ``benchmarks/decide_defaults.py``), ``per-type``, ``block+type``,
            ``depth``, ``per-layer``.
        knots: knots of the ``depth`` grouping, default 4.
        radius: largest offset of a group from the target (fraction), default 0.2.
        startup: random trials before the model takes over, default 8.
        warm_start: allocations to evaluate first ("uniform", "owl" or lists); default ["uniform"].
    """

    name = "bayesian"
    uses_context = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        seed: int = 0,
        budget: int = 64,
        context: SearchContext | None = None,
        sampler: str = "tpe",
        grouping: str = "per-block",
        knots: int = 4,
        radius: float = 0.2,
        startup: int = 8,
        warm_start: Sequence[Any] = ("uniform",),
    ) -> None:
        super().__init__(space, seed=seed, budget=budget, context=context)
        if sampler not in SAMPLERS:
            raise OptionError("sampler", sampler, f"must be one of {', '.join(SAMPLERS)}")
        if sampler == "gp" and space.target is None:
            raise OptionError("sampler", sampler, "'gp' is for budget mode (target.sparsity); use 'tpe' for Pareto mode")
        if not 0.0 < radius <= 1.0:
            raise OptionError("radius", radius, "must be in (0, 1]")
        if not (isinstance(startup, int) and startup >= 0):
            raise OptionError("startup", startup, "must be an integer >= 0")
        self.grouping = make_grouping(space, grouping, knots)
        self.sampler_name, self.radius, self.startup = sampler, radius, startup
        self._dists: dict[str, BaseDistribution] = {
            f"g{i}": FloatDistribution(-radius, radius) for i in range(self.grouping.dim)
        }
        if space.target is None:
            self._dists["level"] = FloatDistribution(space.lo, space.hi)
        self._pending: dict[int, optuna.Trial] = {}
        self.study = self._new_study(seed)
        self.warm_start_named(warm_start)

    def _new_study(self, seed: int) -> optuna.Study:
        sampler: optuna.samplers.BaseSampler
        if self.sampler_name == "gp":
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.startup)
        else:
            sampler = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=self.startup, multivariate=True, constant_liar=True
            )
        directions: list[Any] = ["maximize"] if self.space.target is not None else ["maximize", "minimize"]
        return optuna.create_study(sampler=sampler, directions=directions)

    def _propose(self, index: int) -> Candidate:
        trial = self.study.ask(self._dists)
        x = [trial.params[f"g{i}"] for i in range(self.grouping.dim)]
        level = trial.params.get("level")
        sparsities = self.grouping.decode(self.space, x, target=level)
        self._pending[trial.number] = trial
        info: dict[str, Any] = {"ot": trial.number, "x": x}
        if level is not None:
            info["level"] = level
        return Candidate(tuple(sparsities), origin=f"bayesian-{self.sampler_name}", info=info)

    def _values(self, r: TrialResult) -> list[float] | None:
        if not r.ok or (self.space.target is None and (r.size is None or not math.isfinite(r.size))):
            return None
        return [float(r.quality)] if self.space.target is not None else [float(r.quality), float(r.size)]  # type: ignore[arg-type]

    def _params(self, cand: Candidate) -> dict[str, float]:
        """The sampler's parameters for a candidate it did not propose (warm start, restore)."""
        x = cand.info.get("x")
        level = cand.info.get("level")
        if self.space.target is None and level is None:
            level = self.space.overall_sparsity(cand.sparsities)
        if x is None or len(x) != self.grouping.dim:
            x = self.grouping.encode(self.space, cand.sparsities, target=level)
        params = {f"g{i}": float(np.clip(v, -self.radius, self.radius)) for i, v in enumerate(x)}
        if self.space.target is None:
            params["level"] = float(np.clip(float(level or 0.0), self.space.lo, self.space.hi))
        return params

    def tell(self, results: Sequence[TrialResult]) -> None:
        for r in results:
            if r.candidate.fidelity < 1.0:
                continue
            values = self._values(r)
            ot = r.candidate.info.get("ot")
            trial = self._pending.pop(ot, None) if isinstance(ot, int) else None
            if trial is not None:
                if values is None:
                    self.study.tell(trial, state=OptunaState.FAIL)
                else:
                    self.study.tell(trial, values)
                continue
            frozen = optuna.trial.create_trial(
                params=self._params(r.candidate),
                distributions=self._dists,
                values=values,
                state=OptunaState.COMPLETE if values is not None else OptunaState.FAIL,
            )
            self.study.add_trial(frozen)

    def restore(self, results: Sequence[TrialResult]) -> None:
        # A fresh sampler seed after a restart, so the resumed job does not replay the
        # first run's random start-up points.
        self.study = self._new_study(int(np.random.default_rng([self.seed, len(results)]).integers(2**31)))
        self._pending.clear()
        super().restore(results)
