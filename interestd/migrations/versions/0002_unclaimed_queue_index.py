"""The unclaimed queue's own index, so that `claim --next` does not slow down as cards are claimed.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_card_unclaimed",
        "card",
        ["occurred_at", "id"],
        unique=False,
        postgresql_where=sa.text("responsible IS NULL AND processed = false"),
        sqlite_where=sa.text("responsible IS NULL AND processed = 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_card_unclaimed", table_name="card")
