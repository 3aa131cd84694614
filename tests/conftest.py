"""Shared fixtures: the real MiniLM on small splits, real SQLite files, the real PostgreSQL.

Nothing here is mocked. MiniLM is loaded once per session; tests that change its weights
must restore them (the Pruner does).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from helpers import minilm_spec_dict

from prunetune.spec import SearchSpec

PG_ADMIN_URL = os.environ.get("PRUNETUNE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Score caches of the test session live in a temporary folder."""
    old = os.environ.get("PRUNETUNE_CACHE")
    os.environ["PRUNETUNE_CACHE"] = str(tmp_path_factory.mktemp("score-cache"))
    yield
    if old is None:
        os.environ.pop("PRUNETUNE_CACHE", None)
    else:
        os.environ["PRUNETUNE_CACHE"] = old


@pytest.fixture(scope="session")
def minilm_spec() -> SearchSpec:
    return SearchSpec.from_dict(minilm_spec_dict())


@pytest.fixture(scope="session")
def minilm_bench(minilm_spec: SearchSpec):  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 with Wanda scores, built once per session."""
    from prunetune.engine.workbench import build_workbench

    return build_workbench(minilm_spec)


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'prunetune.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL server, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    # pre-ping: a test may restart the server (tests/reliability), killing pooled connections.
    admin = sqlalchemy.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"prunetune_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as err:  # pragma: no cover - server down
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {err}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            # FORCE: a process under test may still be reconnecting while it is stopped.
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
