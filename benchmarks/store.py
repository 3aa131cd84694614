"""Service benchmark: trial records per second (SQLite, PostgreSQL) and the time from
``submit`` to the first evaluated trial.

- Trial records: what the controller writes per trial, through the real
  ``TrialRecorder`` on the digits model's search space (``start``: enqueue + ask, the
  RUNNING trial with its allocation; ``finish``: metrics as attributes + tell), plus the
  runner's progress update of the job row. Sequential, one process, as one job's
  controller writes. Median of ``--repeats`` runs of ``--trials`` records each.
- Submit to first trial: a ``prunetune runner`` process (default poll interval, 1 s)
  waits on the PostgreSQL database; a digits job is submitted through the HTTP API
  (``prunetune serve``) and the clock stops when the job's first trial is complete in
  its study. Includes the runner's poll wait, loading the model (the digits MLP is
  trained at load, ~1-3 s) and scores. Median over ``--jobs`` jobs.

Writes ``benchmarks/results/store.json`` and ends with::

    RESULT sqlite_trials_per_s=<n> postgres_trials_per_s=<n> submit_to_first_trial_s=<s>

Run heavy: ``flock /tmp/prunetune-heavy.lock .venv/bin/python benchmarks/store.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import optuna
import sqlalchemy as sa
from _common import provenance  # benchmarks/_common.py (the script's folder is on sys.path)

from prunetune.engine.runner import package_versions
from prunetune.search.base import TrialResult, TrialState
from prunetune.search.strategies.random import RandomSearch
from prunetune.spaces.space import SearchSpace
from prunetune.spec import SearchSpec
from prunetune.store.db import upgrade
from prunetune.store.jobs import JobStore
from prunetune.store.studies import TrialRecorder, open_storage
from prunetune.store.tokens import create_token

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("PRUNETUNE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def digits_spec(trials: int, seed: int = 0) -> dict[str, Any]:
    return {
        "name": "bench-digits", "model": {"source": "digits"},
        "task": {"kind": "classification", "data": "digits", "calibration": 128, "search": 200, "report": 300},
        "space": {"criterion": "wanda", "max": 0.95, "step": 0.05},
        "budget": {"trials": trials}, "strategy": {"name": "random"}, "seed": seed,
    }


@contextmanager
def postgres_database() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"prunetune_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.dispose()


def record_rate(url: str, space: SearchSpace, trials: int, repeats: int) -> dict[str, Any]:
    """Trials recorded per second (start + finish + job progress), median of repeats."""
    upgrade(url)
    storage = open_storage(url)
    store = JobStore(url)
    rates = []
    for r in range(repeats):
        job = store.submit({}, name="bench", trials=trials)
        claimed = store.claim("bench", 600, job_id=job.id)
        assert claimed is not None
        recorder = TrialRecorder(storage, job.study_name, space, "accuracy")
        cands = RandomSearch(space, seed=r, budget=trials).ask(trials)
        t0 = time.perf_counter()
        for i, cand in enumerate(cands):
            number = recorder.start(cand)
            metrics = {"accuracy": 0.9, "nonzero_params": 1000.0 + i, "sparsity": 0.5, "eval_seconds": 0.01}
            recorder.finish(TrialResult(number, cand, TrialState.COMPLETE, 0.9, 1000.0 + i, metrics))
            store.progress(job.id, "bench", i + 1, trials, (number, 0.9))
        rates.append(trials / (time.perf_counter() - t0))
    return {"trials": trials, "repeats": repeats, "rates": rates, "median": statistics.median(rates)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def submit_to_first_trial(url: str, jobs: int, logs: Path) -> dict[str, Any]:
    upgrade(url)
    token = create_token(url, owner="bench")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "prunetune.cli"]
    procs = [
        subprocess.Popen([*cmd, "serve", "--db", url, "--port", str(port)], env=env,
                         stdout=open(logs / "serve.log", "wb"), stderr=subprocess.STDOUT),  # noqa: SIM115
        subprocess.Popen([*cmd, "runner", "--db", url], env=env,
                         stdout=open(logs / "runner.log", "wb"), stderr=subprocess.STDOUT),  # noqa: SIM115
    ]
    api = f"http://127.0.0.1:{port}"
    storage = open_storage(url)
    try:
        while True:
            try:
                if httpx.get(f"{api}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        time.sleep(3.0)  # the runner has started and polls
        http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        waits = []
        for i in range(jobs):
            t0 = time.perf_counter()
            job = http.post("/jobs", json={"spec": digits_spec(2, seed=i)}).json()
            study = None
            while True:
                for p in procs:
                    if p.poll() is not None:
                        raise RuntimeError(f"{p.args!r} exited with {p.returncode}; see {logs}")
                try:
                    study = study or optuna.load_study(study_name=job["study_name"], storage=storage)
                    if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                        break
                except KeyError:
                    pass
                time.sleep(0.02)
            waits.append(time.perf_counter() - t0)
            while http.get(f"/jobs/{job['id']}").json()["state"] == "running":
                time.sleep(0.1)
        return {"jobs": jobs, "seconds": waits, "median": statistics.median(waits), "worker_poll_s": 1.0}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="trial records per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=3, help="jobs for submit-to-first-trial")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "store.json")
    args = parser.parse_args()

    from prunetune.engine.workbench import build_workbench

    bench = build_workbench(SearchSpec.from_dict(digits_spec(1)))
    space = bench.space
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = record_rate(f"sqlite:///{tmp}/bench.db", space, args.trials, args.repeats)
        print(f"sqlite: {sqlite['median']:.1f} trial records/s ({[round(r, 1) for r in sqlite['rates']]})", flush=True)
        with postgres_database() as pg_url:
            postgres = record_rate(pg_url, space, args.trials, args.repeats)
        print(f"postgres: {postgres['median']:.1f} trial records/s ({[round(r, 1) for r in postgres['rates']]})", flush=True)
        with postgres_database() as pg_url:
            first = submit_to_first_trial(pg_url, args.jobs, Path(tmp))
        print(f"submit -> first trial: {first['median']:.2f} s ({[round(s, 2) for s in first['seconds']]})", flush=True)

    result = {
        "benchmark": "store",
        "provenance": provenance({k: str(v) for k, v in vars(args).items()}, bench=bench,
                                 seeds=sorted({0, *range(args.repeats), *range(args.jobs)})),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs (shared)",
        "versions": package_versions(),
        "layers": len(space.names),
        "sqlite": sqlite, "postgres": postgres, "submit_to_first_trial": first,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"RESULT sqlite_trials_per_s={sqlite['median']:.1f} postgres_trials_per_s={postgres['median']:.1f} "
          f"submit_to_first_trial_s={first['median']:.2f}")


if __name__ == "__main__":
    main()
