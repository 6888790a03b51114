"""re-index events that several contracts emit

Events with the same signature in several contracts (AccessControl's role events, EIP-712's
domain event) were stored under whichever contract the indexer read last, not the one that
emitted them. Their rows are deleted and the indexer cursor is set back to the first block that
held one: the indexer reads those blocks again and stores only what is missing (every other event
is already there, and its unique key keeps it once), now under the emitting contract.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 13:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARED_EVENTS = ("RoleGranted", "RoleRevoked", "RoleAdminChanged", "EIP712DomainChanged")

chain_events = sa.table("chain_events", sa.column("event", sa.String), sa.column("block_number", sa.BigInteger))
indexer_cursor = sa.table("indexer_cursor", sa.column("next_block", sa.BigInteger))


def upgrade() -> None:
    bind = op.get_bind()
    shared = chain_events.c.event.in_(SHARED_EVENTS)
    first = bind.execute(sa.select(sa.func.min(chain_events.c.block_number)).where(shared)).scalar()
    if first is None:
        return
    bind.execute(sa.delete(chain_events).where(shared))
    bind.execute(sa.update(indexer_cursor).where(indexer_cursor.c.next_block > first).values(next_block=first))


def downgrade() -> None:
    # Nothing to undo: the rows the upgrade deleted are stored again, correctly, by the indexer.
    pass
