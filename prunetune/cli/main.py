"""The ``prunetune`` app: one Typer sub-app per group of commands, merged into one
command line (``prunetune run``, ``prunetune submit``, ``prunetune token create``, ...)."""

from __future__ import annotations

import logging
import sys

import typer

from prunetune.cli import jobs, local, oneshot, schedules, service, tokens

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="AutoML search for pruning policies.")


@app.callback()
def _root() -> None:
    """AutoML search for pruning policies: per-layer sparsity, Pareto fronts, real exports."""


# The order here is the order `prunetune --help` lists the commands in.
app.add_typer(local.app)  # run, dashboard
app.add_typer(service.app)  # serve, runner (worker: its old name, hidden)
app.add_typer(jobs.app)  # submit, status, front, report, cancel, export
app.add_typer(schedules.app)  # scheduler, schedule, schedules
app.add_typer(oneshot.app)  # prune, evaluate
app.add_typer(tokens.app, name="token")  # token create, list, revoke


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
