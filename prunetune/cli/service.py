"""The service's processes: ``prunetune serve`` (the HTTP API) and ``prunetune runner``
(a job runner; ``prunetune worker`` is its former name, kept hidden). ``prunetune scheduler``
is with the schedule commands."""

from __future__ import annotations

import logging
import os
import signal
from typing import Annotated

import typer

from prunetune.cli.console import fail
from prunetune.cli.options import DEFAULT_DB, Db, check_db
from prunetune.errors import PrunetuneError

app = typer.Typer()


@app.command()
def serve(
    db: Db = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    roots: Annotated[list[str] | None, typer.Option(
        help="folder that model, data and export paths must lie in (repeat for several; "
             "default: $PRUNETUNE_ROOTS)")] = None,
    max_body: Annotated[int | None, typer.Option(
        help="largest request body in bytes, larger is a 413 (default: $PRUNETUNE_MAX_BODY or 262144)")] = None,
) -> None:
    """The HTTP API (jobs, trials, fronts, exports); upgrades the database first."""
    import uvicorn

    from prunetune.service.app import MAX_BODY_ENV, create_app
    from prunetune.service.roots import ROOTS_ENV

    if roots:
        os.environ[ROOTS_ENV] = os.pathsep.join(roots)
    if max_body is not None:
        os.environ[MAX_BODY_ENV] = str(max_body)
    check_db(db)
    try:
        api = create_app(db)
    except (PrunetuneError, ValueError) as err:
        fail(str(err))
    uvicorn.run(api, host=host, port=port, log_level="warning")


@app.command("runner")
def runner(
    db: Db = DEFAULT_DB,
    ray_address: Annotated[str | None, typer.Option(help="run evaluations on this Ray cluster")] = None,
    workers: Annotated[int | None, typer.Option(help="Ray workers per job (default: the spec's)")] = None,
    lease: Annotated[float, typer.Option(help="seconds a job stays ours without a heartbeat")] = 30.0,
    poll: Annotated[float, typer.Option(help="seconds between looks for a queued job")] = 1.0,
    max_jobs: Annotated[int | None, typer.Option(help="exit after this many jobs")] = None,
    roots: Annotated[list[str] | None, typer.Option(
        help="folder that the jobs' model, data and strategy paths must lie in, checked again before "
             "they are opened (repeat for several; default: $PRUNETUNE_ROOTS; give the server's)")] = None,
) -> None:
    """A job runner: claims queued jobs (or ones whose runner died) and runs them."""
    from prunetune.service.job_runner import JobRunner
    from prunetune.service.roots import ROOTS_ENV

    logging.getLogger("prunetune").setLevel(logging.INFO)
    if roots:
        os.environ[ROOTS_ENV] = os.pathsep.join(roots)
    check_db(db)
    try:
        job_runner = JobRunner(db, ray_address=ray_address, workers=workers, lease_s=lease, poll_s=poll)
    except (PrunetuneError, ValueError) as err:
        fail(str(err))
    # SIGTERM: finish the job in hand, then exit (SIGKILL leaves it to the lease).
    signal.signal(signal.SIGTERM, lambda *_: job_runner.stop())
    typer.echo(f"runner {job_runner.id} polling {job_runner.store.engine.url!r}", err=True)
    job_runner.run_forever(max_jobs=max_jobs)


# The command's name before the job runner was named so (compose files and scripts may
# still say it); hidden from --help.
app.command("worker", hidden=True)(runner)
