"""No token and no database password reaches a log: a real job submitted over the API and
run by a runner, on PostgreSQL through a URL with a password, plus the failures that
print URLs (an unreachable database), with every logger at DEBUG."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from helpers import digits_spec_dict
from reliability.figures import record

from prunetune.errors import PrunetuneError
from prunetune.service.app import create_app
from prunetune.service.job_runner import JobRunner
from prunetune.store.db import upgrade
from prunetune.store.tokens import create_token

PASSWORD = "s3cret-Pa55word-xyz"  # the server trusts loopback, so any password connects


def test_no_token_or_password_in_logs(postgres_url: str, caplog: pytest.LogCaptureFixture,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    url = postgres_url.replace("postgres@", f"postgres:{PASSWORD}@")
    caplog.set_level(logging.DEBUG)
    upgrade(url)
    token = create_token(url, owner="alice")
    with TestClient(create_app(url)) as client:
        auth = {"Authorization": f"Bearer {token}"}
        job = client.post("/jobs", json={"spec": digits_spec_dict(budget={"trials": 2})}, headers=auth).json()
        JobRunner(url, workers=0, poll_s=0.1).run_one(job["id"])
        assert client.get(f"/jobs/{job['id']}", headers=auth).json()["state"] == "succeeded"
        assert client.get("/jobs", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    unreachable = url.replace("127.0.0.1:5432", "127.0.0.1:1")
    with pytest.raises(PrunetuneError) as err:
        upgrade(unreachable)
    logging.getLogger("prunetune").error("upgrade failed: %s", err.value)
    with pytest.raises(PrunetuneError) as err2:
        JobRunner(unreachable, migrate=False).store.claim("w", 5.0)
    logging.getLogger("prunetune").error("claim failed: %s", err2.value)
    out, errs = capfd.readouterr()
    text = caplog.text + out + errs + str(err.value) + str(err2.value)
    assert len(caplog.records) > 0
    secret = token.split("_", 2)[2]
    assert PASSWORD not in text and secret not in text
    record("security.no_secrets_in_logs", checks=2, log_records=len(caplog.records))
