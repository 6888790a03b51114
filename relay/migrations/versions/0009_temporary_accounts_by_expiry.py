"""index temporary accounts by expiry, so the expired ones can be deleted

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 22:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_temporary_accounts_expires_at", "temporary_accounts", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_temporary_accounts_expires_at", table_name="temporary_accounts")
