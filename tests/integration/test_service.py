"""The service as real processes on loopback: ``prunetune serve`` and ``prunetune worker``
on the real PostgreSQL (and SQLite for the crash test), jobs on the digits model.

Every process a test starts is stopped in a ``finally``. Waits poll without deadlines
but fail as soon as a process the test relies on has died.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import digits_spec_dict

from prunetune import Client
from prunetune.client import AuthError
from prunetune.service.jobs import JobService
from prunetune.store.db import upgrade
from prunetune.store.tokens import create_token

pytestmark = pytest.mark.integration


class Procs:
    """Starts ``python -m prunetune.cli ...`` processes and kills them all at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        log = self.logs / f"{name}.log"
        fh = open(log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "prunetune.cli", *args], stdout=fh,
                                stderr=subprocess.STDOUT, env=env)
        fh.close()
        self.running.append((proc, log))
        return proc

    def check_alive(self, *procs: subprocess.Popen[bytes]) -> None:
        for proc, log in self.running:
            if proc in procs and proc.poll() is not None:
                pytest.fail(f"{proc.args[3]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return next(log.read_text() for p, log in self.running if p is proc)

    def stop_all(self) -> None:
        for proc, _ in self.running:
            if proc.poll() is None:
                proc.kill()
        for proc, _ in self.running:
            proc.wait()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def poll(until: Callable[[], Any], procs: Procs, *alive: subprocess.Popen[bytes], every: float = 0.1) -> Any:
    while True:
        procs.check_alive(*alive)
        got = until()
        if got:
            return got
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker(procs: Procs, db: str, name: str, lease: float = 2.0) -> subprocess.Popen[bytes]:
    return procs.start(name, "worker", "--db", db, "--lease", str(lease), "--poll", "0.2")


def complete_trials(service: JobService, job_id: int) -> dict[int, dict[str, Any]]:
    return {t["trial"]: t for t in service.trials(job_id) if t["state"] == "complete"}


def test_serve_and_two_workers_run_three_jobs_each_exactly_once(postgres_url: str, procs: Procs) -> None:
    upgrade(postgres_url)
    token = create_token(postgres_url, owner="ci")
    port = free_port()
    server = procs.start("serve", "serve", "--db", postgres_url, "--host", "127.0.0.1", "--port", str(port))
    workers = [worker(procs, postgres_url, f"worker{i}", lease=10) for i in range(2)]
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health").status_code == 200
        except httpx.TransportError:
            return False

    poll(healthy, procs, server)
    client = Client(url, token=token)
    budgets = [4, 5, 6]
    jobs = [client.submit(digits_spec_dict(name=f"job{i}", budget={"trials": b}, seed=i))
            for i, b in enumerate(budgets)]
    done = poll(lambda: all(j.status().finished for j in jobs) and [j.status() for j in jobs],
                procs, server, *workers, every=0.3)

    assert [s.state for s in done] == ["succeeded"] * 3
    assert [s.attempts for s in done] == [1, 1, 1]
    for job, budget in zip(jobs, budgets, strict=True):
        trials = job.trials()
        assert [t["trial"] for t in trials] == list(range(budget))
        assert all(t["state"] == "complete" and not t["stale"] for t in trials)
        assert job.pareto_front()
    logs = "".join(procs.log(w) for w in workers)
    for job in jobs:
        assert logs.count(f": job {job.id} (") == 1, logs  # claimed once, by one runner
    with pytest.raises(AuthError) as err:
        Client(url, token="ptk_bad_bad").list()
    assert err.value.status == 401


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_sigkilled_runner_is_resumed_by_another_without_rerunning_trials(
    dialect: str, request: pytest.FixtureRequest, procs: Procs
) -> None:
    db = request.getfixturevalue("postgres_url" if dialect == "postgres" else "sqlite_url")
    service = JobService(db)
    budget = 60
    job_id = service.submit(digits_spec_dict(budget={"trials": budget}))["id"]
    first = worker(procs, db, "first")

    def mid_trial() -> dict[int, dict[str, Any]] | None:
        # Kill while a trial is RUNNING (as it nearly always is), to leave a stale one.
        trials = service.trials(job_id)
        done = {t["trial"]: t for t in trials if t["state"] == "complete"}
        return done if len(done) >= 5 and any(t["state"] == "running" for t in trials) else None

    before = poll(mid_trial, procs, first, every=0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    crashed = service.get(job_id)
    assert crashed["state"] == "running" and crashed["trials_done"] < budget, "killed too late"
    left_running = [t for t in service.trials(job_id) if t["state"] == "running"]

    second = worker(procs, db, "second")
    poll(lambda: service.get(job_id)["state"] != "running", procs, second, every=0.3)

    final = service.get(job_id)
    assert final["state"] == "succeeded" and final["attempts"] == 2
    trials = service.trials(job_id)
    numbers = [t["trial"] for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = {t["trial"]: t for t in trials if t["state"] == "complete"}
    assert len(complete) == budget
    for number, t in before.items():
        assert complete[number] == t  # unchanged: same allocation, values, timestamps
    stale = [t for t in trials if t["stale"]]
    assert [t["trial"] for t in stale] == [t["trial"] for t in left_running]
    assert all(t["state"] == "fail" for t in stale)
    assert len(trials) == budget + len(stale)
    redone = [t["allocation"] for n, t in complete.items() if n > max(before)]
    assert all(t["allocation"] in redone for t in stale)  # their candidates were asked again
    assert not any(t["state"] == "running" for t in trials)


def test_cancel_mid_job_stops_it_and_keeps_completed_trials(postgres_url: str, procs: Procs) -> None:
    service = JobService(postgres_url)
    job_id = service.submit(digits_spec_dict(budget={"trials": 500}))["id"]
    runner = worker(procs, postgres_url, "runner", lease=3)
    before = poll(lambda: (c := complete_trials(service, job_id)) and len(c) >= 3 and c, procs, runner)
    client = Client.embedded(postgres_url)
    assert client.cancel(job_id).state == "running"  # asked; the runner stops
    status = client.wait(job_id)
    assert status.state == "cancelled"
    after = complete_trials(service, job_id)
    assert 3 <= len(after) < 500
    assert all(after[n] == t for n, t in before.items())
    assert not any(t["state"] == "running" for t in service.trials(job_id))
    assert client.pareto_front(job_id)  # the completed trials still make a front
    assert runner.poll() is None  # the runner lives on for the next job
