"""Engines, the session context manager, and schema upgrades.

``session_scope`` commits on success, rolls back on any error and re-raises database
errors as :class:`StoreError` subclasses, so callers never see a driver exception.
``upgrade(url)`` brings a database to the newest schema (ours via Alembic, Optuna's via
Optuna) and is safe to call from several processes starting at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from prunetune.errors import PrunetuneError, shown

VERSION_TABLE = "prunetune_alembic_version"
MIGRATIONS = Path(__file__).with_name("migrations")
# An arbitrary 64-bit key: serialises concurrent upgrades of one PostgreSQL database.
_PG_UPGRADE_LOCK = 0x70_72_75_6E_65


class StoreError(PrunetuneError, RuntimeError):
    """The job database failed or refused an operation."""


class NotFoundError(StoreError, LookupError):
    """No such job / schedule / artifact."""

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {shown(key)} does not exist")


class ConflictError(StoreError):
    """The request conflicts with stored data (a duplicate name, a finished job, ...).

    ``field`` names what conflicts, ``value`` what it got, ``allowed`` what would work.
    """

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"field '{field}': got {shown(value)}; {allowed}")


class DatabaseUnavailableError(StoreError):
    """The database could not be reached or is locked."""


def check_url(url: str, *, existing: bool = False, connect: bool = True) -> None:
    """Check a database URL before anything is loaded or created, with one-line errors:
    a SQLAlchemy URL, a driver that is installed, for SQLite a folder that exists (and
    with ``existing`` a database file there), and with ``connect`` a server that answers.
    Creates nothing.

    Raises:
        StoreError: naming the URL (password hidden) and what is wrong.
        DatabaseUnavailableError: the server did not answer.
    """
    from sqlalchemy import exc

    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError):
        raise StoreError(f"database URL {shown(url)}: not a SQLAlchemy URL; give one such as "
                         "sqlite:///prunetune.db or postgresql+psycopg://user@host/db") from None
    shown_url = parsed.render_as_string(hide_password=True)
    try:
        parsed.get_dialect().import_dbapi()
    except (exc.NoSuchModuleError, ImportError) as err:
        raise StoreError(f"database URL {shown_url!r}: driver {parsed.drivername!r} is not available "
                         f"({type(err).__name__}: {err}); install it or use sqlite:/// or "
                         "postgresql+psycopg://") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            return
        path = Path(database).expanduser()
        if not path.parent.is_dir():
            raise StoreError(f"database URL {shown_url!r}: folder {str(path.parent)!r} does not exist "
                             "(prunetune creates no folders for --db; create it first)")
        if existing and not path.is_file():
            raise StoreError(f"database URL {shown_url!r}: no database file at {str(path)!r}")
        return
    if connect:
        engine = create_engine(url, pool_pre_ping=True)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except exc.SQLAlchemyError as err:
            reason = str(getattr(err, "orig", err) or err).strip().splitlines()
            raise DatabaseUnavailableError(f"cannot connect to {shown_url!r}: "
                                           f"{reason[0] if reason else type(err).__name__}") from None
        finally:
            engine.dispose()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


@functools.lru_cache(maxsize=16)
def get_engine(url: str) -> Engine:
    """One engine per URL per process. SQLite: WAL and a busy timeout, so parallel
    runners wait for each other instead of failing with 'database is locked'."""
    if is_sqlite(url):
        from prunetune.store.studies import ensure_sqlite_parent

        ensure_sqlite_parent(url)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextlib.contextmanager
def session_scope(url_or_engine: str | Engine) -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises.

    Raises:
        ConflictError: a unique constraint or foreign key refused the write.
        DatabaseUnavailableError: the database could not be reached or stayed locked.
        StoreError: any other database error.
    """
    engine = get_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except IntegrityError as err:
        session.rollback()
        raise ConflictError("<row>", None, f"rejected by a database constraint: {err.orig}") from err
    except OperationalError as err:
        session.rollback()
        raise DatabaseUnavailableError(f"database error at {engine.url!r}: {err.orig}") from err
    except SQLAlchemyError as err:
        session.rollback()
        raise StoreError(f"database error: {err}") from err
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def _upgrade_lock(url: str, engine: Engine) -> Iterator[None]:
    if is_sqlite(url):
        database = make_url(url).database
        if not database or database == ":memory:":
            yield
            return
        with open(f"{database}.upgrade-lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_UPGRADE_LOCK})")
        conn.commit()
        try:
            yield
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({_PG_UPGRADE_LOCK})")
            conn.commit()


def upgrade(url: str) -> None:
    """Create or upgrade the job tables (Alembic) and Optuna's tables in ``url``."""
    from alembic import command

    from prunetune.store.studies import open_storage

    engine = get_engine(url)
    try:
        with _upgrade_lock(url, engine):
            command.upgrade(alembic_config(url), "head")
            open_storage(url).remove_session()
    except OperationalError as err:
        raise DatabaseUnavailableError(f"cannot upgrade {make_url(url)!r}: {err.orig}") from err


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()
