"""``prunetune token create | list | revoke``: the API tokens in the job database."""

from __future__ import annotations

from typing import Annotated

import typer

from prunetune.cli.console import fail
from prunetune.cli.options import DEFAULT_DB, Db, check_db, print_json
from prunetune.errors import PrunetuneError

app = typer.Typer(help="API tokens.", no_args_is_help=True)


@app.command("create")
def create(
    db: Db = DEFAULT_DB,
    owner: Annotated[str, typer.Option(help="who the token belongs to (jobs are recorded with it)")] = "local",
    admin: Annotated[bool, typer.Option("--admin", help="sees and acts on every owner's jobs and schedules")] = False,
) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    from prunetune.store.db import upgrade
    from prunetune.store.tokens import create_token

    check_db(db)
    try:
        upgrade(db)
        token = create_token(db, owner, admin=admin)
    except PrunetuneError as err:
        fail(str(err))
    typer.echo(f"{'admin ' if admin else ''}token for {owner!r} (stored hashed; shown only now):", err=True)
    typer.echo(token)


@app.command("list")
def list_(db: Db = DEFAULT_DB) -> None:
    """Every token's prefix, owner, scope and dates (never the token itself)."""
    from prunetune.store.db import upgrade
    from prunetune.store.tokens import list_tokens

    check_db(db, existing=True)
    try:
        upgrade(db)
        rows = list_tokens(db)
    except PrunetuneError as err:
        fail(str(err))
    print_json(rows)


@app.command("revoke")
def revoke(
    prefix: Annotated[str, typer.Argument(metavar="PREFIX", help="the prefix `token list` shows (or the token)")],
    db: Db = DEFAULT_DB,
) -> None:
    """Revoke a token: requests with it get 401 from then on."""
    from prunetune.store.db import upgrade
    from prunetune.store.tokens import revoke_token

    check_db(db, existing=True)
    try:
        upgrade(db)
        done = revoke_token(db, prefix)
    except PrunetuneError as err:
        fail(str(err))
    if not done:
        fail(f"argument 'PREFIX': got {prefix[:16]!r}; no unrevoked token has it (see `prunetune token list`)")
    typer.echo(f"revoked token {prefix[:16]}")
