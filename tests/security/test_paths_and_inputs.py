"""Every path a request carries goes through one confinement function, at submit time and
again where the runner opens it; inputs the schema allows never get a 5xx; errors never
quote a user's file and cut the values they echo.

The real API (FastAPI, in process) over a real SQLite file, confined to ``tmp/root``;
symlinks are real ones made by the test; the runner is the real ``JobRunner``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from helpers import digits_spec_dict
from reliability.figures import record

from prunetune.service.app import create_app
from prunetune.service.job_runner import JobRunner
from prunetune.service.roots import ROOTS_ENV
from prunetune.store.db import get_engine
from prunetune.store.tokens import create_token

SECRET = "SECRET_HEADER_c0ffee"


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    monkeypatch.setenv(ROOTS_ENV, str(root))
    with TestClient(create_app(sqlite_url)) as client:
        token = create_token(sqlite_url, owner="alice")
        yield {"client": client, "auth": {"Authorization": f"Bearer {token}"}, "root": root,
               "outside": outside, "url": sqlite_url}


def _jobs(url: str) -> int:
    with get_engine(url).connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one())


def _policy_spec(path: str) -> dict[str, Any]:
    return digits_spec_dict(strategy={"name": "policy-gradient", "options": {"policy_path": path}})


def test_relative_task_data_is_read_from_the_roots_not_a_working_folder(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, auth, root, outside = env["client"], env["auth"], env["root"], env["outside"]
    (root / "data.csv").write_text("a,b\n1,2\n")
    (outside / "data.csv").write_text(f"{SECRET},b\n1,2\n")  # what the runner's own folder holds
    monkeypatch.chdir(outside)  # the API server runs elsewhere than the roots
    resp = client.post("/jobs", json={"spec": digits_spec_dict(task={"kind": "classification", "data": "data.csv"})},
                       headers=auth)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["spec"]["task"]["data"] == str(root / "data.csv")  # stored resolved against the roots
    JobRunner(env["url"], poll_s=0.1).run_one(job["id"])  # the runner too runs in `outside`
    done = client.get(f"/jobs/{job['id']}", headers=auth).json()
    assert done["state"] == "failed" and "task.label_column" in done["error"]
    assert SECRET not in json.dumps(done) and "'a'" not in done["error"]  # no header row in the error


def test_strategy_path_options_are_confined_and_never_leak_the_file(env: dict[str, Any]) -> None:
    client, auth, root, outside = env["client"], env["auth"], env["root"], env["outside"]
    field = "spec.strategy.options.policy_path"
    for path in [str(outside / "p.pt"), "../outside/p.pt", str(root / ".." / "outside" / "p.pt")]:
        resp = client.post("/jobs", json={"spec": _policy_spec(path)}, headers=auth)
        assert resp.status_code == 422 and resp.json()["error"]["field"] == field, resp.text
    assert list(outside.iterdir()) == [] and _jobs(env["url"]) == 0
    # Relative: under the roots, stored resolved.
    resp = client.post("/jobs", json={"spec": _policy_spec("policies/p.pt")}, headers=auth)
    assert resp.status_code == 201 and resp.json()["spec"]["strategy"]["options"]["policy_path"] == str(
        root / "policies" / "p.pt")
    # A file inside the roots that is not a policy: the job fails naming the field, not quoting the file.
    (root / "junk.pt").write_bytes(b"Xjunk that is not a policy")
    job = client.post("/jobs", json={"spec": _policy_spec(str(root / "junk.pt"))}, headers=auth).json()
    JobRunner(env["url"], poll_s=0.1).run_one(job["id"])
    done = client.get(f"/jobs/{job['id']}", headers=auth).json()
    assert done["state"] == "failed" and "policy_path" in done["error"], done
    assert "'X'" not in done["error"] and "junk that" not in done["error"]


def test_unknown_strategy_options_are_refused_at_submit(env: dict[str, Any]) -> None:
    client, auth = env["client"], env["auth"]
    for name, key in [("random", "bogus"), ("evolutionary", "populaton"), ("policy-gradient", "policy_file")]:
        resp = client.post("/jobs", json={"spec": digits_spec_dict(strategy={"name": name, "options": {key: 1}})},
                           headers=auth)
        assert resp.status_code == 422, resp.text
        err = resp.json()["error"]
        assert err["field"] == f"spec.strategy.options.{key}" and "takes the options" in err["allowed"]
    assert _jobs(env["url"]) == 0


def test_symlinks_out_of_the_roots_are_refused_at_submit_and_at_open(env: dict[str, Any]) -> None:
    client, auth, root, outside = env["client"], env["auth"], env["root"], env["outside"]
    (outside / "secret.csv").write_text(f"{SECRET},label\n1,0\n")
    (root / "link").symlink_to(outside, target_is_directory=True)
    refused = 0
    for field, spec in [
        ("spec.task.data", digits_spec_dict(task={"kind": "classification", "data": "link/secret.csv"})),
        ("spec.model.path", digits_spec_dict(model={"path": str(root / "link")})),
        ("spec.strategy.options.policy_path", _policy_spec("link/p.pt")),
    ]:
        resp = client.post("/jobs", json={"spec": spec}, headers=auth)
        assert resp.status_code == 422 and resp.json()["error"]["field"] == field, resp.text
        refused += 1
    resp = client.post("/jobs/1/export", json={"trial": 0, "out": "link/exported"}, headers=auth)
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "out"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
    # A file swapped for a symlink after the job was accepted: the runner refuses it.
    (root / "data.csv").write_text("a,label\n1,0\n")
    job = client.post("/jobs", json={"spec": digits_spec_dict(task={"kind": "classification", "data": "data.csv"})},
                      headers=auth).json()
    (root / "data.csv").unlink()
    (root / "data.csv").symlink_to(outside / "secret.csv")
    JobRunner(env["url"], poll_s=0.1).run_one(job["id"])
    done = client.get(f"/jobs/{job['id']}", headers=auth).json()
    assert done["state"] == "failed" and "spec.task.data" in done["error"] and ROOTS_ENV in done["error"]
    assert SECRET not in json.dumps(done)
    record("security.path_escapes", escapes_tried=refused + 2, escaped=0, checks=refused + 2)


def test_no_5xx_for_nul_long_unicode_and_file_paths(env: dict[str, Any]) -> None:
    client, auth, root, url = env["client"], env["auth"], env["root"], env["url"]

    def post(path: str, body: dict[str, Any]) -> Any:  # json.dumps escapes lone surrogates (\\udXXX)
        return client.post(path, content=json.dumps(body), headers={**auth, "Content-Type": "application/json"})

    bad_paths = {"NUL": f"{root}/a\x00b", "long component": "x" * 5000, "long path": "/".join(["abc"] * 2000),
                 "lone surrogate": "caf\udce9.csv"}
    tried = 0
    for kind, path in bad_paths.items():
        for field, spec in [
            ("spec.task.data", digits_spec_dict(task={"kind": "classification", "data": path})),
            ("spec.model.path", digits_spec_dict(model={"path": path})),
            ("spec.strategy.options.policy_path", _policy_spec(path)),
        ]:
            resp = post("/jobs", {"spec": spec})
            assert resp.status_code == 422, (kind, field, resp.text)
            assert resp.json()["error"]["field"] == field, (kind, resp.text)
            assert len(resp.content) < 4000, (kind, len(resp.content))  # the echoed value is cut
            tried += 1
        resp = post("/jobs/1/export", {"trial": 0, "out": path})
        assert resp.status_code == 422 and resp.json()["error"]["field"] == "out", (kind, resp.text)
        tried += 1
    # A lone surrogate anywhere else in the spec: refused before the row is written
    # (it used to be stored, and every GET of the job was a 500 from then on).
    for spec in [digits_spec_dict(strategy={"name": "random", "options": {"spread": "\ud800"}}),
                 digits_spec_dict(strategy={"name": "random", "options": {"\udfff": 0.1}})]:
        resp = post("/jobs", {"spec": spec})
        assert resp.status_code == 422 and resp.json()["error"]["field"].startswith("spec.strategy.options"), resp.text
        tried += 1
    resp = post("/schedules", {"spec": digits_spec_dict(), "cron": "0 2 * * *", "name": "n\ud800"})
    assert resp.status_code == 422, resp.text
    assert _jobs(url) == 0 and client.get("/schedules", headers=auth).status_code == 200
    # Malformed JSON, an unknown route, a wrong method: the documented {"error": ...} shape.
    for resp in [client.post("/jobs", content=b'{"spec": ', headers={**auth, "Content-Type": "application/json"}),
                 client.get("/no/such/route", headers=auth), client.put("/jobs", headers=auth)]:
        assert 400 <= resp.status_code < 500 and set(resp.json()) == {"error"}, resp.text
        tried += 1
    assert client.post("/jobs", content=b"{bad", headers={**auth, "Content-Type": "application/json"}).json()[
        "error"]["field"] == "body"
    record("bad_input.paths_and_text", checks=tried, answers_5xx=0)
