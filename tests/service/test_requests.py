"""Request-level guarantees of the API: a body limit (413), idempotent submission with an
``Idempotency-Key`` (the HTTP header and ``Client.submit(idempotency_key=)`` against a
real uvicorn server), and exports that never silently replace a folder's files. Real
SQLite files and the real PostgreSQL; jobs run by the real runner."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient
from helpers import digits_spec_dict

from prunetune import Client
from prunetune.client import ClientError
from prunetune.service.app import DEFAULT_MAX_BODY, MAX_BODY_ENV, create_app
from prunetune.service.job_runner import JobRunner
from prunetune.service.roots import ROOTS_ENV
from prunetune.store.db import get_engine
from prunetune.store.tokens import create_token


def _jobs(url: str) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one())


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url"))


def test_request_bodies_over_the_limit_are_413_and_write_nothing(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(create_app(sqlite_url)) as client:
        auth = {"Authorization": f"Bearer {create_token(sqlite_url)}"}
        huge = digits_spec_dict(strategy={"name": "random", "options": {"spread": "x" * (10 * 2**20)}})
        resp = client.post("/jobs", json={"spec": huge}, headers=auth)
        assert resp.status_code == 413, resp.text[:300]
        err = resp.json()["error"]
        assert err["type"] == "too_large" and err["allowed"] == f"at most {DEFAULT_MAX_BODY} bytes"
        assert len(resp.content) < 2000
        # No Content-Length (chunked): counted as it arrives.
        chunks = iter([b'{"spec": {"name": "' + b"x" * 200_000, b"y" * 200_000 + b'"}}'])
        resp = client.post("/jobs", content=chunks, headers={**auth, "Content-Type": "application/json"})
        assert resp.status_code == 413 and resp.json()["error"]["type"] == "too_large"
        # A normal spec still goes through.
        assert client.post("/jobs", json={"spec": digits_spec_dict()}, headers=auth).status_code == 201
    assert _jobs(sqlite_url) == 1
    monkeypatch.setenv(MAX_BODY_ENV, "2048")  # the operator's limit
    with TestClient(create_app(sqlite_url)) as client:
        padded = digits_spec_dict(name="p" * 90, strategy={"name": "random", "options": {"spread": 0.1}},
                                  space={"criterion": "wanda", "max": 0.95, "step": 0.05, "exclude": ["z" * 2500]})
        assert client.post("/jobs", json={"spec": padded}, headers=auth).status_code == 413
    assert _jobs(sqlite_url) == 1


def test_a_retried_submission_with_its_idempotency_key_returns_the_first_job(db: str) -> None:
    with TestClient(create_app(db)) as client:
        alice = {"Authorization": f"Bearer {create_token(db, owner='alice')}"}
        bob = {"Authorization": f"Bearer {create_token(db, owner='bob')}"}
        spec = digits_spec_dict()
        first = client.post("/jobs", json={"spec": spec}, headers={**alice, "Idempotency-Key": "nightly-1"})
        again = client.post("/jobs", json={"spec": spec}, headers={**alice, "Idempotency-Key": "nightly-1"})
        assert first.status_code == 201 and again.status_code == 201
        assert again.json()["id"] == first.json()["id"] and _jobs(db) == 1
        other = client.post("/jobs", json={"spec": digits_spec_dict(seed=1)},
                            headers={**alice, "Idempotency-Key": "nightly-1"})
        assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
        # Keys are per owner: bob's "nightly-1" is his own job.
        theirs = client.post("/jobs", json={"spec": spec}, headers={**bob, "Idempotency-Key": "nightly-1"})
        assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
        assert client.post("/jobs", json={"spec": spec}, headers=alice).json()["id"] not in (
            first.json()["id"], theirs.json()["id"])  # no key: a new job each time
        assert _jobs(db) == 3


@pytest.fixture
def server(sqlite_url: str) -> Iterator[str]:
    """``create_app`` served by uvicorn on a loopback port, in this process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(sqlite_url), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        assert thread.is_alive()
        threading.Event().wait(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join()


def test_client_submit_sends_an_idempotency_key(server: str, sqlite_url: str) -> None:
    with Client(server, token=create_token(sqlite_url, owner="carol")) as client:
        a = client.submit(digits_spec_dict(), idempotency_key="retry-me")
        b = client.submit(digits_spec_dict(), idempotency_key="retry-me")
        assert a.id == b.id and _jobs(sqlite_url) == 1
        c = client.submit(digits_spec_dict())  # a fresh key per call by default
        d = client.submit(digits_spec_dict())
        assert len({a.id, c.id, d.id}) == 3
        with pytest.raises(ClientError) as err:
            client.submit(digits_spec_dict(seed=3), idempotency_key="retry-me")
        assert err.value.status == 409 and err.value.field == "Idempotency-Key"


def test_export_refuses_a_folder_with_files_unless_overwrite(sqlite_url: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    with TestClient(create_app(sqlite_url)) as client:
        auth = {"Authorization": f"Bearer {create_token(sqlite_url)}"}
        job = client.post("/jobs", json={"spec": digits_spec_dict(budget={"trials": 2})}, headers=auth).json()["id"]
        JobRunner(sqlite_url, poll_s=0.1).run_one(job)
        trial = client.get(f"/jobs/{job}/front", headers=auth).json()[0]["trial"]
        out = tmp_path / "pruned"
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
        resp = client.post(f"/jobs/{job}/export", json={"trial": trial, "out": str(out)}, headers=auth)
        assert resp.status_code == 409, resp.text
        err = resp.json()["error"]
        assert err["field"] == "out" and "overwrite" in err["allowed"]
        assert [p.name for p in out.iterdir()] == ["mine.txt"]  # untouched
        resp = client.post(f"/jobs/{job}/export", json={"trial": trial, "out": str(out), "overwrite": True},
                           headers=auth)
        assert resp.status_code == 201 and resp.json()["nbytes"] > 0
        assert (out / "prunetune-job.json").is_file()  # written over, file by file (each os.replace atomic)
        # Onto a file, or under one: a 409 naming the field, not a 500.
        (tmp_path / "a-file").write_text("x")
        for target in [tmp_path / "a-file", tmp_path / "a-file" / "sub"]:
            resp = client.post(f"/jobs/{job}/export", json={"trial": trial, "out": str(target), "overwrite": True},
                               headers=auth)
            assert resp.status_code == 409 and resp.json()["error"]["field"] == "out", resp.text
        assert (tmp_path / "a-file").read_text() == "x"
