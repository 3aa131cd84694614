"""The embedded client on a real SQLite file, and the service commands of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import digits_spec_dict
from safetensors.torch import load_file

from prunetune import Client, SearchSpec
from prunetune.errors import SpecError
from prunetune.store.db import session_scope
from prunetune.store.models import Artifact, Schedule
from prunetune.store.tokens import verify_token


def test_embedded_client_runs_a_job_and_exports_a_trial(sqlite_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = Client.embedded(sqlite_url)
    job = client.submit(SearchSpec.from_dict(digits_spec_dict(budget={"trials": 6})))
    assert client.get(job.id).state == "queued"
    status = job.wait()  # embedded: runs the queued job in this process
    assert status.state == "succeeded" and status.trials_done == 6 and status.attempts == 1
    front = job.pareto_front()
    assert front and all(p.quality_name == "accuracy" and p.report for p in front)
    trials = job.trials()
    assert sorted(t["trial"] for t in trials) == list(range(6))

    point = max(front, key=lambda p: p.sparsity or 0.0)
    written = job.export(point.trial, tmp_path / "pruned")
    assert written["trial"] == point.trial and written["nbytes"] > 0
    out = tmp_path / "pruned"
    meta_file = out / ("prunetune-job.json" if written["format"] == "prunetune.export" else "prunetune.json")
    meta = json.loads(meta_file.read_text())
    assert (meta["job"], meta["trial"]) == (job.id, point.trial)
    weights = load_file(str(out / "model.safetensors"))
    for name, sparsity in meta["allocation"].items():
        w = weights[f"{name}.weight"]
        assert int((w == 0).sum()) == round(sparsity * w.numel()), name
    with session_scope(sqlite_url) as s:
        assert [(a.job_id, a.trial) for a in s.query(Artifact)] == [(job.id, point.trial)]

    assert [j.id for j in client.list()] == [job.id]
    sched = client.schedule(digits_spec_dict(), cron="0 2 * * *", name="nightly-digits")
    with session_scope(sqlite_url) as s:
        assert s.get(Schedule, sched["id"]).cron == "0 2 * * *"  # type: ignore[union-attr]


def test_embedded_client_rejects_a_bad_spec_and_cancels_a_queued_job(sqlite_url: str) -> None:
    client = Client.embedded(sqlite_url)
    with pytest.raises(SpecError) as err:
        client.submit(digits_spec_dict(budget={"trials": -1}))
    assert err.value.field == "spec.budget.trials"
    assert client.list() == []
    job = client.submit(digits_spec_dict())
    assert job.cancel().state == "cancelled"
    assert job.wait().state == "cancelled" and job.trials() == []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prunetune.cli", *args], capture_output=True, text=True, check=False)


def test_cli_token_create_submit_status_cancel(sqlite_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    made = _cli("token", "create", "--db", sqlite_url, "--owner", "ci")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert verify_token(sqlite_url, token) == "ci"

    spec = tmp_path / "digits.yaml"
    import yaml

    spec.write_text(yaml.safe_dump(digits_spec_dict()))
    sub = _cli("submit", str(spec), "--db", sqlite_url)
    assert sub.returncode == 0, sub.stderr
    job_id = int(sub.stdout.strip().splitlines()[-1])
    st = _cli("status", str(job_id), "--db", sqlite_url)
    assert st.returncode == 0 and json.loads(st.stdout)["state"] == "queued"
    cancel = _cli("cancel", str(job_id), "--db", sqlite_url)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout
    again = _cli("cancel", str(job_id), "--db", sqlite_url)
    assert again.returncode == 2 and "'state'" in again.stderr
    missing = _cli("status", "404", "--db", sqlite_url)
    assert missing.returncode == 2 and "job 404 does not exist" in missing.stderr


def test_every_client_operation_is_a_service_method_and_an_api_route(sqlite_url: str) -> None:
    """The client's table of operations: each names a JobService method that takes its
    arguments, and an API route with that method and path."""
    import inspect
    import re

    from prunetune.client import _OPERATIONS
    from prunetune.service.app import create_app
    from prunetune.service.jobs import JobService

    paths = create_app(sqlite_url).openapi()["paths"]
    for name, op in _OPERATIONS.items():
        params = inspect.signature(getattr(JobService, name)).parameters
        args = {*re.findall(r"{(\w+)}", op.path), *op.body.values(), *op.query, *op.headers.values(),
                *(["owner"] if op.owner else [])}
        assert args <= set(params), (name, args - set(params))
        assert op.method.lower() in paths[op.path], (name, op.method, op.path)
