"""Engine and sessions for SQLite or PostgreSQL, schema version checks, and migrations through alembic.

The engine-specific details (SQLite pragmas and transaction start, PostgreSQL advisory locks, the
insert-or-ignore form, date arithmetic) live here and only here, so the rest of the code speaks one SQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session

from interestd.errors import DatabaseError, SchemaError

log = logging.getLogger(__name__)

# The alembic revision this code expects; tests check it equals the head of migrations/versions.
SCHEMA_REVISION = "0003"
KNOWN_REVISIONS = ("0001", "0002", "0003")
MIGRATIONS_LOCK_ID = 0x696E7464  # "intd": PostgreSQL advisory lock key held while migrating


class Database:
    """One engine and the sessions made from it; `write=True` sessions take SQLite's write lock at BEGIN."""

    def __init__(self, url: str, *, busy_timeout: float = 30.0, pool_size: int = 5, echo: bool = False):
        self.url = url
        self.engine = make_engine(url, busy_timeout=busy_timeout, pool_size=pool_size, echo=echo)
        self.write_engine = self.engine.execution_options(interestd_write=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self, *, write: bool = False) -> Session:
        return Session(self.write_engine if write else self.engine, expire_on_commit=False)

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str, *, busy_timeout: float = 30.0, pool_size: int = 5, echo: bool = False) -> Engine:
    """An engine for the URL; SQLite files get their directory (mode 0700) and owner-only permissions."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            _prepare_sqlite_file(Path(database))
        kwargs["connect_args"] = {"timeout": busy_timeout, "check_same_thread": False}
    elif backend == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800)
        kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "interestd"}
    else:
        raise DatabaseError(f"unsupported database {backend!r}: use sqlite or postgresql")
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseError(f"no driver for {parsed.drivername}: {exc}") from None
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout)
    return engine


def _prepare_sqlite_file(path: Path) -> None:
    path = path.expanduser()
    if not path.parent.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create database directory {path.parent}: {exc.strerror}") from None
    if not path.exists():
        try:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        except OSError as exc:
            raise DatabaseError(f"cannot create database file {path}: {exc.strerror}") from None


def _configure_sqlite(engine: Engine, busy_timeout: float) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over, as the
    # SQLAlchemy documentation recommends, and start write sessions with BEGIN IMMEDIATE so two
    # writers queue on the busy timeout instead of failing when a read lock cannot be upgraded.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        with contextlib.suppress(Exception):
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get("interestd_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def insert_ignoring_duplicates(db_dialect: str, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the given engine (the one place the two dialects differ here)."""
    if db_dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


def seconds_between(later: Any, earlier: Any, dialect: str) -> Any:
    """SQL for the seconds from `earlier` to `later` (two timestamp columns), on either engine."""
    from sqlalchemy import Float, cast, func

    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return cast((func.julianday(later) - func.julianday(earlier)) * 86400.0, Float)


def utc_day(column: Any, dialect: str) -> Any:
    """SQL for the UTC calendar day of a timestamp column, on either engine."""
    from sqlalchemy import Date, cast, func

    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)


def current_revision(engine: Engine) -> str | None:
    """The schema revision stored in the database, or None for a database without interestd tables."""
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            if "alembic_version" not in tables:
                if tables & {"raw_message", "card"}:
                    raise SchemaError(
                        "the database has interestd tables but no schema version: it was not made by "
                        "`interestd db upgrade`"
                    )
                return None
            row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
            return row[0] if row else None
    except OperationalError as exc:
        raise DatabaseError(f"cannot open the database: {_short(exc)}") from None


def check_schema(database: Database, *, create_if_empty: bool = True) -> None:
    """Refuse to run on an outdated or unknown schema; initialise a brand-new empty database."""
    revision = current_revision(database.engine)
    if revision == SCHEMA_REVISION:
        return
    if revision is None:
        if not create_if_empty:
            raise SchemaError("the database is empty: run `interestd db upgrade`")
        log.info("initialising a new database")
        initialise(database)
        return
    if revision in KNOWN_REVISIONS:
        raise SchemaError(
            f"the database schema is outdated ({revision}, this interestd needs {SCHEMA_REVISION}): "
            "run `interestd db upgrade`"
        )
    raise SchemaError(
        f"the database schema {revision} is newer than this interestd knows ({SCHEMA_REVISION}): upgrade interestd"
    )


def initialise(database: Database) -> None:
    """Build a brand-new database: the current tables at once, stamped with this code's revision.

    What running every migration from nothing builds (tests compare both with the models), without loading
    alembic and replaying history: a first command answers sooner. A second process initialising at the same
    moment waits for the first and then finds nothing left to do."""
    from sqlmodel import SQLModel

    import interestd.models  # noqa: F401  (registers the tables)

    try:
        with database.write_engine.connect() as connection, _migration_lock(connection):
            if _revision_on(connection) is None:
                SQLModel.metadata.create_all(connection)
                connection.execute(
                    text(
                        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
                    )
                )
                connection.execute(
                    text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": SCHEMA_REVISION}
                )
            connection.commit()
    except OperationalError as exc:
        raise DatabaseError(f"cannot initialise the database: {_short(exc)}") from None


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(database: Database, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to `revision`; safe to run twice and from two hosts at once. Returns (before, after)."""
    from alembic import command

    try:
        with database.write_engine.connect() as connection, _migration_lock(connection):
            before = _revision_on(connection)
            command.upgrade(alembic_config(connection), revision)
            after = _revision_on(connection)
            connection.commit()
    except OperationalError as exc:
        raise DatabaseError(f"cannot upgrade the database: {_short(exc)}") from None
    return before, after


def _revision_on(connection: Any) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return row[0] if row else None


@contextlib.contextmanager
def _migration_lock(connection: Any) -> Iterator[None]:
    """Serialise migrations: a PostgreSQL advisory lock; on SQLite, one BEGIN IMMEDIATE transaction for all."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATIONS_LOCK_ID})
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATIONS_LOCK_ID})
            connection.commit()
    else:
        connection.begin()  # the write engine makes this BEGIN IMMEDIATE: the second upgrader waits here
        yield


def _short(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


def describe_error(exc: BaseException) -> str:
    """A one-line description of a database driver error."""
    return _short(exc)


# --- many rows at once --------------------------------------------------------------------------------------


def insert_many(session: Any, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT rows (dicts with the same keys) in one executemany.

    On SQLite the rows go to the driver as tuples, each value through its column type's own bind processor:
    SQLAlchemy's per-row parameter handling took longer than SQLite's own work for a batch of cards. A column
    missing from the rows gets its scalar Python default, as SQLAlchemy gives it. Elsewhere, SQLAlchemy."""
    if not rows:
        return
    connection = session.connection()
    plan = _insert_plan(table, tuple(rows[0]), connection.dialect) if connection.dialect.name == "sqlite" else None
    if plan is None:
        connection.execute(_insert(table), list(rows))
        return
    sql, keys, processors, constants = plan
    connection.exec_driver_sql(sql, [(*_values(row, keys, processors), *constants) for row in rows])


@cache
def _insert(table: Any) -> Any:
    """A table's INSERT, built once: building it and its cache key anew is a good part of a one-row insert."""
    return table.insert()


def update_many_by_id(
    session: Any, table: Any, rows: Sequence[Mapping[str, Any]], *, kept_when_none: Sequence[str] = ()
) -> None:
    """UPDATE rows by their `id` (dicts with the same keys, `id` among them) in one executemany; a column in
    `kept_when_none` keeps its value where the row gives None. On SQLite straight through the driver (see
    insert_many); elsewhere through SQLAlchemy."""
    if not rows:
        return
    connection = session.connection()
    keys = tuple(key for key in rows[0] if key != "id")
    if connection.dialect.name != "sqlite":
        from sqlalchemy import bindparam, func, update

        values = {
            key: func.coalesce(bindparam(f"b_{key}", type_=table.c[key].type), table.c[key])
            if key in kept_when_none
            else bindparam(f"b_{key}", type_=table.c[key].type)
            for key in keys
        }
        statement = update(table).where(table.c.id == bindparam("b_id")).values(values)
        connection.execute(statement, [{f"b_{key}": value for key, value in row.items()} for row in rows])
        return
    assignments = ", ".join(
        f'"{key}" = coalesce(?, "{key}")' if key in kept_when_none else f'"{key}" = ?' for key in keys
    )
    processors = [_bind_processor(table.c[key], connection.dialect) for key in keys]
    connection.exec_driver_sql(
        f'UPDATE "{table.name}" SET {assignments} WHERE id = ?',
        [(*_values(row, keys, processors), row["id"]) for row in rows],
    )


_INSERT_PLANS: dict[tuple[str, tuple[str, ...]], Any] = {}


def _insert_plan(table: Any, keys: tuple[str, ...], dialect: Any) -> Any:
    """(SQL, keys, their bind processors, the processed defaults of the other columns), or None when a
    missing column's default is not a plain value (SQLAlchemy then does the insert)."""
    cache_key = (table.name, keys)
    if cache_key not in _INSERT_PLANS:
        defaults: list[tuple[str, Any]] = []
        plan: Any = None
        for column in table.columns:
            if column.name in keys or column.default is None:
                continue
            if not column.default.is_scalar:
                break
            defaults.append((column.name, column.default.arg))
        else:
            names = list(keys) + [name for name, _ in defaults]
            columns = ", ".join(f'"{name}"' for name in names)
            sql = f'INSERT INTO "{table.name}" ({columns}) VALUES ({", ".join("?" * len(names))})'
            processors = [_bind_processor(table.c[key], dialect) for key in keys]
            constants = []
            for name, value in defaults:
                process = _bind_processor(table.c[name], dialect)
                constants.append(process(value) if process else value)
            plan = (sql, keys, processors, constants)
        _INSERT_PLANS[cache_key] = plan
    return _INSERT_PLANS[cache_key]


def _values(row: Mapping[str, Any], keys: Sequence[str], processors: Sequence[Any]) -> list[Any]:
    return [process(row[key]) if process else row[key] for key, process in zip(keys, processors, strict=True)]


def _bind_processor(column: Any, dialect: Any) -> Any:
    return column.type.dialect_impl(dialect).bind_processor(dialect)
