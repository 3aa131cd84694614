"""The service's commands of ``prunetune``: serve, worker, token create, and the client
side (submit, status, front, cancel, export, schedule). ``prunetune/cli.py`` registers them.

Client-side commands talk to ``--url`` (with ``--token``, or ``PRUNETUNE_URL`` and
``PRUNETUNE_TOKEN`` from the environment) or, without a URL, to the database ``--db``
directly. Tokens are read from the option or the environment and never printed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from prunetune.console import console, fail, plain_table
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


def _check_db(db: str, *, existing: bool = False) -> None:
    """One line and exit when ``--db`` is not a usable database: not a URL, a driver that
    is not installed, a SQLite folder that does not exist (``--db`` never creates one;
    with ``existing``, no database file there either), a server that does not answer."""
    from prunetune.store.db import check_url

    try:
        check_url(db, existing=existing)
    except PrunetuneError as err:
        fail(f"option '--db': {err}")


def _client(url: str | None, token: str | None, db: str, *, existing: bool = True) -> Any:
    """A client on ``--url``, or embedded on ``--db`` (which, with ``existing``, must
    already hold a database: reading commands never create one)."""
    from prunetune.client import Client

    if url:
        return Client(url, token=token)
    _check_db(db, existing=existing)
    return Client.embedded(db)


def _print_json(data: Any) -> None:
    import json

    console.print_json(json.dumps(data, default=str))


def _echo_file_sizes(path: Path) -> None:
    """Each exported file's size on disk, from the export's manifest (when it is local)."""
    import json

    from prunetune.pruning.export import MANIFEST

    try:
        files = json.loads((path / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError):
        return
    for name, size in files.items():
        typer.echo(f"  {size:>12,d} bytes  {name}")


def register(app: typer.Typer) -> None:
    """Add the service commands to the ``prunetune`` app."""
    token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
    app.add_typer(token_app, name="token")

    @token_app.command("create")
    def token_create(
        db: Db = DEFAULT_DB,
        owner: Annotated[str, typer.Option(help="who the token belongs to (jobs are recorded with it)")] = "local",
        admin: Annotated[bool, typer.Option("--admin", help="sees and acts on every owner's jobs and schedules")] = False,
    ) -> None:
        """Create an API token; it is printed once, alone on the last line."""
        from prunetune.store.db import upgrade
        from prunetune.store.tokens import create_token

        _check_db(db)
        try:
            upgrade(db)
            token = create_token(db, owner, admin=admin)
        except PrunetuneError as err:
            fail(str(err))
        typer.echo(f"{'admin ' if admin else ''}token for {owner!r} (stored hashed; shown only now):", err=True)
        typer.echo(token)

    @token_app.command("list")
    def token_list(db: Db = DEFAULT_DB) -> None:
        """Every token's prefix, owner, scope and dates (never the token itself)."""
        from prunetune.store.db import upgrade
        from prunetune.store.tokens import list_tokens

        _check_db(db, existing=True)
        try:
            upgrade(db)
            rows = list_tokens(db)
        except PrunetuneError as err:
            fail(str(err))
        _print_json(rows)

    @token_app.command("revoke")
    def token_revoke(
        prefix: Annotated[str, typer.Argument(metavar="PREFIX", help="the prefix `token list` shows (or the token)")],
        db: Db = DEFAULT_DB,
    ) -> None:
        """Revoke a token: requests with it get 401 from then on."""
        from prunetune.store.db import upgrade
        from prunetune.store.tokens import revoke_token

        _check_db(db, existing=True)
        try:
            upgrade(db)
            done = revoke_token(db, prefix)
        except PrunetuneError as err:
            fail(str(err))
        if not done:
            fail(f"argument 'PREFIX': got {prefix[:16]!r}; no unrevoked token has it (see `prunetune token list`)")
        typer.echo(f"revoked token {prefix[:16]}")

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
        import os

        import uvicorn

        from prunetune.service.app import MAX_BODY_ENV, create_app
        from prunetune.service.roots import ROOTS_ENV

        if roots:
            os.environ[ROOTS_ENV] = os.pathsep.join(roots)
        if max_body is not None:
            os.environ[MAX_BODY_ENV] = str(max_body)
        _check_db(db)
        try:
            api = create_app(db)
        except (PrunetuneError, ValueError) as err:
            fail(str(err))
        uvicorn.run(api, host=host, port=port, log_level="warning")

    @app.command()
    def worker(
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
        import os
        import signal

        from prunetune.service.roots import ROOTS_ENV
        from prunetune.service.worker import Worker

        logging.getLogger("prunetune").setLevel(logging.INFO)
        if roots:
            os.environ[ROOTS_ENV] = os.pathsep.join(roots)
        _check_db(db)
        try:
            runner = Worker(db, ray_address=ray_address, workers=workers, lease_s=lease, poll_s=poll)
        except (PrunetuneError, ValueError) as err:
            fail(str(err))
        # SIGTERM: finish the job in hand, then exit (SIGKILL leaves it to the lease).
        signal.signal(signal.SIGTERM, lambda *_: runner.stop())
        typer.echo(f"worker {runner.id} polling {runner.store.engine.url!r}", err=True)
        runner.run_forever(max_jobs=max_jobs)

    @app.command()
    def submit(
        spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="job spec")],
        url: Url = None, token: Token = None, db: Db = DEFAULT_DB,
        wait: Annotated[bool, typer.Option(help="wait for the job with a progress bar")] = False,
    ) -> None:
        """Queue a job; prints its id alone on the last line."""
        try:
            job = _client(url, token, db, existing=False).submit(spec_path)
            if wait:
                status = job.wait(progress=True)
                typer.echo(f"job {job.id}: {status.state}", err=True)
        except PrunetuneError as err:
            fail(str(err))
        typer.echo(str(job.id))

    @app.command()
    def status(job: JobId, url: Url = None, token: Token = None, db: Db = DEFAULT_DB) -> None:
        """A job's state, progress and best trial so far."""
        try:
            st = _client(url, token, db).get(job)
        except PrunetuneError as err:
            fail(str(err))
        _print_json({k: v for k, v in st.raw.items() if k != "spec"})

    @app.command()
    def front(job: JobId, url: Url = None, token: Token = None, db: Db = DEFAULT_DB) -> None:
        """A job's Pareto front (quality against nonzero parameters)."""
        from rich.table import Table

        try:
            points = _client(url, token, db).pareto_front(job)
        except PrunetuneError as err:
            fail(str(err))
        if not points:
            console.print("no completed trial yet: empty front")
            return
        cols = ["trial", "sparsity", "nonzero_params", f"search_{points[0].quality_name}",
                f"report_{points[0].quality_name}"]
        rows = []
        for p in points:
            rep = p.report.get(p.quality_name)
            rows.append([str(p.trial), f"{p.sparsity:.4f}" if p.sparsity is not None else "",
                         f"{p.nonzero_params:.0f}" if p.nonzero_params is not None else "",
                         f"{p.quality:.4f}", f"{rep:.4f}" if isinstance(rep, float) else ""])
        if not console.is_terminal:  # a log or a pipe: plain columns, never squeezed to "…"
            console.print(f"job {job}: Pareto front\n{plain_table(rows, cols)}",
                          markup=False, highlight=False, soft_wrap=True)
            return
        table = Table(title=f"job {job}: Pareto front")
        for col in cols:
            table.add_column(col, justify="right")
        for row in rows:
            table.add_row(*row)
        console.print(table)

    @app.command()
    def report(
        job: JobId,
        out: Annotated[Path, typer.Option(help="HTML file to write the job report to")],
        url: Url = None, token: Token = None, db: Db = DEFAULT_DB,
    ) -> None:
        """A job's report (front.html: the front, baselines, per-layer allocations)."""
        try:
            html = _client(url, token, db).report(job)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(html, encoding="utf-8")
        except PrunetuneError as err:
            fail(str(err))
        except OSError as err:
            fail(f"option '--out': got {str(out)!r}; a file that can be written ({err.strerror or err})")
        typer.echo(str(out.resolve()))

    @app.command()
    def cancel(job: JobId, url: Url = None, token: Token = None, db: Db = DEFAULT_DB) -> None:
        """Cancel a job: a queued one at once, a running one after its evaluations in flight."""
        try:
            st = _client(url, token, db).cancel(job)
        except PrunetuneError as err:
            fail(str(err))
        typer.echo(f"job {job}: {st.state}" + (" (cancel requested)" if st.state == "running" else ""))

    @app.command()
    def export(
        job: JobId,
        out: Annotated[Path, typer.Option(help="folder to write the pruned model to")],
        trial: Annotated[int | None, typer.Option(help="trial number (see `prunetune front JOB`)")] = None,
        best: Annotated[bool, typer.Option("--best", help="the front point of highest REPORT quality")] = False,
        sparsity: Annotated[float | None, typer.Option(
            help="the best front point at least this sparse (a fraction, e.g. 0.7)")] = None,
        overwrite: Annotated[bool, typer.Option(
            "--overwrite", help="write over the files of a folder that has some (refused without it)")] = False,
        format: Annotated[str, typer.Option(
            "--format", help="unstructured/N:M weights: dense or compressed-tensors")] = "dense",
        url: Url = None, token: Token = None, db: Db = DEFAULT_DB,
    ) -> None:
        """Write one front point's pruned model: by --trial, --best or --sparsity."""
        from prunetune.service.export import pick_point

        chosen = [name for name, given in (("--trial", trial is not None), ("--best", best),
                                           ("--sparsity", sparsity is not None)) if given]
        if len(chosen) != 1:
            fail(f"give exactly one of --trial N, --best or --sparsity X; got {', '.join(chosen) or 'none'}")
        try:
            client = _client(url, token, db)
            if trial is None:
                trial = pick_point(client.pareto_front(job), job=job, best=best, sparsity=sparsity).trial
            written = client.export(job, trial, out.resolve() if not url else out, overwrite=overwrite,
                                    format=format)
        except (PrunetuneError, ValueError) as err:
            fail(str(err))
        typer.echo(f"exported job {job} trial {trial} ({written['format']}, {written['nbytes']} bytes) to")
        _echo_file_sizes(Path(written["path"]))
        typer.echo(written["path"])
