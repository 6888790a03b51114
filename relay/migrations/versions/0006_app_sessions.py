"""app sessions and single-use app signatures

The app's session tokens (stored as their SHA-256) and the digests of the off-chain app signatures
already accepted (each is accepted once, until its deadline). A wallet's notifications indexed by
(account, id): a resumed stream starts at most a bounded number of them back.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_app_sessions_expires_at", "app_sessions", ["expires_at"])
    op.create_table(
        "used_signatures",
        sa.Column("digest", sa.String(66), primary_key=True),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_used_signatures_expires_at", "used_signatures", ["expires_at"])
    op.create_index("ix_notifications_account_id", "notifications", ["account", "id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_account_id", table_name="notifications")
    op.drop_index("ix_used_signatures_expires_at", table_name="used_signatures")
    op.drop_table("used_signatures")
    op.drop_index("ix_app_sessions_expires_at", table_name="app_sessions")
    op.drop_table("app_sessions")
