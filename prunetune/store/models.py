"""The service's tables: jobs, schedules, artifacts (exports) and API tokens.

They live in the same database as the jobs' Optuna studies (one study per job, named
``job-<id>``), so one URL holds everything. Optuna owns its own tables and its own
``alembic_version``; ours are versioned in ``prunetune_alembic_version``.

All times are UTC. They are stored as naive UTC timestamps (SQLite has no time zones)
and come back as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, naive UTC in the database (same on every dialect)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware UTC datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)  # type: ignore[no-any-return]


class JobState(str, enum.Enum):
    """A job's life: queued -> running -> succeeded | failed | cancelled.

    A running job whose lease expired (its runner died) is claimed again and resumed.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Base(DeclarativeBase):
    pass


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Store the values ("queued"), not the member names, and no native PG enum type,
    # so adding a state later is a one-line migration on both dialects.
    return Enum(cls, name=name, native_enum=False, length=16,
                values_callable=lambda e: [m.value for m in e], validate_strings=True)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    study_name: Mapped[str | None] = mapped_column(String(128))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.QUEUED)
    owner: Mapped[str] = mapped_column(String(100), default="local")
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Lease: the runner that holds the job renews it by heartbeat; once it has expired
    # any runner may claim the job and resume it from its study.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    trials_done: Mapped[int] = mapped_column(Integer, default=0)
    trials_total: Mapped[int] = mapped_column(Integer, default=0)
    best_trial: Mapped[int | None] = mapped_column(Integer)
    best_quality: Mapped[float | None] = mapped_column(Float)
    # The Idempotency-Key of the submission (unique per owner): a retry finds this job.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))

    artifacts: Mapped[list[Artifact]] = relationship(back_populates="job", cascade="all, delete-orphan")

    __table_args__ = (
        UniqueConstraint("study_name", name="uq_jobs_study_name"),
        UniqueConstraint("owner", "idempotency_key", name="uq_jobs_owner_idempotency_key"),
        Index("ix_jobs_state_created", "state", "created_at"),
    )


class Schedule(Base):
    """A recurring search: the scheduler enqueues ``spec`` as a job when ``cron`` is due."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    cron: Mapped[str] = mapped_column(String(100))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    owner: Mapped[str] = mapped_column(String(100), default="local")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The cron is read in this IANA zone ("0 2 * * *" at 02:00 Berlin time, DST included).
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    # After downtime: "once" (one run for all missed windows), "all" (one per window),
    # "skip" (none; wait for the next window). See prunetune.service.scheduler.
    catch_up: Mapped[str] = mapped_column(String(16), default="once", server_default="once")
    warm_start: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    reseed: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")

    __table_args__ = (UniqueConstraint("name", name="uq_schedules_name"),)


class ScheduleRun(Base):
    """One firing of a schedule. Unique per (schedule, fire time): two schedulers that
    both see a schedule due cannot both enqueue its run."""

    __tablename__ = "schedule_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    fire_time: Mapped[datetime] = mapped_column(UTCDateTime)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enqueued_by: Mapped[str] = mapped_column(String(200))
    # Windows that passed unrun before this one (downtime) and were folded into it.
    missed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (UniqueConstraint("schedule_id", "fire_time", name="uq_schedule_runs_schedule_fire"),)


class FrontComparison(Base):
    """How a scheduled job's front compares with the previous run's: hypervolume with a
    fixed reference point, on the search split; REPORT-split hypervolumes, where every point
    has REPORT scores, are kept in ``reference``."""

    __tablename__ = "front_comparisons"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    previous_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    warm_started: Mapped[bool] = mapped_column(Boolean, default=False)
    verdict: Mapped[str] = mapped_column(String(16))  # improved | equal | regressed
    split: Mapped[str] = mapped_column(String(16))  # report | search
    hypervolume: Mapped[float] = mapped_column(Float)
    previous_hypervolume: Mapped[float] = mapped_column(Float)
    delta: Mapped[float] = mapped_column(Float)
    relative_delta: Mapped[float | None] = mapped_column(Float)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("job_id", name="uq_front_comparisons_job"),)


class Artifact(Base):
    """An exported pruned model: one trial of one job, written to ``path``."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    trial: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32), default="pruned-model")
    path: Mapped[str] = mapped_column(Text)
    sparsity: Mapped[float | None] = mapped_column(Float)
    nbytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    job: Mapped[Job] = relationship(back_populates="artifacts")

    __table_args__ = (UniqueConstraint("job_id", "trial", "path", name="uq_artifacts_job_trial_path"),)


class ApiToken(Base):
    """A bearer token, stored as its SHA-256 (tokens are 256-bit random, so a fast hash
    is enough); ``prefix`` finds the row, the hash is compared in constant time."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(100), default="local")
    # An admin token sees and acts on every owner's jobs and schedules.
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("prefix", name="uq_api_tokens_prefix"),
        UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
