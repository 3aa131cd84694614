"""Alembic environment for prunetune's own tables (Optuna migrates its tables itself)."""

from __future__ import annotations

from alembic import context

from prunetune.store.db import VERSION_TABLE, get_engine
from prunetune.store.models import Base

config = context.config
OURS = set(Base.metadata.tables)


def _include(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # Autogenerate must never touch Optuna's tables in the same database.
    return not (type_ == "table" and name not in OURS)


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "alembic_config() sets sqlalchemy.url"  # internal invariant
    with get_engine(url).connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
            include_object=_include,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():  # pragma: no cover - we only migrate live databases
    raise SystemExit("prunetune migrations run online only: prunetune.store.db.upgrade(url)")
run_migrations_online()
