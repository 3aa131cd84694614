"""The HTTP API over the real PostgreSQL (in-process ASGI client): auth, validation
errors that name the field, nothing written for a rejected request, and the routes on a
real (digits) job run by an in-process runner."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from helpers import digits_spec_dict

from prunetune.service.app import create_app
from prunetune.service.job_runner import JobRunner
from prunetune.store.db import get_engine
from prunetune.store.tokens import create_token


@pytest.fixture
def api(postgres_url: str) -> Iterator[tuple[TestClient, str, str]]:
    app = create_app(postgres_url)
    token = create_token(postgres_url, owner="alice")
    with TestClient(app) as client:
        yield client, token, postgres_url


def _counts(url: str) -> tuple[int, int, int]:
    with get_engine(url).connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()  # type: ignore[return-value]
                     for t in ("jobs", "studies", "schedules"))


def test_health_needs_no_token(api: tuple[TestClient, str, str]) -> None:
    client, _, _ = api
    resp = client.get("/health")
    assert resp.status_code == 200 and resp.json()["status"] == "ok" and resp.json()["schema"] == "0003"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer ptk_0000_wrong"},
                                     {"Authorization": "Basic YWxpY2U6c2VjcmV0"}])
def test_missing_or_bad_token_is_401_and_writes_nothing(api: tuple[TestClient, str, str], headers: dict[str, str]) -> None:
    client, _, url = api
    before = _counts(url)
    for method, path, body in [("POST", "/jobs", {"spec": digits_spec_dict()}), ("GET", "/jobs", None),
                               ("GET", "/jobs/1", None), ("GET", "/jobs/1/front", None),
                               ("GET", "/jobs/1/trials", None), ("POST", "/jobs/1/cancel", None),
                               ("POST", "/jobs/1/export", {"trial": 0, "out": "/tmp/x"}),
                               ("POST", "/schedules", {"spec": digits_spec_dict(), "cron": "0 2 * * *", "name": "n"})]:
        resp = client.request(method, path, json=body, headers=headers)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"]["field"] == "Authorization"
        assert resp.headers["www-authenticate"] == "Bearer"
    assert _counts(url) == before


@pytest.mark.parametrize(("spec", "field"), [
    (digits_spec_dict(task={"kind": "nonsense", "data": "digits"}), "spec.task.kind"),
    (digits_spec_dict(budget={"trials": 0}), "spec.budget.trials"),
    (digits_spec_dict(space={"max": 1.5}), "spec.space.max"),
    (digits_spec_dict(strategy={"name": "genetic-ish"}), "spec.strategy.name"),
    (digits_spec_dict(bogus=1), "spec.bogus"),
    ({"task": {"kind": "classification"}}, "spec.model"),
])
def test_malformed_spec_is_422_naming_the_field_and_writes_nothing(
    api: tuple[TestClient, str, str], spec: dict[str, Any], field: str
) -> None:
    client, token, url = api
    before = _counts(url)
    resp = client.post("/jobs", json={"spec": spec}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 422, resp.text
    err = resp.json()["error"]
    assert err["field"] == field and field in err["message"]
    assert _counts(url) == before


def test_malformed_request_body_is_422_naming_the_field(api: tuple[TestClient, str, str]) -> None:
    client, token, url = api
    auth = {"Authorization": f"Bearer {token}"}
    before = _counts(url)
    resp = client.post("/jobs", json={"specification": {}}, headers=auth)
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "spec"
    resp = client.post("/schedules", json={"spec": digits_spec_dict(), "cron": "every night", "name": "n"}, headers=auth)
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "cron"
    assert _counts(url) == before
    resp = client.get("/jobs/77", headers=auth)
    assert resp.status_code == 404 and resp.json()["error"]["value"] == 77


def test_job_routes_on_a_real_run(api: tuple[TestClient, str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    client, token, url = api
    auth = {"Authorization": f"Bearer {token}"}
    resp = client.post("/jobs", json={"spec": digits_spec_dict(budget={"trials": 5})}, headers=auth)
    assert resp.status_code == 201
    job = resp.json()
    assert job["state"] == "queued" and job["owner"] == "alice" and job["study_name"] == f"job-{job['id']}"
    assert client.get(f"/jobs/{job['id']}/front", headers=auth).json() == []

    assert JobRunner(url, lease_s=10, migrate=False).run_one(job["id"]) is not None

    got = client.get(f"/jobs/{job['id']}", headers=auth).json()
    assert got["state"] == "succeeded" and got["progress"] == {"done": 5, "total": 5}
    trials = client.get(f"/jobs/{job['id']}/trials", headers=auth).json()
    assert [t["trial"] for t in trials] == [0, 1, 2, 3, 4]
    assert all(t["state"] == "complete" and not t["stale"] for t in trials)
    best = max(trials, key=lambda t: t["quality"])
    assert got["best"] == {"trial": best["trial"], "quality": best["quality"]}
    front = client.get(f"/jobs/{job['id']}/front", headers=auth).json()
    assert front and best["trial"] in {p["trial"] for p in front}
    assert all(p["report"] for p in front)  # scored on the REPORT split
    assert [j["id"] for j in client.get("/jobs", headers=auth).json()] == [job["id"]]
    assert client.get("/jobs?state=queued", headers=auth).json() == []

    out = tmp_path / "pruned"
    resp = client.post(f"/jobs/{job['id']}/export", json={"trial": front[0]["trial"], "out": str(out)}, headers=auth)
    assert resp.status_code == 201, resp.text
    assert resp.json()["nbytes"] > 0 and any(out.iterdir())
    resp = client.post(f"/jobs/{job['id']}/export", json={"trial": 99, "out": str(out)}, headers=auth)
    assert resp.status_code == 409 and resp.json()["error"]["field"] == "trial"

    resp = client.post(f"/jobs/{job['id']}/cancel", headers=auth)
    assert resp.status_code == 409 and resp.json()["error"]["field"] == "state"
    assert "/jobs/{job_id}/front" in client.get("/openapi.json").json()["paths"]
