"""Options and helpers that several command groups share: the database, the service URL
and token, a job id, and the client the job and schedule commands talk through.

Client-side commands talk to ``--url`` (with ``--token``, or ``PRUNETUNE_URL`` and
``PRUNETUNE_TOKEN`` from the environment) or, without a URL, to the database ``--db``
directly. Tokens are read from the option or the environment and never printed.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from prunetune.cli.console import console, fail
from prunetune.errors import PrunetuneError

DEFAULT_DB = "sqlite:///prunetune.db"

Url = Annotated[str | None, typer.Option(envvar="PRUNETUNE_URL", help="service URL; without it, --db is used directly")]
Token = Annotated[str | None, typer.Option(envvar="PRUNETUNE_TOKEN", help="API token (or PRUNETUNE_TOKEN)", show_default=False)]
Db = Annotated[str, typer.Option(envvar="PRUNETUNE_DB", help="SQLAlchemy URL of the job database")]
_MAX_ID = 2**63 - 1  # job ids are 64-bit in the database


def _job_id(value: int) -> int:
    if not 0 <= value <= _MAX_ID:
        fail(f"argument 'JOB': got {value}; a job id from 0 to {_MAX_ID}")
    return value


JobId = Annotated[int, typer.Argument(metavar="JOB", help="job id", callback=_job_id)]


def check_db(db: str, *, existing: bool = False) -> None:
    """One line and exit when ``--db`` is not a usable database: not a URL, a driver that
    is not installed, a SQLite folder that does not exist (``--db`` never creates one;
    with ``existing``, no database file there either), a server that does not answer."""
    from prunetune.store.db import check_url

    try:
        check_url(db, existing=existing)
    except PrunetuneError as err:
        fail(f"option '--db': {err}")


def client(url: str | None, token: str | None, db: str, *, existing: bool = True) -> Any:
    """A client on ``--url``, or embedded on ``--db`` (which, with ``existing``, must
    already hold a database: reading commands never create one)."""
    from prunetune.client import Client

    if url:
        return Client(url, token=token)
    check_db(db, existing=existing)
    return Client.embedded(db)


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))
