"""Shared fixtures: an isolated environment, settings from TOML, and databases on SQLite and PostgreSQL.

Servers the tests need (PostgreSQL here, Dovecot and SMTP in their own modules) may be missing on a
developer's machine: the tests that need them are skipped there, but under CI=true a missing server fails.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from interestd.config import Settings, load_settings
from interestd.db import Database, upgrade
from interestd.pipeline import PipelineContext

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("INTERESTD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def require_server(available: bool, what: str) -> None:
    """Skip when a test server is missing, except under CI where that is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is not available, and under CI=true a missing server is a failure")
    pytest.skip(f"{what} is not available")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME and XDG dirs, and no INTERESTD_* variables from outside."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("INTERESTD_") and name != "INTERESTD_TEST_PG_URL":
            monkeypatch.delenv(name)
    for name in ("STATE_DIRECTORY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("TZ", "UTC")
    return home


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)  # as an admin would: interestd warns about config files other users can read
    return path


# --- databases ----------------------------------------------------------------------------------------------

_postgres_state: dict[str, object] = {}


def _postgres_available() -> bool:
    if "ok" not in _postgres_state:
        try:
            import psycopg

            with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
                _postgres_state["ok"] = True
        except Exception as exc:
            _postgres_state["ok"] = False
            _postgres_state["error"] = str(exc)
    return bool(_postgres_state["ok"])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating once is much faster than per test)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A migrated schema of its own in the test database, dropped at the end of the session."""
    require_server(_postgres_available(), f"PostgreSQL at {PG_URL} ({_postgres_state.get('error')})")
    import psycopg

    schema = f"interestd_test_{uuid.uuid4().hex[:10]}"
    plain_url = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain_url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    database = Database(url)
    upgrade(database)
    database.dispose()
    yield url
    with psycopg.connect(plain_url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _empty_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlmodel import SQLModel

    import interestd.models  # noqa: F401

    tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "interestd.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_schema")
    _empty_postgres(url)
    return str(url)


def fresh_database_url(database_url: str, tmp_path: Path, name: str) -> str:
    """An empty database (no tables) on the same engine as `database_url`: a new file, or a new schema."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / f'{name}.db'}"
    import psycopg

    schema = f"{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    _fresh_schemas.append(schema)
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


_fresh_schemas: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _drop_fresh_schemas() -> Iterator[None]:
    """The schemas fresh_database_url made, dropped at the end of the session."""
    yield
    if not _fresh_schemas:
        return
    import psycopg

    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        for schema in _fresh_schemas:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """An empty migrated SQLite database (for tests about behaviour that does not depend on the engine)."""
    path = tmp_path / "interestd.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


# --- the application bundle tests work with -----------------------------------------------------------------


@dataclass
class App:
    """Settings, database and pipeline context, as the CLI builds them, for tests that call services."""

    settings: Settings
    database: Database
    context: PipelineContext
    config_path: Path

    def session(self, write: bool = False):  # type: ignore[no-untyped-def]
        return self.database.session(write=write)


def make_app(tmp_path: Path, database_url: str, config: str = "") -> App:
    from interestd.services import build_context, open_database

    path = write_config(tmp_path / "config.toml", config)
    settings = load_settings(path, environ={**os.environ, "INTERESTD_DATABASE_URL": database_url})
    database = open_database(settings)
    return App(settings, database, build_context(settings), path)


@pytest.fixture
def app(tmp_path: Path, database_url: str) -> Iterator[App]:
    """The application on each engine, with default settings."""
    application = make_app(tmp_path, database_url)
    yield application
    application.database.dispose()


@pytest.fixture
def sqlite_app(tmp_path: Path, sqlite_url: str) -> Iterator[App]:
    application = make_app(tmp_path, sqlite_url)
    yield application
    application.database.dispose()


# --- IMAP: a real Dovecot ------------------------------------------------------------------------------------


def _running_dovecot() -> Iterator[object]:
    from tests.dovecot import Dovecot, available

    require_server(available(), "Dovecot (Debian package dovecot-imapd)")
    server = Dovecot()
    server.start()
    yield server
    server.remove()


@pytest.fixture(scope="session")
def dovecot() -> Iterator[object]:
    """A Dovecot server shared by the session (each test gets its own user, so its own mailbox)."""
    yield from _running_dovecot()


@pytest.fixture
def private_dovecot() -> Iterator[object]:
    """A Dovecot of the test's own, for tests that stop and start the server."""
    yield from _running_dovecot()


@pytest.fixture
def imap_user(dovecot, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:  # type: ignore[no-untyped-def]
    """A fresh mailbox user on the shared Dovecot; the password is in $TEST_IMAP_PASSWORD."""
    from tests.dovecot import PASSWORD

    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    return dovecot.add_user()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a run in which no test passed is a failure, whatever pytest thinks."""
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    passed = len(reporter.stats.get("passed", [])) if reporter else 0
    if passed == 0 and exitstatus == 0:
        session.exitstatus = 1


class SignallingEvaluator:
    """The process's own evaluator, run beside the fetch or the import as worker processes are (`parallel`),
    that tells when it is first given messages."""

    parallel = True

    def __init__(self) -> None:
        import threading

        self.called = threading.Event()
        self.rows = 0

    def __call__(self, rows, context, now):  # type: ignore[no-untyped-def]
        from interestd.pipeline import evaluate_serially

        self.rows += len(rows)
        self.called.set()
        return evaluate_serially(rows, context, now)
