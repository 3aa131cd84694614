"""Commands that work in this process on a database: ``prunetune run`` (one search with
live progress) and ``prunetune dashboard``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from prunetune.cli.console import console, fail, plain_table
from prunetune.cli.options import DEFAULT_DB
from prunetune.errors import PrunetuneError

app = typer.Typer()


def _cell(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else "" if v is None else str(v)


def print_front(front: list[dict[str, Any]], quality: str, dense: dict[str, float]) -> None:
    """The front as a rich table on a terminal; elsewhere a plain table of the columns a
    reader needs (trial, sparsity, nonzero parameters, REPORT quality): the rest is in
    front.csv / front.json."""
    table = Table(title=f"Pareto front ({quality} on the REPORT split)")
    if not front:
        console.print("no completed trial: empty front")
        return
    ref = ", ".join(f"{k}={v:.4f}" for k, v in dense.items() if k != "pairs")
    if not console.is_terminal:
        cols = ["trial", "sparsity", "nonzero_params", f"report_{quality}"]
        text = plain_table([[_cell(row.get(c)) for c in cols] for row in front], cols)
        console.print(f"Pareto front ({quality} on the REPORT split)\n{text}\ndense reference (REPORT split): {ref}",
                      markup=False, highlight=False, soft_wrap=True)
        return
    for key in front[0]:
        table.add_column(key, justify="right")
    for row in front:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)
    console.print(f"dense reference (REPORT split): {ref}")


def print_levels(rows: list[dict[str, Any]], quality: str) -> None:
    """The front read at each front level (the best REPORT point at that size or smaller)
    beside uniform at that level, one line each."""
    if not rows:
        return
    lines = [f"front at the front levels ({quality}, REPORT split, best at that size or smaller):"]
    for row in rows:
        front, uniform = row.get("front"), row.get("uniform")
        text = f"  sparsity {row['level']:g}: front " + ("-" if front is None else
                                                        f"{front:.4f} (trial {row['trial']})")
        if uniform is not None:
            text += f", uniform {uniform:.4f}" + ("" if front is None else f" ({front - uniform:+.4f})")
        lines.append(text)
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="job spec")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the trial database")] = DEFAULT_DB,
    workers: Annotated[int | None, typer.Option(help="Ray workers; 0 = in this process")] = None,
    ray_address: Annotated[str | None, typer.Option(help="join this Ray cluster")] = None,
    out: Annotated[Path | None, typer.Option(help="folder for front.csv/json/html, trials.csv")] = None,
    study: Annotated[str | None, typer.Option(help="study name (resumes it if it exists)")] = None,
) -> None:
    """Run one search job in this process with live progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from prunetune.report.outputs import front_rows
    from prunetune.service.local_run import run_recorded
    from prunetune.spec import SearchSpec

    try:
        spec = SearchSpec.from_yaml(spec_path)
    except PrunetuneError as err:
        fail(str(err))
    from prunetune.store.db import check_url

    try:  # before the model loads: a bad --db fails at once, not after the loading
        check_url(db)
    except PrunetuneError as err:
        fail(f"option '--db': {err}")
    if workers is not None and workers < 0:
        fail(f"option '--workers': got {workers}; must be >= 0")
    best: list[float] = []
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[best]}"), TimeElapsedColumn(), console=console, transient=False,
    ) as bar:
        task_id = bar.add_task(f"{spec.name}: loading", total=spec.budget.trials, best="")

        def progress(done: int, total: int, result: Any) -> None:
            if result is not None and result.ok:
                best.append(result.quality)
            label = f"best search {max(best):.4f}" if best else ""
            bar.update(task_id, completed=done, total=total, description=f"{spec.name}: searching", best=label)

        try:
            job_id, outcome = run_recorded(spec, db=db, study_name=study, out_dir=out, workers=workers,
                                           ray_address=ray_address, on_progress=progress)
        except PrunetuneError as err:
            fail(str(err))
    print_front(front_rows(outcome), outcome.quality_name, outcome.dense)
    print_levels(list(outcome.extra.get("levels") or []), outcome.quality_name)  # type: ignore[call-overload]
    failed = sum(1 for r in outcome.results if not r.ok)
    console.print(
        f"{len(outcome.results)} trials ({failed} failed) in {outcome.wall_seconds:.1f} s; "
        f"study {outcome.extra['study_name']!r} in {db}" + (f"; outputs in {out}/" if out else ""),
        soft_wrap=True,
    )
    # The last line names the job: `prunetune front/export/status JOB --db ...` work on it.
    console.print(f"job {job_id} (prunetune export {job_id} --best --out DIR --db {db})",
                  markup=False, highlight=False, soft_wrap=True)


@app.command()
def dashboard(
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the service database")] = DEFAULT_DB,
    host: Annotated[str, typer.Option(help="interface to bind; 0.0.0.0 exposes it")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8080,
) -> None:
    """optuna-dashboard on the job database: every job's study, objectives named,
    per-layer sparsities as parameters, strategy and REPORT-split scores as attributes."""
    try:
        from optuna_dashboard import run_server
    except ImportError:  # pragma: no cover - a declared dependency
        fail("the dashboard needs optuna-dashboard: pip install optuna-dashboard")
    from prunetune.report.dashboard import open_dashboard_storage

    run_server(open_dashboard_storage(db), host=host, port=port)
