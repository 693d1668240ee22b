"""Schema migrations: the code's revision is alembic's head, models match migrations, old schemas are refused."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlmodel import SQLModel

import interestd.models  # noqa: F401
from interestd.db import KNOWN_REVISIONS, SCHEMA_REVISION, Database, alembic_config, check_schema, upgrade
from interestd.errors import SchemaError


def test_schema_revision_is_the_head_of_the_migrations() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_current_head() == SCHEMA_REVISION
    assert [rev.revision for rev in script.walk_revisions()][::-1] == list(KNOWN_REVISIONS)


# Indexes in the feed's order (DESC columns) and partial ones: alembic compares neither the order nor the
# condition, so these are checked by their SQL.
DESCENDING_INDEXES = {
    "ix_card_feed": "(processed, occurred_at desc, id desc)",
    "ix_card_responsible_feed": "(responsible, processed, occurred_at desc, id desc)",
}
PARTIAL_INDEXES = {
    "ix_card_unclaimed": {
        "sqlite": "(occurred_at, id) where responsible is null and processed = 0",
        "postgresql": "(occurred_at, id) where ((responsible is null) and (processed = false))",
    }
}


def _differences(connection) -> list:  # type: ignore[no-untyped-def]
    def comparable(obj, name, kind, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
        return not (kind == "index" and name in DESCENDING_INDEXES)

    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": comparable})
    differences = compare_metadata(context, SQLModel.metadata)
    if connection.dialect.name == "sqlite":
        rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all()
    else:
        rows = connection.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'card'")).all()
    found = {name: " ".join((sql or "").lower().replace('"', "").split()) for name, sql in rows}
    expected = {**DESCENDING_INDEXES, **{name: sql[connection.dialect.name] for name, sql in PARTIAL_INDEXES.items()}}
    for name, sql in expected.items():
        if not found.get(name, "").endswith(sql):
            differences.append(("index", name, found.get(name)))
    return differences


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    database = Database(database_url)
    with database.engine.connect() as connection:
        differences = _differences(connection)
    database.dispose()
    assert differences == []


def test_upgrade_twice_changes_nothing(database_url: str) -> None:
    database = Database(database_url)
    before, after = upgrade(database)
    assert before == after == SCHEMA_REVISION
    database.dispose()


def test_an_unknown_newer_schema_is_refused(database_url: str) -> None:
    database = Database(database_url)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        with pytest.raises(SchemaError, match="newer than this interestd knows"):
            check_schema(database)
    finally:
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": SCHEMA_REVISION})
        database.dispose()


def test_a_new_empty_sqlite_database_is_initialised(tmp_path) -> None:  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path / 'sub' / 'new.db'}")
    check_schema(database)
    assert (tmp_path / "sub" / "new.db").stat().st_mode & 0o077 == 0  # readable by its owner only
    with pytest.raises(SchemaError, match="database is empty"):
        check_schema(Database(f"sqlite:///{tmp_path / 'other.db'}"), create_if_empty=False)
    database.dispose()


def test_a_new_database_is_built_as_the_migrations_build_it(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """A brand-new database gets the models' tables at once (not by replaying every migration): the same schema
    as the migrations build, stamped with the head revision, so a later upgrade finds nothing to do."""
    from tests.conftest import fresh_database_url

    database = Database(fresh_database_url(database_url, tmp_path, "initialised"))
    check_schema(database)
    with database.engine.connect() as connection:
        assert _differences(connection) == []
    assert upgrade(database) == (SCHEMA_REVISION, SCHEMA_REVISION)
    check_schema(database, create_if_empty=False)
    database.dispose()


def test_two_processes_initialising_one_new_database_at_once_both_succeed(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import fresh_database_url

    url = fresh_database_url(database_url, tmp_path, "twice")
    databases = [Database(url), Database(url)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(check_schema, databases))  # raises what either raised
    with databases[0].engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [SCHEMA_REVISION]
        assert _differences(connection) == []
    for database in databases:
        database.dispose()


@pytest.mark.parametrize("revision", KNOWN_REVISIONS)
def test_migrations_apply_from_every_released_schema(tmp_path, database_url: str, revision: str) -> None:  # type: ignore[no-untyped-def]
    """A database made by any earlier release (each known revision) upgrades to exactly the current models."""
    from tests.conftest import fresh_database_url

    database = Database(fresh_database_url(database_url, tmp_path, f"from_{revision}"))
    assert upgrade(database, revision) == (None, revision)
    before, after = upgrade(database)
    assert (before, after) == (revision, SCHEMA_REVISION)
    with database.engine.connect() as connection:
        assert _differences(connection) == []
    database.dispose()


def test_raw_bytes_move_to_their_own_table_and_back_unchanged(tmp_path, database_url: str) -> None:  # type: ignore[no-untyped-def]
    """0003 moves every kept message's bytes from raw_message to raw_body (none for a message whose bytes were
    not kept), cards keep pointing at their messages, and the downgrade puts the bytes back."""
    from tests.conftest import fresh_database_url

    database = Database(fresh_database_url(database_url, tmp_path, "raw_body"))
    upgrade(database, "0002")
    kept = "Привет".encode("cp1251") + bytes(range(256)) * 80  # every byte value, 20 KB
    with database.engine.begin() as connection:
        for number, raw in ((1, kept), (2, None)):
            connection.execute(
                text(
                    "INSERT INTO raw_message (id, message_id, content_hash, origin, raw, size, stored_at, status, "
                    "attempts) VALUES (:id, :mid, :hash, 'test', :raw, 1, CURRENT_TIMESTAMP, 'card', 1)"
                ),
                {"id": number, "mid": f"<m{number}@test>", "hash": f"{number:064d}", "raw": raw},
            )
        connection.execute(
            text(
                "INSERT INTO card (id, raw_message_id, message_id, parser, received_at, occurred_at, source_type, "
                "action, text, processed, replied, updated_at) VALUES (7, 1, '<m1@test>', 'test', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP, 'email', 'request', 'Здравствуйте', false, false, CURRENT_TIMESTAMP)"
            )
        )
    assert upgrade(database) == ("0002", SCHEMA_REVISION)
    with database.engine.connect() as connection:
        bodies = connection.execute(text("SELECT raw_message_id, raw FROM raw_body")).all()
        assert [(raw_id, bytes(raw)) for raw_id, raw in bodies] == [(1, kept)]
        assert connection.execute(text("SELECT raw_message_id FROM card WHERE id = 7")).scalar() == 1
        assert _differences(connection) == []
    with database.engine.connect() as connection:
        command.downgrade(alembic_config(connection), "0002")
        connection.commit()
    with database.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, raw FROM raw_message ORDER BY id")).all()
    assert [(raw_id, raw if raw is None else bytes(raw)) for raw_id, raw in rows] == [(1, kept), (2, None)]
    database.dispose()
