"""PostgreSQL restarted twice in the middle of a job: the API and the runner reconnect,
the job finishes with exactly its budget of completed trials, none twice, and the trials
completed before the restarts are unchanged.

Restarting the server disturbs every database on it: run this set alone (CI does; on a
shared machine under ``flock /tmp/prunetune-heavy.lock``).
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import httpx
import pytest
from helpers import digits_spec_dict
from integration.test_service import Procs, free_port, poll, procs, worker  # noqa: F401 - procs is a fixture
from reliability.figures import record

from prunetune.service.jobs import JobService
from prunetune.store.db import upgrade
from prunetune.store.tokens import create_token

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    while subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode != 0:
        pass


def test_postgres_restarts_mid_job_are_survived(postgres_url: str, procs: Procs) -> None:  # noqa: F811
    upgrade(postgres_url)
    token = create_token(postgres_url, owner="ci")
    port = free_port()
    server = procs.start("serve", "serve", "--db", postgres_url, "--port", str(port))
    runner = worker(procs, postgres_url, "runner", lease=30)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}

    def get(path: str) -> Any:
        try:
            resp = httpx.get(url + path, headers=auth)
        except httpx.TransportError:
            return None
        return resp.json() if resp.status_code == 200 else None

    poll(lambda: get("/health"), procs, server)
    budget = 80
    job = httpx.post(f"{url}/jobs", json={"spec": digits_spec_dict(budget={"trials": budget})}, headers=auth).json()
    service = JobService(postgres_url)
    restarts = 0
    before: dict[int, dict[str, Any]] = {}
    for threshold in (5, 25):
        done = poll(lambda t=threshold: (c := {x["trial"]: x for x in (get(f"/jobs/{job['id']}/trials") or [])
                                               if x["state"] == "complete"}) and len(c) >= t and c,
                    procs, server, runner, every=0.05)
        before.update(done)
        assert len(done) < budget, "the job finished before the restart"
        restart_postgres()
        restarts += 1
    final = poll(lambda: (s := get(f"/jobs/{job['id']}")) and s["state"] != "running" and s["state"] != "queued" and s,
                 procs, server, runner, every=0.3)
    assert final["state"] == "succeeded", final
    assert final["attempts"] == 1  # the runner itself survived; no other runner was needed
    trials = service.trials(job["id"])
    numbers = [t["trial"] for t in trials]
    complete = {t["trial"]: t for t in trials if t["state"] == "complete"}
    assert len(numbers) == len(set(numbers))
    assert len(complete) == budget
    assert all(complete[n] == t for n, t in before.items())
    assert not any(t["state"] == "running" for t in trials)
    assert all(t["stale"] for t in trials if t["state"] == "fail")
    assert get("/health")["status"] == "ok"
    resumed = procs.log(runner).count("database unavailable")
    record("fault.postgres_restart", faults_injected=restarts, faults_survived=restarts,
           trials_lost=budget - len(complete), trials_duplicated=len(numbers) - len(set(numbers)),
           budget=budget, stale_trials=len(trials) - len(complete), runner_resumes=resumed)


def test_killed_database_connections_mid_job_are_survived(postgres_url: str) -> None:
    """Every connection of the job's database terminated three times while an in-process
    runner works (what a failover or a connection-killing proxy does), without touching
    the rest of the server."""
    import threading

    import sqlalchemy as sa

    from prunetune.service.job_runner import JobRunner
    from prunetune.store.models import JobState

    admin = sa.create_engine(postgres_url.rsplit("/", 1)[0] + "/test", isolation_level="AUTOCOMMIT")
    name = postgres_url.rsplit("/", 1)[1]
    service = JobService(postgres_url)
    budget = 60
    job = service.submit(digits_spec_dict(budget={"trials": budget}))
    outcome: dict[str, JobState | None] = {}
    runner = threading.Thread(target=lambda: outcome.setdefault(
        "state", JobRunner(postgres_url, workers=0, poll_s=0.2).run_one(job["id"])))
    runner.start()
    kills = 0
    try:
        while runner.is_alive() and kills < 3:
            done = [t for t in service.trials(job["id"]) if t["state"] == "complete"]
            if len(done) >= 5 + 15 * kills:
                with admin.connect() as conn:
                    conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                         f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
                kills += 1
    finally:
        runner.join()
        admin.dispose()
    assert kills == 3 and outcome["state"] == JobState.SUCCEEDED
    trials = service.trials(job["id"])
    numbers = [t["trial"] for t in trials]
    complete = [t for t in trials if t["state"] == "complete"]
    assert len(numbers) == len(set(numbers)) and len(complete) == budget
    assert all(t["stale"] for t in trials if t["state"] != "complete")
    record("fault.db_connections_killed", faults_injected=kills, faults_survived=kills,
           trials_lost=budget - len(complete), trials_duplicated=len(numbers) - len(set(numbers)),
           budget=budget, stale_trials=len(trials) - len(complete))
