"""the reward a purchase is expected to earn, for the relay's reward limits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("purchases") as batch:
        batch.add_column(sa.Column("expected_point", sa.String(80), nullable=True))
    op.create_index("ix_purchases_kiosk_created", "purchases", ["kiosk_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_purchases_kiosk_created", table_name="purchases")
    with op.batch_alter_table("purchases") as batch:
        batch.drop_column("expected_point")
