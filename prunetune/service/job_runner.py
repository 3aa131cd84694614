"""The job runner (``prunetune runner``): claim a job, heartbeat, run it, close it.

A job runner is a process that runs whole jobs; the evaluations of one job go out to Ray
workers (``prunetune.workers``, ``--workers``), which are another thing.

A runner claims the oldest queued job, or a running one whose lease expired because its
runner died, and runs it with :func:`prunetune.engine.runner.run_job` on the job's own study
(``job-<id>``). Resuming is the recorder's and controller's work: completed trials are
kept and never re-run, trials the dead runner left RUNNING are failed as stale and their
candidates asked again, and the strategy is restored from the stored trials.

While it runs a job, a heartbeat thread renews the lease every ``min(lease_s / 3, 2)`` s
and reads the job's cancel flag; the controller's ``should_stop`` reads what the
heartbeat learned, so a cancel (or a lost lease) stops the job after the evaluations in
flight.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import OperationalError, SQLAlchemyError

from prunetune.errors import PrunetuneError
from prunetune.store.db import DatabaseUnavailableError, StoreError, get_engine, upgrade
from prunetune.store.jobs import DEFAULT_LEASE_S, JobInfo, JobStore
from prunetune.store.models import JobState

log = logging.getLogger(__name__)


def is_transient(err: BaseException) -> bool:
    """Whether ``err`` (or what caused it: Optuna wraps driver errors) is a lost or
    refused database connection, which a retry after the database is back can fix."""
    seen: BaseException | None = err
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, (OperationalError, DatabaseUnavailableError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def default_runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Heartbeat:
    """Renews a job's lease in a thread and remembers whether to stop."""

    def __init__(self, store: JobStore, job_id: int, runner: str, lease_s: float) -> None:
        self.store, self.job_id, self.runner, self.lease_s = store, job_id, runner, lease_s
        self.cancelled = False
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-job-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def beat(self) -> None:
        try:
            beat = self.store.heartbeat(self.job_id, self.runner, self.lease_s)
        except StoreError as err:  # a transient outage: keep trying until the lease says otherwise
            log.warning("heartbeat of job %d failed: %s", self.job_id, err)
            return
        self.lost = self.lost or not beat.held
        self.cancelled = self.cancelled or beat.cancel_requested

    def _loop(self) -> None:
        # Often enough that a cancel is seen within ~2 s even with a long lease.
        while not self._stop.wait(min(self.lease_s / 3, 2.0)):
            self.beat()

    def should_stop(self) -> bool:
        return self.cancelled or self.lost


class JobRunner:
    """Claims and runs jobs from one database until stopped."""

    def __init__(
        self,
        db: str,
        *,
        ray_address: str | None = None,
        workers: int | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        poll_s: float = 1.0,
        runner_id: str | None = None,
        migrate: bool = True,
        max_attempts: int = 5,
    ) -> None:
        if lease_s <= 0 or poll_s <= 0:
            raise ValueError(f"lease_s and poll_s must be > 0; got {lease_s} and {poll_s}")
        if migrate:
            upgrade(db)
        self.db = db
        self.store = JobStore(db)
        self.ray_address = ray_address
        self.workers = workers
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.id = runner_id or default_runner_id()
        # A job whose runners keep dying (out of memory, a segfault) is failed, not retried forever.
        self.max_attempts = max_attempts
        # Database outages (restarts) survived within one job before it is failed.
        self.max_outages = 20
        self._stop = threading.Event()

    def _wait_for_database(self) -> None:
        while not self._stop.is_set():
            try:
                with get_engine(self.db).connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                return
            except SQLAlchemyError:
                self._stop.wait(self.poll_s)

    def stop(self) -> None:
        """Stop claiming; the job in hand runs to its end."""
        self._stop.set()

    def run_forever(self, max_jobs: int | None = None) -> int:
        """Claim and run jobs until ``stop()`` (or ``max_jobs`` jobs ran). Returns the count."""
        ran = 0
        while not self._stop.is_set() and (max_jobs is None or ran < max_jobs):
            try:
                job = self.store.claim(self.id, self.lease_s)
            except StoreError as err:
                log.warning("claim failed, retrying: %s", err)
                job = None
            if job is None:
                self._stop.wait(self.poll_s)
                continue
            self.run_claimed(job)
            ran += 1
        return ran

    def run_one(self, job_id: int) -> JobState | None:
        """Claim this job (if claimable) and run it here; None when someone else has it."""
        job = self.store.claim(self.id, self.lease_s, job_id=job_id)
        return None if job is None else self.run_claimed(job)

    def run_claimed(self, job: JobInfo, on_progress: Callable[[int, int], None] | None = None) -> JobState:
        """Run a job this runner holds; returns the state it was closed with."""
        from prunetune.engine.runner import run_job
        from prunetune.service.roots import check_paths_at_open
        from prunetune.spec import SearchSpec

        log.info("runner %s: job %d (%s), attempt %d", self.id, job.id, job.name, job.attempts)
        if job.attempts > self.max_attempts:
            reason = f"gave up after {job.attempts - 1} attempts whose runners died (max_attempts={self.max_attempts})"
            self.store.finish(job.id, self.id, JobState.FAILED, error=reason)
            return JobState.FAILED
        best: list[tuple[int, float]] = (
            [] if job.best_trial is None or job.best_quality is None else [(job.best_trial, job.best_quality)]
        )

        def progress(done: int, total: int, result: Any) -> None:
            improved = None
            if result is not None and result.ok and result.candidate.fidelity == 1.0 and (
                not best or result.quality > best[-1][1]
            ):
                best.append((result.number, float(result.quality)))
                improved = best[-1]
            try:
                self.store.progress(job.id, self.id, done, total, improved)
            except StoreError as err:  # progress is advisory; the trials are in the study
                log.warning("progress of job %d not recorded: %s", job.id, err)
            if on_progress is not None:
                on_progress(done, total)

        with Heartbeat(self.store, job.id, self.id, self.lease_s) as hb:
            hb.beat()
            error: str | None = None
            try:
                check_paths_at_open(job.spec)
                spec = SearchSpec.from_dict(job.spec)
                if not hb.should_stop():
                    # A scheduled job: seed it with the previous run's front, compare after.
                    from prunetune.service.scheduler import record_comparison, warm_start_for

                    warm, warm_from = warm_start_for(self.db, job.id)
                    for outage in range(self.max_outages + 1):
                        try:
                            run_job(spec, db=self.db, study_name=job.study_name, workers=self.workers,
                                    ray_address=self.ray_address, on_progress=progress,
                                    should_stop=hb.should_stop, warm_start=warm)
                            break
                        except Exception as err:
                            # A database restart mid-job: wait it out and resume the job from
                            # its study, as another runner would (completed trials kept).
                            if not is_transient(err) or outage == self.max_outages or hb.should_stop():
                                raise
                            log.warning("job %d: database unavailable (%s); resuming when it is back",
                                        job.id, type(err).__name__)
                            self._wait_for_database()
                            hb.beat()
                    if not hb.should_stop():
                        record_comparison(self.db, job.id, job.study_name, warm_from)
            except PrunetuneError as err:
                error = str(err)
            except Exception as err:
                log.exception("job %d failed", job.id)
                error = f"{type(err).__name__}: {err}"
        if hb.lost:
            log.warning("runner %s lost the lease of job %d; another runner resumes it", self.id, job.id)
            return JobState.RUNNING
        state = JobState.FAILED if error else JobState.CANCELLED if hb.cancelled else JobState.SUCCEEDED
        if not self.store.finish(job.id, self.id, state, error=error):
            log.warning("job %d changed hands before it could be closed as %s", job.id, state.value)
        log.info("runner %s: job %d %s", self.id, job.id, state.value)
        return state

