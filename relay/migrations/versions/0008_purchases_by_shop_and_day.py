"""index the purchases of a shop by their time, for the shop's daily reward limit

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 21:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_purchases_shop_created", "purchases", ["shop_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_purchases_shop_created", table_name="purchases")
