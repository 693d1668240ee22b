"""Alembic environment: runs migrations on the connection interestd hands over (never builds its own engine)."""

from alembic import context
from sqlmodel import SQLModel

import interestd.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `interestd db upgrade`, which passes the connection")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    # SQLite's DDL is transactional too: run every migration in the one BEGIN IMMEDIATE transaction, so a
    # second `interestd db upgrade` waits for the first and then finds nothing left to do.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
