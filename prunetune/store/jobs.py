"""The job queue: submit, claim with a lease, heartbeat, progress, finish, cancel.

Claiming is atomic on both dialects. PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``,
so concurrent runners never wait on each other's rows. SQLite (one writer at a time):
a conditional ``UPDATE ... WHERE state = 'queued'`` (or an expired lease) whose row count
says whether this runner won. A runner owns a job only while its lease holds; every
write a runner makes is conditioned on ``lease_owner``, so a runner that lost its lease
(it stalled and another runner took over) cannot overwrite the new owner's state.

Lease times come from the claiming process's clock (UTC); runners on several machines
need clocks that agree to well within the lease.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.engine import CursorResult

from prunetune.store.db import ConflictError, NotFoundError, get_engine, is_sqlite, session_scope
from prunetune.store.models import Artifact, Job, JobState, Schedule, utcnow

DEFAULT_LEASE_S = 30.0


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job row (what ``GET /jobs/{id}`` returns, plus the spec)."""

    id: int
    name: str
    state: JobState
    owner: str
    study_name: str
    spec: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    trials_done: int
    trials_total: int
    best_trial: int | None
    best_quality: float | None
    error: str | None
    cancel_requested: bool
    lease_owner: str | None
    heartbeat_at: datetime | None

    @classmethod
    def of(cls, job: Job) -> JobInfo:
        return cls(
            id=job.id, name=job.name, state=JobState(job.state), owner=job.owner,
            study_name=job.study_name or study_name_for(job.id), spec=dict(job.spec),
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            attempts=job.attempts, trials_done=job.trials_done, trials_total=job.trials_total,
            best_trial=job.best_trial, best_quality=job.best_quality, error=job.error,
            cancel_requested=job.cancel_requested, lease_owner=job.lease_owner,
            heartbeat_at=job.heartbeat_at,
        )

    def to_json(self, with_spec: bool = True) -> dict[str, Any]:
        out = asdict(self)
        out["state"] = self.state.value
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        if not with_spec:
            out.pop("spec")
        return out


def study_name_for(job_id: int) -> str:
    """The Optuna study that holds a job's trials."""
    return f"job-{job_id}"


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learned: whether the lease still holds and a cancel was asked."""

    held: bool
    cancel_requested: bool


class JobStore:
    """Job rows in one database (the same one that holds the jobs' Optuna studies)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = get_engine(url)

    # -- client side ---------------------------------------------------------------

    def submit(self, spec: dict[str, Any], *, name: str, trials: int, owner: str = "local",
               schedule_id: int | None = None, idempotency_key: str | None = None) -> JobInfo:
        """Queue a job for an already validated spec (``SearchSpec.to_dict()``).

        With ``idempotency_key`` the owner's job submitted under that key is returned
        if there is one (a retry), and a new one queued otherwise; two submissions racing
        with one key queue one job (the unique key decides, the loser reads the winner's).

        Raises:
            ConflictError: the key was used for another spec (field ``Idempotency-Key``).
        """
        if idempotency_key is not None:
            first = self._by_key(owner, idempotency_key, spec)
            if first is not None:
                return first
        try:
            with session_scope(self.engine) as s:
                job = Job(name=name, spec=spec, owner=owner, state=JobState.QUEUED,
                          trials_total=trials, schedule_id=schedule_id, created_at=utcnow(),
                          attempts=0, cancel_requested=False, trials_done=0,
                          idempotency_key=idempotency_key)
                s.add(job)
                s.flush()
                job.study_name = study_name_for(job.id)
                return JobInfo.of(job)
        except ConflictError:
            first = None if idempotency_key is None else self._by_key(owner, idempotency_key, spec)
            if first is None:
                raise
            return first

    def _by_key(self, owner: str, key: str, spec: dict[str, Any]) -> JobInfo | None:
        with session_scope(self.engine) as s:
            job = s.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == key))
            if job is None:
                return None
            if dict(job.spec) != spec:
                raise ConflictError("Idempotency-Key", key,
                                    f"this key queued job {job.id} with another spec; use a new key for a new job")
            return JobInfo.of(job)

    def queue_on_study(self, spec: dict[str, Any], *, name: str, trials: int, study_name: str,
                       owner: str = "local") -> JobInfo:
        """Queue a job on the study ``study_name`` (``prunetune run --study``): a new job,
        or the finished job that already holds this study, queued again with the new spec
        (its completed trials are kept and the search resumes from them).

        Raises:
            ConflictError: the job on this study is queued or running now.
        """
        with session_scope(self.engine) as s:
            job = s.scalar(select(Job).where(Job.study_name == study_name))
            if job is None:
                job = Job(name=name, spec=spec, owner=owner, state=JobState.QUEUED, trials_total=trials,
                          created_at=utcnow(), attempts=0, cancel_requested=False, trials_done=0,
                          study_name=study_name)
                s.add(job)
                s.flush()
                return JobInfo.of(job)
            if not JobState(job.state).finished:
                raise ConflictError("study", study_name,
                                    f"job {job.id} is {JobState(job.state).value} on it; wait for it or cancel it")
            job.spec, job.name, job.trials_total, job.state = spec, name, trials, JobState.QUEUED
            job.cancel_requested, job.error, job.finished_at, job.attempts = False, None, None, 0
            return JobInfo.of(job)

    def get(self, job_id: int) -> JobInfo:
        with session_scope(self.engine) as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFoundError("job", job_id)
            return JobInfo.of(job)

    def list_jobs(self, *, state: JobState | None = None, owner: str | None = None,
             limit: int = 100) -> list[JobInfo]:
        """Newest first."""
        q = select(Job).order_by(Job.id.desc()).limit(limit)
        if state is not None:
            q = q.where(Job.state == state)
        if owner is not None:
            q = q.where(Job.owner == owner)
        with session_scope(self.engine) as s:
            return [JobInfo.of(j) for j in s.scalars(q)]

    def request_cancel(self, job_id: int) -> JobInfo:
        """A queued job is cancelled at once; a running one is flagged and its runner
        stops after the evaluations in flight (their trials are kept).

        Raises:
            NotFoundError: no such job.
            ConflictError: the job already finished.
        """
        with session_scope(self.engine) as s:
            job = s.get(Job, job_id, with_for_update=not is_sqlite(self.url))
            if job is None:
                raise NotFoundError("job", job_id)
            state = JobState(job.state)
            if state.finished:
                raise ConflictError("state", state.value, "only a queued or running job can be cancelled")
            if state is JobState.QUEUED:
                job.state = JobState.CANCELLED
                job.finished_at = utcnow()
            job.cancel_requested = True
            return JobInfo.of(job)

    def add_schedule(self, *, name: str, cron: str, spec: dict[str, Any], owner: str = "local") -> dict[str, Any]:
        with session_scope(self.engine) as s:
            if s.scalar(select(Schedule.id).where(Schedule.name == name)) is not None:
                raise ConflictError("name", name, "a schedule with this name exists; choose another name")
            row = Schedule(name=name, cron=cron, spec=spec, owner=owner, enabled=True, created_at=utcnow())
            s.add(row)
            s.flush()
            return {"id": row.id, "name": row.name, "cron": row.cron, "owner": row.owner,
                    "enabled": row.enabled, "created_at": row.created_at.isoformat()}

    def add_artifact(self, job_id: int, trial: int, path: str, *, sparsity: float | None,
                     nbytes: int | None) -> dict[str, Any]:
        with session_scope(self.engine) as s:
            row = s.scalar(select(Artifact).where(
                Artifact.job_id == job_id, Artifact.trial == trial, Artifact.path == path))
            if row is None:
                row = Artifact(job_id=job_id, trial=trial, path=path, kind="pruned-model")
                s.add(row)
            row.sparsity, row.nbytes, row.created_at = sparsity, nbytes, utcnow()
            s.flush()
            return {"id": row.id, "job_id": job_id, "trial": trial, "path": path,
                    "sparsity": sparsity, "nbytes": nbytes, "created_at": row.created_at.isoformat()}

    # -- runner side -----------------------------------------------------------------

    def _claimable(self, now: datetime) -> Any:
        return or_(
            Job.state == JobState.QUEUED,
            and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now),
        )

    def claim(self, runner: str, lease_s: float = DEFAULT_LEASE_S, job_id: int | None = None) -> JobInfo | None:
        """Take the oldest queued job, or a running one whose lease expired (its runner
        died: it will be resumed from its study). ``job_id`` restricts to that job.
        Returns None when there is nothing to claim."""
        now = utcnow()
        lease = now + timedelta(seconds=lease_s)
        values = {"state": JobState.RUNNING, "lease_owner": runner, "lease_expires_at": lease,
                  "heartbeat_at": now, "attempts": Job.attempts + 1}
        with session_scope(self.engine) as s:
            pick = select(Job.id).where(self._claimable(now)).order_by(Job.created_at, Job.id)
            if job_id is not None:
                pick = pick.where(Job.id == job_id)
            if is_sqlite(self.url):
                # SQLite serialises writers: the conditional UPDATE is the claim, its row
                # count says whether another runner got there first.
                for candidate in s.scalars(pick.limit(8)).all():
                    res = s.execute(update(Job).where(Job.id == candidate, self._claimable(now)).values(**values))
                    if isinstance(res, CursorResult) and res.rowcount == 1:
                        chosen = candidate
                        break
                else:
                    return None
            else:
                chosen_id = s.scalar(pick.limit(1).with_for_update(skip_locked=True))
                if chosen_id is None:
                    return None
                chosen = chosen_id
                s.execute(update(Job).where(Job.id == chosen).values(**values))
            job = s.get(Job, chosen, populate_existing=True)
            assert job is not None  # we just updated it inside this transaction
            if job.started_at is None:
                job.started_at = now
            return JobInfo.of(job)

    def heartbeat(self, job_id: int, runner: str, lease_s: float = DEFAULT_LEASE_S) -> Beat:
        """Extend the lease; ``held`` is False when another runner owns the job now."""
        now = utcnow()
        with session_scope(self.engine) as s:
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == runner, Job.state == JobState.RUNNING)
                .values(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_s))
            )
            held = isinstance(res, CursorResult) and res.rowcount == 1
            cancel = bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))
            return Beat(held, cancel)

    def progress(self, job_id: int, runner: str, done: int, total: int,
                 best: tuple[int, float] | None = None) -> None:
        values: dict[str, Any] = {"trials_done": done, "trials_total": total}
        if best is not None:
            values["best_trial"], values["best_quality"] = best
        with session_scope(self.engine) as s:
            s.execute(update(Job).where(Job.id == job_id, Job.lease_owner == runner).values(**values))

    def finish(self, job_id: int, runner: str, state: JobState, error: str | None = None) -> bool:
        """Close a job this runner holds; False when it no longer held it."""
        if not state.finished:
            raise ValueError(f"state must be one of succeeded/failed/cancelled; got {state.value!r}")
        with session_scope(self.engine) as s:
            res = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == runner, Job.state == JobState.RUNNING)
                .values(state=state, error=error, finished_at=utcnow(), lease_expires_at=None)
            )
            return isinstance(res, CursorResult) and res.rowcount == 1
