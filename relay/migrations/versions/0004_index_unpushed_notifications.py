"""index the notifications still to be pushed

The push worker polls for the oldest notifications not yet pushed. Without an index on them it
read the whole table on every poll (every worker interval, in every relay process), a table that
only grows. A partial index holds just the rows still to be pushed: a few at any time.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNPUSHED = sa.text("pushed = 0")


def upgrade() -> None:
    op.create_index(
        "ix_notifications_unpushed", "notifications", ["id"], postgresql_where=UNPUSHED, sqlite_where=UNPUSHED
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_unpushed", table_name="notifications")
