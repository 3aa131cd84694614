"""Trials live in an Optuna RDB study, one study per job, in the job database.

So ``optuna-dashboard`` on the same database shows every strategy's trials with named
objectives and per-layer sparsities as parameters. Writes go through Optuna's public
API (``enqueue_trial``/``ask``/``tell``) so a RUNNING trial in storage always means "a
candidate was handed out and its result is not in yet" (crash recovery relies on that).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import TrialState as OptunaState

from prunetune.errors import SpecError
from prunetune.pareto import non_dominated
from prunetune.records import Candidate, TrialResult, TrialState
from prunetune.spaces.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
# Metric names are experimental in Optuna but are what labels the dashboard's axes.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

SIZE_NAME = "nonzero_params"
LATENCY_NAME = "latency_seconds"
# The spec's objectives (objectives.minimized) as the metrics a study minimises.
OBJECTIVE_METRICS = {"size": SIZE_NAME, "latency": LATENCY_NAME}


def objective_metrics(minimized: Sequence[str]) -> tuple[str, ...]:
    """Metric names of the spec's minimised objectives, e.g. ("size", "latency") ->
    ("nonzero_params", "latency_seconds")."""
    return tuple(OBJECTIVE_METRICS[k] for k in minimized)


def objective_values(result: TrialResult, minimize: Sequence[str]) -> list[float]:
    """A finished trial's minimised objectives (``minimize``: metric names), in order."""
    return [float(result.size if m == SIZE_NAME else result.metrics[m]) for m in minimize]  # type: ignore[arg-type]

# The keys prunetune writes into Optuna studies (as Optuna keeps its own system-attribute
# keys as constants): every reader asks this module for them.
# Trial user attributes, besides the evaluator's metrics:
ORIGIN_KEY = "origin"  # how the candidate was made (Candidate.origin)
INFO_KEY = "info"  # a strategy's details of the candidate, as JSON
FIDELITY_KEY = "fidelity_level"  # fraction of the search split scored; only 1.0 makes a front
FAIL_REASON_KEY = "fail_reason"  # why a failed trial failed
STALE_KEY = "stale"  # left RUNNING by a dead runner; its candidate runs again as a new trial
# Study user attributes:
REPORT_KEY = "report"  # {trial number as a string: REPORT-split metrics}
BASELINES_KEY = "baselines"  # {strategy: its points' REPORT-split scores}
LEVELS_KEY = "levels"  # the front read at the front levels, beside uniform


def study_objectives(study: optuna.Study) -> tuple[str, ...]:
    """The metrics a study's front minimises besides quality, in value order: its metric
    names after the first (a two-objective study recorded without names: nonzero
    parameters); () for a budget-mode study."""
    if len(study.directions) < 2:
        return ()
    names = study.metric_names
    return tuple(names[1:]) if names else (SIZE_NAME,)


def trial_size(t: optuna.trial.FrozenTrial, objectives: Sequence[str]) -> float | None:
    """A finished trial's nonzero parameters: its objective value when size is one
    (``objectives``: :func:`study_objectives`), else its recorded metric."""
    if t.values and SIZE_NAME in objectives:
        return float(t.values[1 + list(objectives).index(SIZE_NAME)])
    v = t.user_attrs.get(SIZE_NAME)
    return float(v) if isinstance(v, (int, float)) else None


def front_indices(values: Sequence[Sequence[float]], numbers: Sequence[int], pareto: bool) -> list[int]:
    """Which finished trials make the front, given each one's objective values (quality
    first, then the minimised metrics) and trial number: in Pareto mode the non-dominated
    ones (sorted by the first minimised metric), in budget mode the best quality (the
    lowest trial number on a tie). The one rule behind :func:`front` and
    :func:`result_front`."""
    if not values:
        return []
    if not pareto:
        return [max(range(len(values)), key=lambda i: (values[i][0], -numbers[i]))]
    return non_dominated([tuple(v) for v in values])


def result_front(
    results: Sequence[TrialResult], pareto: bool, minimize: Sequence[str] = (SIZE_NAME,),
) -> list[TrialResult]:
    """The front of a job's results as the runner holds them (in the order given):
    quality up and the ``minimize`` metrics down (default size; latency, or size and
    latency, for those objectives) over the full-fidelity successful trials; in budget
    mode the best trial."""
    ok = [r for r in results if r.ok and r.candidate.fidelity == 1.0]
    values = [(r.quality, *(objective_values(r, minimize) if pareto else ())) for r in ok]
    return [ok[i] for i in front_indices(values, [r.number for r in ok], pareto)]  # type: ignore[arg-type]


def trials(study: optuna.Study, *, complete: bool = False) -> list[optuna.trial.FrozenTrial]:
    """A job's trials in number order; with ``complete``, only those a front is chosen
    from: complete, full-fidelity, with a finite quality."""
    if not complete:
        return study.get_trials(deepcopy=False)
    return [t for t in study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
            if t.values and math.isfinite(t.values[0]) and float(t.user_attrs.get(FIDELITY_KEY, 1.0)) == 1.0]


def front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The job's front (:func:`front_indices` over :func:`trials` ``complete``): quality up,
    the study's other objectives down (nonzero parameters, latency or both); in budget
    mode the best trial."""
    ok = trials(study, complete=True)
    chosen = front_indices([t.values for t in ok], [t.number for t in ok], bool(study_objectives(study)))
    return [ok[i] for i in chosen]


def reports(study: optuna.Study) -> dict[int, dict[str, float]]:
    """REPORT-split metrics of the trials that were scored on it, by trial number."""
    return {int(k): v for k, v in (study.user_attrs.get(REPORT_KEY) or {}).items()}


def baselines(study: optuna.Study) -> dict[str, list[dict[str, Any]]]:
    """The job's baselines (``{strategy: [point, ...]}``, REPORT-split scores by level);
    {} when none were scored."""
    stored = study.user_attrs.get(BASELINES_KEY)
    return dict(stored) if isinstance(stored, dict) else {}


def ensure_sqlite_parent(url: str) -> None:
    """SQLite creates the file but not its folder; create the folder."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine settings for a job database: SQLite gets a busy timeout (so a
    reader never fails a writer) and its folder; a server gets connections checked
    before use."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
        ensure_sqlite_parent(url)
    else:
        kwargs["pool_pre_ping"] = True
    return kwargs


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage over a job database (:func:`engine_kwargs`)."""
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))


def close_storage(storage: optuna.storages.BaseStorage) -> None:
    """Release a storage's database connections (each RDBStorage has its own pool, so a
    long-lived worker that opens one per job would otherwise exhaust the server's)."""
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.remove_session()
        storage.engine.dispose()


class TrialRecorder:
    """Records one job's trials in its Optuna study.

    In Pareto mode the study's objectives are quality (maximise) and the metrics of
    ``minimize`` (default nonzero parameters; ``latency_seconds`` for a latency
    objective, both for three objectives); in budget mode every candidate has the same
    size, so only quality. Opening an existing study (``create=False``) reads
    ``minimize`` from its metric names.

    Raises:
        SpecError: the study exists with other objectives than ``minimize``.
    """

    def __init__(
        self,
        storage: optuna.storages.BaseStorage | str,
        study_name: str,
        space: SearchSpace,
        quality_name: str,
        *,
        create: bool = True,
        minimize: Sequence[str] = (SIZE_NAME,),
    ) -> None:
        self.space = space
        self.quality_name = quality_name
        self.pareto = space.target is None
        self.minimize = tuple(minimize) if self.pareto else ()
        storage = open_storage(storage) if isinstance(storage, str) else storage
        self.storage = storage
        if create:
            names = [quality_name, *self.minimize]
            self.study = optuna.create_study(
                storage=storage, study_name=study_name, load_if_exists=True,
                directions=["maximize"] + ["minimize"] * len(self.minimize),  # type: ignore[arg-type]
            )
            if len(self.study.directions) != len(names):
                raise SpecError("objectives", list(names[1:]), f"study {study_name!r} was recorded with "
                                f"{self.study.metric_names or len(self.study.directions)} as its objectives; "
                                "keep its objectives or use a new study name")
            if self.study.metric_names != names:
                self.study.set_metric_names(names)
        else:
            self.study = optuna.load_study(storage=storage, study_name=study_name)
            self.minimize = tuple((self.study.metric_names or [quality_name, SIZE_NAME])[1:]) if self.pareto else ()
        self._distributions: dict[str, BaseDistribution] = {
            name: FloatDistribution(0.0, 1.0) for name in space.names
        }
        self._running: dict[int, optuna.Trial] = {}

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        for key, value in attrs.items():
            self.study.set_user_attr(key, value)

    def start(self, candidate: Candidate) -> int:
        """Hand out a candidate: a RUNNING trial with its allocation as params."""
        params = dict(zip(self.space.names, candidate.sparsities, strict=True))
        attrs = {ORIGIN_KEY: candidate.origin, FIDELITY_KEY: candidate.fidelity}
        self.study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)
        trial = self.study.ask(self._distributions)
        if candidate.info:
            trial.set_user_attr(INFO_KEY, json.dumps(dict(candidate.info), default=float))
        self._running[trial.number] = trial
        return trial.number

    def finish(self, result: TrialResult) -> None:
        trial = self._running.pop(result.number)
        for key, value in result.metrics.items():
            trial.set_user_attr(key, value if math.isfinite(value) else str(value))
        if result.ok:
            values = [result.quality, *objective_values(result, self.minimize)]
            self.study.tell(trial, values)  # type: ignore[arg-type]
        else:
            trial.set_user_attr(FAIL_REASON_KEY, result.error or "unknown")
            self.study.tell(trial, state=OptunaState.FAIL)

    def set_report(self, number: int, metrics: Mapping[str, float]) -> None:
        """Attach REPORT-split scores of a finished trial (kept as a study attribute,
        since Optuna freezes a finished trial's attributes)."""
        reports = dict(self.study.user_attrs.get(REPORT_KEY, {}))
        reports[str(number)] = dict(metrics)
        self.study.set_user_attr(REPORT_KEY, reports)

    def reports(self) -> dict[int, dict[str, float]]:
        return reports(self.study)

    def front(self, results: Sequence[TrialResult]) -> list[TrialResult]:
        """The front of ``results`` over this study's objectives (:func:`result_front`)."""
        return result_front(results, self.pareto, self.minimize)

    def results(self) -> list[TrialResult]:
        """Finished trials (complete and failed), in trial order, as strategy records."""
        out = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state not in (OptunaState.COMPLETE, OptunaState.FAIL) or t.user_attrs.get(STALE_KEY):
                continue
            out.append(self._to_result(t))
        return out

    def fail_stale(self) -> list[Candidate]:
        """Mark trials left RUNNING by a dead runner as failed ("stale") and return their
        candidates, to be evaluated again under new trial numbers. Stale trials do not
        count toward the budget and are not shown to the strategy."""
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        stale = []
        # WAITING: enqueued by a runner that died (or lost the database) before its ask;
        # left waiting, the next ask would pop it and hand out the wrong allocation.
        for t in self.study.get_trials(deepcopy=False, states=(OptunaState.RUNNING, OptunaState.WAITING)):
            if t.number in self._running:
                continue
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            # A runner killed between enqueue and the end of ask leaves some or all params
            # unset; the allocation is still in the enqueued fixed params, so the record
            # shows it and the candidate runs again.
            enqueued = t.system_attrs.get("fixed_params", {})
            for name, dist in self._distributions.items():
                if name not in t.params and name in enqueued:
                    self.storage.set_trial_param(trial_id, name, dist.to_internal_repr(enqueued[name]), dist)
            self.storage.set_trial_user_attr(trial_id, STALE_KEY, True)
            self.storage.set_trial_user_attr(trial_id, FAIL_REASON_KEY, "runner died while evaluating")
            self.storage.set_trial_state_values(trial_id, OptunaState.FAIL)
            recorded = self.storage.get_trial(trial_id)
            if len(recorded.params) == len(self.space.names):
                stale.append(self._to_result(recorded).candidate)
        return stale

    def _to_result(self, t: optuna.trial.FrozenTrial) -> TrialResult:
        cand = Candidate(
            tuple(float(t.params.get(n, 0.0)) for n in self.space.names),
            origin=str(t.user_attrs.get(ORIGIN_KEY, "")),
            info=json.loads(t.user_attrs.get(INFO_KEY, "{}")),
            fidelity=float(t.user_attrs.get(FIDELITY_KEY, 1.0)),
        )
        metrics = {k: float(v) for k, v in t.user_attrs.items() if isinstance(v, (int, float))}
        if t.state == OptunaState.COMPLETE and t.values is not None:
            size = t.values[1] if self.minimize[:1] == (SIZE_NAME,) else metrics.get(SIZE_NAME)
            return TrialResult(t.number, cand, TrialState.COMPLETE, t.values[0], size, metrics)
        return TrialResult(
            t.number, cand, TrialState.FAILED, metrics=metrics,
            error=str(t.user_attrs.get(FAIL_REASON_KEY, "failed")),
        )


def records(results: Sequence[TrialResult], space: SearchSpace) -> list[dict[str, Any]]:
    """Flat rows for CSV/JSON output: trial, state, metrics and per-layer sparsities."""
    rows = []
    for r in results:
        row: dict[str, Any] = {
            "trial": r.number,
            "state": r.state.value,
            "origin": r.candidate.origin,
            "quality": r.quality,
            "size": r.size,
            "error": r.error or "",
        }
        row.update({k: v for k, v in r.metrics.items()})
        row.update({f"s:{n}": s for n, s in zip(space.names, r.candidate.sparsities, strict=True)})
        rows.append(row)
    return rows
