"""What the API and the embedded client do, as plain JSON-ready dicts.

The FastAPI routes (``service/app.py``) and ``Client.embedded`` both call
:class:`JobService`, so the two transports return the same data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaState

from prunetune.errors import SpecError
from prunetune.service.admission import check_storable, check_strategy_options
from prunetune.service.roots import confine, confine_spec
from prunetune.spec import SearchSpec
from prunetune.store import studies
from prunetune.store.db import ConflictError, NotFoundError, upgrade
from prunetune.store.jobs import JobInfo, JobStore
from prunetune.store.models import JobState
from prunetune.store.studies import (
    FAIL_REASON_KEY,
    FIDELITY_KEY,
    LATENCY_NAME,
    ORIGIN_KEY,
    SIZE_NAME,
    STALE_KEY,
    open_storage,
    study_objectives,
    trial_size,
)
from prunetune.store.tokens import Principal

# What an embedded client (and the CLI on --db) acts as: it has the database itself.
EMBEDDED = Principal("local", admin=True)


def parse_spec(data: Any) -> SearchSpec:
    """Validate a submitted spec; errors name the field as ``spec.<path>``."""
    if isinstance(data, SearchSpec):
        return data
    try:
        return SearchSpec.from_dict(data)
    except SpecError as err:
        raise SpecError(f"spec.{err.field}" if err.field != "<root>" else "spec", err.value, err.allowed) from None


def admit_spec(data: Any) -> SearchSpec:
    """A submitted spec, checked before anything is written: values that can be stored
    and served back, every path confined (and made absolute), the fields parsed, and the
    strategy's options known to it. Raises SpecError naming the field."""
    if isinstance(data, SearchSpec):
        data = data.to_dict()
    check_storable(data)
    spec = parse_spec(confine_spec(data))
    check_strategy_options(spec.to_dict())
    return spec


def check_destination(field: str, given: str, dest: Path, overwrite: bool) -> None:
    """An export may create ``dest`` or replace an empty folder; a non-empty folder only
    with ``overwrite``, a file (or a path through one) never. Raises ConflictError."""
    for parent in [dest, *dest.parents]:
        if parent.exists() and not parent.is_dir():
            what = "is a file" if parent == dest else f"lies under a file ({parent.name!r})"
            raise ConflictError(field, given, f"a folder to export into; this path {what}")
        if parent.exists():
            break
    if dest.is_dir() and not overwrite and any(dest.iterdir()):
        raise ConflictError(field, given, "an empty or new folder; this one has files in it: pass "
                            "overwrite: true (CLI: --overwrite) to write the export over them")


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


class JobService:
    def __init__(self, db: str, *, migrate: bool = True) -> None:
        if migrate:
            upgrade(db)
        self.db = db
        self.jobs = JobStore(db)
        self._storage: optuna.storages.RDBStorage | None = None

    @property
    def storage(self) -> optuna.storages.RDBStorage:
        if self._storage is None:
            self._storage = open_storage(self.db)
        return self._storage

    # -- jobs --------------------------------------------------------------------------

    def submit(self, spec_data: Any, owner: str = "local", idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue a job. With ``idempotency_key``, a second submission of the same spec
        under the same key (by the same owner) returns the first job instead of queueing
        another; the same key with another spec is a ConflictError."""
        spec = admit_spec(spec_data)
        if idempotency_key is not None:
            check_storable(idempotency_key, "Idempotency-Key")
        info = self.jobs.submit(spec.to_dict(), name=spec.name, trials=spec.budget.trials, owner=owner,
                                idempotency_key=idempotency_key)
        return info.to_json()

    def _job(self, job_id: int, who: Principal) -> JobInfo:
        """The job, if ``who`` may see it; another owner's job does not exist for them."""
        info = self.jobs.get(job_id)
        if not who.may_see(info.owner):
            raise NotFoundError("job", job_id)
        return info

    def get(self, job_id: int, who: Principal = EMBEDDED) -> dict[str, Any]:
        info = self._job(job_id, who)
        out = info.to_json()
        out["progress"] = {"done": info.trials_done, "total": info.trials_total}
        out["best"] = (None if info.best_trial is None
                       else {"trial": info.best_trial, "quality": info.best_quality})
        return out

    def list_jobs(self, state: str | None = None, limit: int = 100, who: Principal = EMBEDDED) -> list[dict[str, Any]]:
        st = None
        if state is not None:
            try:
                st = JobState(state)
            except ValueError:
                raise ConflictError("state", state, f"allowed: {', '.join(s.value for s in JobState)}") from None
        owner = None if who.admin else who.owner
        return [i.to_json(with_spec=False) for i in self.jobs.list_jobs(state=st, owner=owner, limit=limit)]

    def cancel(self, job_id: int, who: Principal = EMBEDDED) -> dict[str, Any]:
        self._job(job_id, who)
        return self.jobs.request_cancel(job_id).to_json(with_spec=False)

    # -- trials ------------------------------------------------------------------------

    def _study(self, info: JobInfo) -> optuna.Study | None:
        try:
            return optuna.load_study(study_name=info.study_name, storage=self.storage)
        except KeyError:
            return None

    def trials(self, job_id: int, who: Principal = EMBEDDED) -> list[dict[str, Any]]:
        """Every trial of the job in number order, stale ones (left RUNNING by a dead
        runner, failed on resume) included and flagged."""
        study = self._study(self._job(job_id, who))
        if study is None:
            return []
        out = []
        objectives = study_objectives(study)
        for t in studies.trials(study):
            attrs = t.user_attrs
            out.append({
                "trial": t.number,
                "state": t.state.name.lower(),
                "stale": bool(attrs.get(STALE_KEY, False)),
                "quality": _finite(t.values[0]) if t.values else None,
                "nonzero_params": _finite(trial_size(t, objectives)) if t.values else attrs.get(SIZE_NAME),
                "latency_seconds": attrs.get(LATENCY_NAME),
                "sparsity": attrs.get("sparsity"),
                "origin": attrs.get(ORIGIN_KEY),
                "fidelity": attrs.get(FIDELITY_KEY, 1.0),
                "error": attrs.get(FAIL_REASON_KEY),
                "started_at": t.datetime_start.isoformat() if t.datetime_start else None,
                "completed_at": t.datetime_complete.isoformat() if t.datetime_complete else None,
                "allocation": dict(t.params),
            })
        return out

    def front(self, job_id: int, who: Principal = EMBEDDED) -> list[dict[str, Any]]:
        """Pareto front (quality up, the study's other objectives down: nonzero
        parameters, latency or both) of full-fidelity completed trials; in budget mode the
        best trial. REPORT-split scores where computed."""
        study = self._study(self._job(job_id, who))
        if study is None:
            return []
        chosen = studies.front(study)
        objectives = study_objectives(study)
        reports = studies.reports(study)
        names = study.metric_names or ["quality"]
        return [{
            "trial": t.number,
            "quality": t.values[0],
            "quality_name": names[0],
            "nonzero_params": trial_size(t, objectives),
            "latency_seconds": t.user_attrs.get(LATENCY_NAME),
            "sparsity": t.user_attrs.get("sparsity"),
            "metrics": {k: v for k, v in t.user_attrs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            "report": reports.get(t.number, {}),
            "allocation": dict(t.params),
        } for t in chosen]

    def export(self, job_id: int, trial: int, out: str, who: Principal = EMBEDDED, *,
               overwrite: bool = False, format: str = "dense") -> dict[str, Any]:
        """Write trial ``trial`` of the job as a pruned model under ``out``: a new or empty
        folder, or with ``overwrite`` a folder with files (the export's files replace theirs,
        each atomically; see :func:`prunetune.export`). ``format``: how unstructured / N:M
        weights are written (``dense`` or ``compressed-tensors``)."""
        from prunetune.pruning.export import WEIGHT_FORMATS
        from prunetune.service.export import export_trial

        if format not in WEIGHT_FORMATS:
            raise ConflictError("format", format, f"allowed: {', '.join(WEIGHT_FORMATS)}")

        dest = confine("out", out)
        info = self._job(job_id, who)
        study = self._study(info)
        complete = {t.number: t for t in (study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,))
                                          if study is not None else [])}
        if trial not in complete:
            allowed = sorted(complete)
            shown = ", ".join(map(str, allowed[:20])) + (" ..." if len(allowed) > 20 else "")
            raise ConflictError("trial", trial, f"export a completed trial of job {job_id}: {shown or 'none yet'}")
        check_destination("out", out, dest, overwrite)
        t = complete[trial]
        spec = SearchSpec.from_dict(info.spec)
        try:
            written = export_trial(spec, dict(t.params), str(confine("out", out)),
                                   {"job": job_id, "trial": trial, "study": info.study_name,
                                    "sparsity": t.user_attrs.get("sparsity")}, weights=format)
        except (ValueError, ImportError) as err:  # a format the job's granularity or the server cannot write
            raise ConflictError("format", format, str(err)) from None
        except OSError as err:  # a full disk, an unwritable folder: nothing was written there
            raise ConflictError("out", out, f"a folder the server can write: {err.strerror or err}") from None
        row = self.jobs.add_artifact(job_id, trial, written["path"],
                                     sparsity=t.user_attrs.get("sparsity"), nbytes=written["nbytes"])
        return {**row, "format": written["format"]}

    # -- schedules, comparisons, reports (prunetune.service.scheduler, prunetune.report) ---

    def schedule(self, spec_data: Any, cron: str, name: str, owner: str = "local", *,
                 timezone: str = "UTC", catch_up: str = "once", warm_start: bool = True,
                 reseed: bool = True) -> dict[str, Any]:
        from prunetune.service.scheduler import create_schedule

        spec = admit_spec(spec_data)
        for field, value in (("name", name), ("cron", cron), ("timezone", timezone), ("catch_up", catch_up)):
            check_storable(value, field)
        return create_schedule(self.db, spec.to_dict(), cron=cron, name=name, tz=timezone,
                               catch_up=catch_up, warm_start=warm_start, reseed=reseed, owner=owner).to_json()

    def schedules(self, who: Principal = EMBEDDED) -> list[dict[str, Any]]:
        from prunetune.store.schedules import ScheduleStore

        return [s.to_json() for s in ScheduleStore(self.db).list_schedules() if who.may_see(s.owner)]

    def _schedule(self, key: int | str, who: Principal) -> None:
        """Raise NotFoundError unless ``who`` may see the schedule."""
        from prunetune.store.schedules import ScheduleStore

        if not who.may_see(ScheduleStore(self.db).get(key).owner):
            raise NotFoundError("schedule", key)

    def schedule_runs(self, key: int | str, who: Principal = EMBEDDED) -> list[dict[str, Any]]:
        from prunetune.store.schedules import ScheduleStore

        self._schedule(key, who)
        return ScheduleStore(self.db).runs(key)

    def set_schedule_enabled(self, key: int | str, enabled: bool, who: Principal = EMBEDDED) -> dict[str, Any]:
        from prunetune.service.scheduler import resume_schedule
        from prunetune.store.schedules import ScheduleStore

        self._schedule(key, who)
        if enabled:
            return resume_schedule(self.db, key).to_json()
        return ScheduleStore(self.db).set_enabled(key, False).to_json()

    def comparison(self, job_id: int, who: Principal = EMBEDDED) -> dict[str, Any] | None:
        """How a scheduled job's front compares with the previous run's (None if not compared)."""
        from prunetune.store.schedules import ScheduleStore

        self._job(job_id, who)
        return ScheduleStore(self.db).comparison(job_id)

    def report(self, job_id: int, who: Principal = EMBEDDED) -> str:
        """The job report (front.html) drawn from the job's study."""
        from prunetune.report.fronts import load_front
        from prunetune.report.html import ReportData, render_report

        info = self._job(job_id, who)
        try:
            front = load_front(self.storage, info.study_name)
        except KeyError:
            raise ConflictError("job", job_id, "the job has not started; its report exists once it has trials") from None
        title = f"job {job_id}: {info.name} ({info.state.value})"
        return render_report(ReportData.from_study(front, title, self.comparison(job_id)))
