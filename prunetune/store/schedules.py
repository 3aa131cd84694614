"""Schedule rows, their firings, and front comparisons.

Firing a schedule is one transaction that (1) moves ``next_run_at`` forward with a
conditional ``UPDATE ... WHERE next_run_at = <the value this scheduler read>`` and (2)
inserts the queued jobs with one ``schedule_runs`` row per fire time, unique per
``(schedule_id, fire_time)``. Two schedulers that read the same due schedule race on
the UPDATE: on PostgreSQL the second waits on the row lock, re-reads the row and
updates nothing; on SQLite writers are serialised and the second sees the new value.
Either way it enqueues nothing, and the unique constraint refuses a second job for a
fire time even if ``next_run_at`` was edited by hand in between.

Cron arithmetic lives in :mod:`prunetune.service.scheduler`; this module only stores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult

from prunetune.store.db import ConflictError, NotFoundError, get_engine, session_scope
from prunetune.store.jobs import study_name_for
from prunetune.store.models import FrontComparison, Job, JobState, Schedule, ScheduleRun, utcnow

CATCH_UP_POLICIES = ("once", "all", "skip")


@dataclass(frozen=True)
class ScheduleInfo:
    id: int
    name: str
    cron: str
    timezone: str
    catch_up: str
    warm_start: bool
    reseed: bool
    enabled: bool
    owner: str
    spec: dict[str, Any]
    created_at: datetime
    last_run_at: datetime | None
    next_run_at: datetime | None

    @classmethod
    def of(cls, row: Schedule) -> ScheduleInfo:
        return cls(id=row.id, name=row.name, cron=row.cron, timezone=row.timezone,
                   catch_up=row.catch_up, warm_start=row.warm_start, reseed=row.reseed,
                   enabled=row.enabled, owner=row.owner, spec=dict(row.spec),
                   created_at=row.created_at, last_run_at=row.last_run_at,
                   next_run_at=row.next_run_at)

    def to_json(self, with_spec: bool = False) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        if not with_spec:
            out.pop("spec")
        return out


@dataclass(frozen=True)
class Firing:
    """A job the scheduler enqueued for one fire time."""

    schedule_id: int
    fire_time: datetime
    job_id: int
    missed: int


@dataclass(frozen=True)
class PreviousRun:
    """The run a scheduled job is compared with (and warm-started from)."""

    job_id: int
    study_name: str
    warm_start: bool


class ScheduleStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)

    def add(self, *, name: str, cron: str, timezone: str, spec: dict[str, Any], next_run_at: datetime,
            catch_up: str = "once", warm_start: bool = True, reseed: bool = True,
            owner: str = "local") -> ScheduleInfo:
        """Raises ConflictError when the name is taken."""
        if catch_up not in CATCH_UP_POLICIES:
            raise ValueError(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}; got {catch_up!r}")
        with session_scope(self.engine) as s:
            if s.scalar(select(Schedule.id).where(Schedule.name == name)) is not None:
                raise ConflictError("name", name, "a schedule with this name exists; choose another name")
            row = Schedule(name=name, cron=cron, timezone=timezone, spec=spec, owner=owner, enabled=True,
                           catch_up=catch_up, warm_start=warm_start, reseed=reseed,
                           created_at=utcnow(), next_run_at=next_run_at)
            s.add(row)
            s.flush()
            return ScheduleInfo.of(row)

    def get(self, key: int | str) -> ScheduleInfo:
        """By id or by name."""
        with session_scope(self.engine) as s:
            row = s.get(Schedule, key) if isinstance(key, int) else s.scalar(
                select(Schedule).where(Schedule.name == key))
            if row is None:
                raise NotFoundError("schedule", key)
            return ScheduleInfo.of(row)

    def list_schedules(self) -> list[ScheduleInfo]:
        with session_scope(self.engine) as s:
            return [ScheduleInfo.of(r) for r in s.scalars(select(Schedule).order_by(Schedule.id))]

    def set_enabled(self, key: int | str, enabled: bool, next_run_at: datetime | None = None) -> ScheduleInfo:
        """Pause or resume; resuming sets ``next_run_at`` (the windows paused over are not run)."""
        sid = self.get(key).id
        with session_scope(self.engine) as s:
            row = s.get(Schedule, sid)
            if row is None:
                raise NotFoundError("schedule", key)
            row.enabled = enabled
            if enabled and next_run_at is not None:
                row.next_run_at = next_run_at
            s.flush()
            return ScheduleInfo.of(row)

    def due(self, now: datetime) -> list[ScheduleInfo]:
        with session_scope(self.engine) as s:
            q = (select(Schedule).where(Schedule.enabled.is_(True), Schedule.next_run_at <= now)
                 .order_by(Schedule.next_run_at, Schedule.id))
            return [ScheduleInfo.of(r) for r in s.scalars(q)]

    def fire(
        self,
        schedule: ScheduleInfo,
        fire_times: Sequence[datetime],
        next_run_at: datetime,
        *,
        missed: int,
        job_for: Callable[[datetime], tuple[str, dict[str, Any], int]],
        scheduler: str,
    ) -> list[Firing]:
        """Enqueue one job per fire time and move the schedule to ``next_run_at``, all or
        nothing; [] when another scheduler fired these windows first.

        ``job_for(fire_time)`` returns the job's (name, spec, trials).
        """
        try:
            with session_scope(self.engine) as s:
                moved = s.execute(
                    update(Schedule)
                    .where(Schedule.id == schedule.id, Schedule.enabled.is_(True),
                           Schedule.next_run_at == schedule.next_run_at)
                    .values(next_run_at=next_run_at,
                            last_run_at=fire_times[-1] if fire_times else Schedule.last_run_at)
                )
                if not (isinstance(moved, CursorResult) and moved.rowcount == 1):
                    return []
                out = []
                for i, ft in enumerate(fire_times):
                    name, spec, trials = job_for(ft)
                    job = Job(name=name, spec=spec, owner=schedule.owner, state=JobState.QUEUED,
                              trials_total=trials, schedule_id=schedule.id, created_at=utcnow(),
                              attempts=0, cancel_requested=False, trials_done=0)
                    s.add(job)
                    s.flush()
                    job.study_name = study_name_for(job.id)
                    folded = missed if i == len(fire_times) - 1 else 0
                    s.add(ScheduleRun(schedule_id=schedule.id, fire_time=ft, job_id=job.id,
                                      enqueued_at=utcnow(), enqueued_by=scheduler, missed=folded))
                    s.flush()
                    out.append(Firing(schedule.id, ft, job.id, folded))
                return out
        except ConflictError:
            # The unique (schedule_id, fire_time) refused a duplicate: someone else ran it.
            return []

    def runs(self, key: int | str) -> list[dict[str, Any]]:
        sid = self.get(key).id
        with session_scope(self.engine) as s:
            rows = s.scalars(select(ScheduleRun).where(ScheduleRun.schedule_id == sid)
                             .order_by(ScheduleRun.fire_time, ScheduleRun.id))
            return [{"schedule_id": r.schedule_id, "fire_time": r.fire_time.isoformat(), "job_id": r.job_id,
                     "enqueued_at": r.enqueued_at.isoformat(), "enqueued_by": r.enqueued_by,
                     "missed": r.missed} for r in rows]

    # -- warm start and comparisons ------------------------------------------------------

    def previous_run(self, job_id: int) -> PreviousRun | None:
        """The latest succeeded earlier job of the same schedule; None for an unscheduled
        job or a schedule's first run."""
        with session_scope(self.engine) as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFoundError("job", job_id)
            if job.schedule_id is None:
                return None
            schedule = s.get(Schedule, job.schedule_id)
            prev = s.scalar(
                select(Job).where(Job.schedule_id == job.schedule_id, Job.id < job_id,
                                  Job.state == JobState.SUCCEEDED).order_by(Job.id.desc()).limit(1))
            if prev is None or schedule is None:
                return None
            return PreviousRun(prev.id, prev.study_name or study_name_for(prev.id), schedule.warm_start)

    def save_comparison(self, job_id: int, comparison: dict[str, Any]) -> dict[str, Any]:
        """Store (or replace) a job's comparison with its previous run."""
        with session_scope(self.engine) as s:
            row = s.scalar(select(FrontComparison).where(FrontComparison.job_id == job_id))
            if row is None:
                row = FrontComparison(job_id=job_id)
                s.add(row)
            row.previous_job_id = comparison["previous_job_id"]
            row.warm_started = bool(comparison["warm_started"])
            row.verdict = comparison["verdict"]
            row.split = comparison["split"]
            row.hypervolume = comparison["hypervolume"]
            row.previous_hypervolume = comparison["previous_hypervolume"]
            row.delta = comparison["delta"]
            row.relative_delta = comparison["relative_delta"]
            # REPORT-split hypervolumes (when every point had REPORT scores) ride along in the
            # reference record rather than in columns of their own.
            extra: dict[str, Any] = {k: comparison[k] for k in ("report_hypervolume", "previous_report_hypervolume")
                     if k in comparison}
            row.reference = {**comparison["reference"], **extra}
            row.created_at = utcnow()
            s.flush()
            return _comparison_json(row)

    def comparison(self, job_id: int) -> dict[str, Any] | None:
        with session_scope(self.engine) as s:
            if s.get(Job, job_id) is None:
                raise NotFoundError("job", job_id)
            row = s.scalar(select(FrontComparison).where(FrontComparison.job_id == job_id))
            return None if row is None else _comparison_json(row)


def _comparison_json(row: FrontComparison) -> dict[str, Any]:
    return {"job_id": row.job_id, "previous_job_id": row.previous_job_id, "warm_started": row.warm_started,
            "verdict": row.verdict, "split": row.split, "hypervolume": row.hypervolume,
            "previous_hypervolume": row.previous_hypervolume, "delta": row.delta,
            "relative_delta": row.relative_delta, "reference": dict(row.reference),
            "created_at": row.created_at.isoformat()}
