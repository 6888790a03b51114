"""shop registration requests waiting for an operator's approval

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "shop_requests",
        sa.Column("shop_id", sa.String(66), primary_key=True),
        sa.Column("owner", sa.String(42), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provide_wait_time", sa.BigInteger(), nullable=False),
        sa.Column("provide_percent", sa.Integer(), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.Float(), nullable=False),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("decided_by", sa.String(100), nullable=True),
    )
    op.create_index("ix_shop_requests_owner", "shop_requests", ["owner"])
    op.create_index("ix_shop_requests_client_ip", "shop_requests", ["client_ip"])


def downgrade() -> None:
    op.drop_table("shop_requests")
