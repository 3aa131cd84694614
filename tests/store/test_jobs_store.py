"""The job tables on real SQLite files and the real PostgreSQL: migrations, claiming,
leases, cancel, tokens, and the session's error mapping."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from prunetune.store.db import (
    VERSION_TABLE,
    ConflictError,
    NotFoundError,
    current_revision,
    get_engine,
    session_scope,
    upgrade,
)
from prunetune.store.jobs import JobStore
from prunetune.store.models import Base, JobState, Schedule, utcnow
from prunetune.store.tokens import create_token, revoke_token, verify_token


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    upgrade(url)
    return url


def _submit(store: JobStore, n: int = 1) -> list[int]:
    return [store.submit({"name": f"j{i}"}, name=f"j{i}", trials=4).id for i in range(n)]


def test_upgrade_creates_our_tables_next_to_optunas_and_matches_the_models(db: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    tables = set(sa.inspect(get_engine(db)).get_table_names())
    assert {"jobs", "schedules", "artifacts", "api_tokens", VERSION_TABLE} <= tables
    assert {"studies", "trials", "alembic_version"} <= tables  # Optuna's, untouched
    assert current_revision(db) == "0003"
    upgrade(db)  # idempotent
    with get_engine(db).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "version_table": VERSION_TABLE,
            "include_object": lambda o, name, type_, r, c: not (type_ == "table" and name not in Base.metadata.tables),
        })
        assert compare_metadata(ctx, Base.metadata) == []


def test_concurrent_upgrades_from_several_processes_agree(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = f"from prunetune.store.db import upgrade; upgrade({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(3)]
    assert [p.wait() for p in procs] == [0, 0, 0]
    assert current_revision(url) == "0003"


def test_submit_get_list_and_study_name(db: str) -> None:
    store = JobStore(db)
    a, b = _submit(store, 2)
    got = store.get(a)
    assert got.state is JobState.QUEUED and got.study_name == f"job-{a}" and got.trials_total == 4
    assert got.created_at.tzinfo is not None
    assert [j.id for j in store.list_jobs()] == [b, a]
    assert store.list_jobs(state=JobState.RUNNING) == []
    with pytest.raises(NotFoundError, match="job 999"):
        store.get(999)


def test_claims_are_exclusive_under_concurrency(db: str) -> None:
    store = JobStore(db)
    ids = _submit(store, 3)
    won: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def runner(i: int) -> None:
        start.wait()
        while True:
            job = store.claim(f"w{i}", lease_s=60)
            if job is None:
                return
            with lock:
                won.append(job.id)

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == ids  # each job claimed exactly once
    assert all(store.get(i).attempts == 1 and store.get(i).state is JobState.RUNNING for i in ids)


def test_expired_lease_is_reclaimed_and_the_old_owner_is_locked_out(db: str) -> None:
    store = JobStore(db)
    (job_id,) = _submit(store)
    first = store.claim("dead", lease_s=0.2)
    assert first is not None and first.id == job_id
    assert store.claim("other", lease_s=60) is None  # lease still held
    time.sleep(0.3)
    second = store.claim("other", lease_s=60)
    assert second is not None and second.id == job_id and second.attempts == 2
    assert second.started_at == first.started_at
    assert not store.heartbeat(job_id, "dead").held
    assert store.heartbeat(job_id, "other").held
    assert not store.finish(job_id, "dead", JobState.SUCCEEDED)
    store.progress(job_id, "dead", 3, 4, (2, 0.5))
    assert store.get(job_id).trials_done == 0  # a stale runner's writes are ignored
    store.progress(job_id, "other", 3, 4, (2, 0.5))
    assert store.finish(job_id, "other", JobState.SUCCEEDED)
    done = store.get(job_id)
    assert (done.state, done.trials_done, done.best_trial, done.best_quality) == (JobState.SUCCEEDED, 3, 2, 0.5)
    assert store.claim("third", lease_s=60) is None


def test_cancel_queued_running_and_finished(db: str) -> None:
    store = JobStore(db)
    queued, running = _submit(store, 2)
    assert store.request_cancel(queued).state is JobState.CANCELLED
    claimed = store.claim("w", 60)
    assert claimed is not None and claimed.id == running
    assert store.request_cancel(running).state is JobState.RUNNING
    assert store.heartbeat(running, "w").cancel_requested
    store.finish(running, "w", JobState.CANCELLED)
    with pytest.raises(ConflictError, match="'state'"):
        store.request_cancel(running)
    with pytest.raises(NotFoundError):
        store.request_cancel(12345)


def test_session_scope_rolls_back_and_raises_domain_errors(db: str) -> None:
    store = JobStore(db)
    store.add_schedule(name="nightly", cron="0 2 * * *", spec={})
    with pytest.raises(ConflictError, match="'name'"):
        store.add_schedule(name="nightly", cron="0 3 * * *", spec={})
    with pytest.raises(ConflictError, match="constraint"), session_scope(db) as s:
        s.add(Schedule(name="nightly", cron="x", spec={}, created_at=utcnow()))
    with pytest.raises(RuntimeError, match="boom"), session_scope(db) as s:
        s.add(Schedule(name="other", cron="x", spec={}, created_at=utcnow()))
        s.flush()
        raise RuntimeError("boom")
    with session_scope(db) as s:
        assert s.scalars(sa.select(Schedule.name)).all() == ["nightly"]


def test_tokens_are_stored_hashed_and_verified(db: str) -> None:
    token = create_token(db, owner="alice")
    assert verify_token(db, token) == "alice"
    assert verify_token(db, token + "x") is None
    assert verify_token(db, "ptk_nope_nope") is None
    assert verify_token(db, "") is None
    with get_engine(db).connect() as conn:
        stored = conn.exec_driver_sql("SELECT prefix, token_hash FROM api_tokens").all()
    assert len(stored) == 1 and token not in stored[0] and stored[0][1] != token
    assert revoke_token(db, token)
    assert verify_token(db, token) is None


def test_a_job_whose_runners_keep_dying_is_failed_not_retried_forever(db: str) -> None:
    from prunetune.service.job_runner import JobRunner

    store = JobStore(db)
    (job_id,) = _submit(store)
    for i in range(2):
        assert store.claim(f"dead{i}", lease_s=0.05) is not None
        time.sleep(0.1)
    assert JobRunner(db, max_attempts=2, migrate=False).run_one(job_id) is JobState.FAILED
    job = store.get(job_id)
    assert job.state is JobState.FAILED and job.attempts == 3 and "gave up after 2 attempts" in (job.error or "")
