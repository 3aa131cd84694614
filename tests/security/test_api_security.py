"""Who gets in and what they can reach: every route but /health needs a token, tokens are
stored hashed and compared in constant time, request paths stay inside the configured
roots, and ``prunetune serve`` binds loopback unless told otherwise."""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from helpers import digits_spec_dict
from reliability.figures import record

from prunetune.service.app import create_app
from prunetune.service.roots import CODE_ENV, ROOTS_ENV
from prunetune.store import tokens
from prunetune.store.db import get_engine
from prunetune.store.tokens import create_token, verify_token

# FastAPI's own documentation pages: the schema is public by design (README: OpenAPI at /docs).
PUBLIC = {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


@pytest.fixture
def api(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, str]]:
    monkeypatch.setenv(ROOTS_ENV, str(tmp_path / "root"))
    (tmp_path / "root").mkdir()
    app = create_app(sqlite_url)
    with TestClient(app) as client:
        yield client, create_token(sqlite_url, owner="alice")


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _every_route(routes: list[Any]) -> Iterator[Any]:
    """The app's routes, those of its included routers too (FastAPI 0.16x keeps an
    included router as one entry whose ``original_router`` holds the routes)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _every_route(inner.routes) if inner is not None else [route]


def test_every_route_but_health_needs_a_token(api: tuple[TestClient, str]) -> None:
    client, token = api
    every_route = list(_every_route(client.app.routes))  # type: ignore[attr-defined]
    routes = [r for r in every_route if isinstance(r, APIRoute)]
    assert len(routes) >= 14, "the walk found the API's routes"
    every = {getattr(r, "path", "") for r in every_route}
    assert every - PUBLIC - {r.path for r in routes} == set(), "a non-API route that is not documented as public"
    checked = 0
    for route in routes:
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            url = _concrete(route.path)
            for headers in ({}, {"Authorization": "Bearer ptk_000000000000_forged"},
                            {"Authorization": f"Bearer {token[:-2]}xx"}, {"Authorization": f"Basic {token}"}):
                resp = client.request(method, url, headers=headers, json={})
                if route.path == "/health":
                    assert resp.status_code == 200
                else:
                    assert resp.status_code == 401, (method, url, headers, resp.text)
                    assert resp.json()["error"]["type"] == "unauthorized"
                checked += 1
            if route.path != "/health":  # the real token gets past auth (whatever the route says next)
                resp = client.request(method, url, headers={"Authorization": f"Bearer {token}"}, json={})
                assert resp.status_code != 401, (method, url, resp.text)
    assert len(routes) >= 14
    record("security.routes_need_token", routes=len(routes), checks=checked)


def test_tokens_are_stored_hashed_and_compared_in_constant_time(sqlite_url: str) -> None:
    from prunetune.store.db import upgrade

    upgrade(sqlite_url)
    token = create_token(sqlite_url, owner="bob")
    with get_engine(sqlite_url).connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM api_tokens"))]
    assert len(rows) == 1
    assert not any(token in cell or token.split("_")[-1] in cell for cell in rows[0])
    assert hashlib.sha256(token.encode()).hexdigest() in rows[0]
    # Constant time: the stored hash is compared with hmac.compare_digest, and an unknown
    # prefix is compared against a dummy hash, so both paths do the same work.
    source = inspect.getsource(tokens.authenticate)  # verify_token and the API both go through it
    assert "hmac.compare_digest" in source and "_DUMMY" in source and "==" not in source.split("compare_digest")[1]
    assert verify_token(sqlite_url, token) == "bob"
    assert verify_token(sqlite_url, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert verify_token(sqlite_url, "ptk_" + "0" * 12 + "_" + token.split("_", 2)[2]) is None
    record("security.tokens_hashed", checks=5)


def test_paths_outside_the_roots_are_refused_naming_the_field(api: tuple[TestClient, str], tmp_path: Path) -> None:
    client, token = api
    auth = {"Authorization": f"Bearer {token}"}
    refused = 0
    for field, spec in [
        ("spec.model.path", digits_spec_dict(model={"path": "../../etc"})),
        ("spec.model.path", digits_spec_dict(model={"path": "/etc"})),
        ("spec.task.data", digits_spec_dict(task={"kind": "classification", "data": "/etc/passwd"})),
        ("spec.task.data", digits_spec_dict(task={"kind": "classification", "data": str(tmp_path / "root/../x.csv")})),
    ]:
        resp = client.post("/jobs", json={"spec": spec}, headers=auth)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["field"] == field
        refused += 1
    for out in ["../../etc/pruned", "/etc/pruned", str(tmp_path / "elsewhere"), str(tmp_path / "root/../x")]:
        resp = client.post("/jobs/1/export", json={"trial": 0, "out": out}, headers=auth)
        assert resp.status_code == 422, resp.text
        err = resp.json()["error"]
        assert err["field"] == "out" and ("'..'" in err["allowed"] or ROOTS_ENV in err["allowed"])
        refused += 1
    assert not (tmp_path / "elsewhere").exists() and not Path("/etc/pruned").exists()
    # A path inside the roots passes the check (and fails later only for what it is: no job 1).
    resp = client.post("/jobs/1/export", json={"trial": 0, "out": str(tmp_path / "root/pruned")}, headers=auth)
    assert resp.status_code == 404, resp.text
    record("security.path_confinement", checks=refused + 1)


def test_code_running_fields_are_refused_over_http_unless_allowed(
    api: tuple[TestClient, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, token = api
    auth = {"Authorization": f"Bearer {token}"}
    factory = digits_spec_dict(model={"factory": "os:getcwd"})
    function = digits_spec_dict(task={"kind": "callable", "function": "os:getcwd"})
    for field, spec in [("spec.model.factory", factory), ("spec.task.function", function)]:
        for path, extra in [("/jobs", {}), ("/schedules", {"cron": "0 2 * * *", "name": f"n-{field}"})]:
            resp = client.post(path, json={"spec": spec, **extra}, headers=auth)
            assert resp.status_code == 422, resp.text
            err = resp.json()["error"]
            assert err["field"] == field and CODE_ENV in err["allowed"]
    assert client.get("/jobs", headers=auth).json() == []
    monkeypatch.setenv(CODE_ENV, "1")
    # Allowed by the operator, the same spec gets past the check (and is judged on its merits).
    resp = client.post("/jobs", json={"spec": function}, headers=auth)
    assert resp.status_code != 422 or resp.json()["error"]["field"] != "spec.task.function", resp.text


def _listening(port: int) -> list[str]:
    """Local addresses of LISTEN sockets on ``port`` (from /proc/net/tcp and tcp6)."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if int(hexport, 16) == port and state == "0A":
                out.append(addr)
    return out


def test_serve_binds_loopback_by_default(sqlite_url: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "prunetune.cli", "serve", "--db", sqlite_url,
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        import httpx

        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
        addrs = _listening(port)
        assert addrs == ["0100007F"], addrs  # 127.0.0.1, little-endian hex; nothing on 0.0.0.0 or ::
    finally:
        proc.kill()
        proc.wait()
        log.close()
    record("security.binds_loopback", checks=1)
