"""``prunetune scheduler`` (the process that enqueues due runs), ``prunetune schedule``
and ``prunetune schedules``."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from prunetune.cli.console import fail
from prunetune.cli.options import DEFAULT_DB, Db, Token, Url, check_db, client, print_json
from prunetune.errors import PrunetuneError

app = typer.Typer()


@app.command()
def scheduler(
    db: Db = DEFAULT_DB,
    poll: Annotated[float, typer.Option(help="seconds between looks for due schedules")] = 5.0,
    grace: Annotated[float, typer.Option(help="catch_up=skip: a window older than this many seconds is missed")] = 60.0,
) -> None:
    """Enqueue due schedules' runs (any number of schedulers may run: each window runs once)."""
    from prunetune.service.scheduler import Scheduler

    logging.getLogger("prunetune").setLevel(logging.INFO)
    check_db(db)
    try:
        runner = Scheduler(db, poll_s=poll, grace_s=grace)
    except (PrunetuneError, ValueError) as err:
        fail(str(err))
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    typer.echo(f"scheduler {runner.id} polling {runner.store.engine.url!r} every {poll:g} s", err=True)
    runner.run_forever()


@app.command()
def schedule(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="job spec")],
    cron: Annotated[str, typer.Option(help="5-field cron expression, e.g. '0 2 * * *'")],
    name: Annotated[str, typer.Option(help="a unique schedule name")],
    timezone: Annotated[str, typer.Option(help="IANA zone the cron is read in")] = "UTC",
    catch_up: Annotated[str, typer.Option(help="after downtime: once | all | skip")] = "once",
    warm_start: Annotated[bool, typer.Option(help="seed each run with the previous run's front")] = True,
    reseed: Annotated[bool, typer.Option(help="a different seed for each run")] = True,
    url: Url = None, token: Token = None, db: Db = DEFAULT_DB,
) -> None:
    """Register a recurring search; prints the schedule (its next run in UTC)."""
    try:
        row = client(url, token, db, existing=False).schedule(
            spec_path, cron=cron, name=name, timezone=timezone, catch_up=catch_up, warm_start=warm_start,
            reseed=reseed)
    except PrunetuneError as err:
        fail(str(err))
    print_json(row)


@app.command()
def schedules(url: Url = None, token: Token = None, db: Db = DEFAULT_DB) -> None:
    """List schedules with their next run."""
    try:
        rows = client(url, token, db).schedules()
    except PrunetuneError as err:
        fail(str(err))
    print_json(rows)
