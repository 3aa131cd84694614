"""Schemathesis against the API's own OpenAPI schema, in process over ASGI, with a real
token on a real SQLite database (one real job and its trials, so the job routes have
something to find): no request it generates gets a 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from helpers import digits_spec_dict
from hypothesis import HealthCheck, given, settings
from reliability.figures import record

from prunetune.service.app import create_app
from prunetune.service.job_runner import JobRunner
from prunetune.service.roots import ROOTS_ENV
from prunetune.store.tokens import create_token

pytestmark = pytest.mark.reliability  # thousands of generated cases: the CI reliability set

EXAMPLES = 60  # generated requests per operation (hypothesis max_examples)


def test_no_request_the_schema_allows_gets_a_5xx(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv(ROOTS_ENV, str(root))
    monkeypatch.chdir(root)  # relative export paths the fuzzer invents land inside the root
    app = create_app(sqlite_url)
    token = create_token(sqlite_url)
    from prunetune.service.jobs import JobService

    job = JobService(sqlite_url).submit(digits_spec_dict(budget={"trials": 2}))
    JobRunner(sqlite_url, workers=0, poll_s=0.1).run_one(job["id"])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {token}"}
    cases: dict[str, int] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        cases[label] = _fuzz(operation, label, auth, failures)
    assert failures == [], "\n".join(failures[:10])
    assert len(cases) >= 14
    record("bad_input.schemathesis", schemathesis_cases=sum(cases.values()), operations=len(cases))


def _fuzz(operation: schemathesis.APIOperation, label: str, auth: dict[str, str], failures: list[str]) -> int:
    """Send EXAMPLES generated requests to one operation; returns how many were sent."""
    sent = [0]

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: schemathesis.Case) -> None:
        sent[0] += 1
        response = case.call(headers=auth)
        if response.status_code >= 500:
            failures.append(f"{label} {case.path_parameters} {case.query} {case.body!r:.200} -> "
                            f"{response.status_code} {response.text[:300]}")

    run()
    return sent[0]
