"""Authorization by owner: a token sees and acts on its owner's jobs, schedules and
exports only (another owner's are 404 to it, as if they did not exist); an admin token
(``token create --admin``) sees all. On the real API over SQLite and PostgreSQL, with
real jobs run by the real runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import digits_spec_dict
from reliability.figures import record

from prunetune.service.app import create_app
from prunetune.service.job_runner import JobRunner
from prunetune.service.roots import ROOTS_ENV
from prunetune.store.tokens import create_token


@pytest.fixture(params=["sqlite", "postgres"])
def api(request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str, Path]]:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path))
    with TestClient(create_app(url)) as client:
        yield client, url, tmp_path


def test_each_owner_sees_only_its_own_jobs_and_schedules_and_the_admin_sees_all(
    api: tuple[TestClient, str, Path],
) -> None:
    client, url, root = api
    auth = {who: {"Authorization": f"Bearer {create_token(url, owner=who, admin=who == 'root')}"}
            for who in ("alice", "bob", "root")}
    jobs: dict[str, int] = {}
    for who in ("alice", "bob"):
        resp = client.post("/jobs", json={"spec": digits_spec_dict(budget={"trials": 2})}, headers=auth[who])
        assert resp.status_code == 201 and resp.json()["owner"] == who
        jobs[who] = resp.json()["id"]
        JobRunner(url, poll_s=0.1).run_one(jobs[who])
        resp = client.post("/schedules", json={"spec": digits_spec_dict(), "cron": "0 2 * * *", "name": f"n-{who}"},
                           headers=auth[who])
        assert resp.status_code == 201
    cases = 0
    for me, other in (("alice", "bob"), ("bob", "alice")):
        mine, theirs, h = jobs[me], jobs[other], auth[me]
        assert [j["id"] for j in client.get("/jobs", headers=h).json()] == [mine]
        assert [s["name"] for s in client.get("/schedules", headers=h).json()] == [f"n-{me}"]
        trial = client.get(f"/jobs/{mine}/front", headers=h).json()[0]["trial"]
        for method, path, body in [
            ("GET", "/jobs/{}", None), ("GET", "/jobs/{}/front", None), ("GET", "/jobs/{}/trials", None),
            ("GET", "/jobs/{}/report", None), ("GET", "/jobs/{}/comparison", None),
            ("POST", "/jobs/{}/export", {"trial": trial, "out": str(root / me) + "-export-{}"}),
        ]:
            ok = client.request(method, path.format(mine), json=body and {**body, "out": body["out"].format(mine)},
                                headers=h)
            assert ok.status_code in (200, 201), (me, path, ok.text)
            denied = client.request(method, path.format(theirs),
                                    json=body and {**body, "out": body["out"].format(theirs)}, headers=h)
            assert denied.status_code == 404 and denied.json()["error"]["type"] == "not_found", (me, path, denied.text)
            cases += 2
        assert not (root / f"{me}-export-{theirs}").exists()
        for method, path, body in [("GET", f"/schedules/n-{other}/runs", None),
                                   ("PATCH", f"/schedules/n-{other}", {"enabled": False})]:
            assert client.request(method, path, json=body, headers=h).status_code == 404
            assert client.request(method, path.replace(other, me), json=body, headers=h).status_code == 200
            cases += 2
    # Cancel: a queued job of alice's is not bob's to cancel; alice can.
    queued = client.post("/jobs", json={"spec": digits_spec_dict()}, headers=auth["alice"]).json()["id"]
    assert client.post(f"/jobs/{queued}/cancel", headers=auth["bob"]).status_code == 404
    assert client.get(f"/jobs/{queued}", headers=auth["alice"]).json()["state"] == "queued"
    assert client.post(f"/jobs/{queued}/cancel", headers=auth["alice"]).json()["state"] == "cancelled"
    cases += 2
    # The admin sees and acts on both owners' jobs and schedules.
    admin = auth["root"]
    assert sorted(j["id"] for j in client.get("/jobs", headers=admin).json()) == sorted([*jobs.values(), queued])
    assert {s["name"] for s in client.get("/schedules", headers=admin).json()} == {"n-alice", "n-bob"}
    for job_id in jobs.values():
        assert client.get(f"/jobs/{job_id}/trials", headers=admin).status_code == 200
    assert client.patch("/schedules/n-bob", json={"enabled": True}, headers=admin).status_code == 200
    cases += 4
    record(f"security.owner_isolation.{'sqlite' if url.startswith('sqlite') else 'postgres'}",
           owner_isolation_cases=cases, crossed=0)
