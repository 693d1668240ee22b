"""A raw message's bytes move to a table of their own (raw_body).

SQLite rewrites a whole row whenever any of its columns changes: with the bytes (15 KB on average) in the
raw_message row, writing a message's attempt count and then its outcome copied its bytes twice more. The bytes
never change, the status does: they now live apart, and a message whose bytes were not kept has no raw_body row.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "raw_body",
        sa.Column("raw_message_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["raw_message_id"], ["raw_message.id"]),
        sa.PrimaryKeyConstraint("raw_message_id"),
    )
    op.execute("INSERT INTO raw_body (raw_message_id, raw) SELECT id, raw FROM raw_message WHERE raw IS NOT NULL")
    # A plain ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), not a batch copy of the table: the cards
    # point at raw_message, and the copy would have to drop and recreate the table they point at.
    op.drop_column("raw_message", "raw")


def downgrade() -> None:
    op.add_column("raw_message", sa.Column("raw", sa.LargeBinary(), nullable=True))
    op.execute("UPDATE raw_message SET raw = (SELECT raw FROM raw_body WHERE raw_body.raw_message_id = raw_message.id)")
    op.drop_table("raw_body")
