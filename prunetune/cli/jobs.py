"""The job commands of ``prunetune``: submit, status, front, report, cancel, export.
Each talks to the service at ``--url`` or, without one, to the database ``--db``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prunetune.cli.console import console, fail, plain_table
from prunetune.cli.options import DEFAULT_DB, Db, JobId, Token, Url, client, print_json
from prunetune.errors import PrunetuneError

app = typer.Typer()


@app.command()
def submit(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="job spec")],
    url: Url = None, token: Token = None, db: Db = DEFAULT_DB,
    wait: Annotated[bool, typer.Option(help="wait for the job with a progress bar")] = False,
) -> None:
    """Queue a job; prints its id alone on the last line."""
    try:
        job = client(url, token, db, existing=False).submit(spec_path)
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
        st = client(url, token, db).get(job)
    except PrunetuneError as err:
        fail(str(err))
    print_json({k: v for k, v in st.raw.items() if k != "spec"})


@app.command()
def front(job: JobId, url: Url = None, token: Token = None, db: Db = DEFAULT_DB) -> None:
    """A job's Pareto front (quality against nonzero parameters)."""
    try:
        points = client(url, token, db).pareto_front(job)
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
        html = client(url, token, db).report(job)
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
        st = client(url, token, db).cancel(job)
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
        service = client(url, token, db)
        if trial is None:
            trial = pick_point(service.pareto_front(job), job=job, best=best, sparsity=sparsity).trial
        written = service.export(job, trial, out.resolve() if not url else out, overwrite=overwrite,
                                 format=format)
    except (PrunetuneError, ValueError) as err:
        fail(str(err))
    typer.echo(f"exported job {job} trial {trial} ({written['format']}, {written['nbytes']} bytes) to")
    _echo_file_sizes(Path(written["path"]))
    typer.echo(written["path"])


def _echo_file_sizes(path: Path) -> None:
    """Each exported file's size on disk, from the export's manifest (when it is local)."""
    from prunetune.pruning.export import MANIFEST

    try:
        files = json.loads((path / MANIFEST).read_text()).get("files", {})
    except (OSError, ValueError):
        return
    for name, size in files.items():
        typer.echo(f"  {size:>12,d} bytes  {name}")
