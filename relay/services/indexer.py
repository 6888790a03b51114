"""Event indexer: stores every event of the deployed contracts, a confirmation depth behind the
head, with what the operator page needs (shops and their totals, withdrawals).

Each step stores a block range's events and the advanced cursor in one transaction, so a restart
resumes where the last commit ended: no gap, no duplicate. The cursor row is locked (`SKIP LOCKED`
on PostgreSQL): with several relay instances one indexes while the others skip.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from relay.chain import Chain
from relay.chain.abi import Event, hex_bytes
from relay.db import Database, insert_if_absent
from relay.models import ChainEvent, IndexerCursor, Shop, Withdrawal

log = logging.getLogger(__name__)

CURSOR = "events"
CHAIN_EVENTS = cast(Table, ChainEvent.__table__)
PAYMENT_EVENTS = {"PaymentClosed", "CancelOpened"}  # stored with their payment's shop; change its used total
# Events after which a shop's row is read again from the registry (at their block).
SHOP_EVENTS = {"ShopAdded", "ShopUpdated", "ShopTransferred", "ShopTotalsCorrected", "ProvisionRecorded"}
SHOP_EVENTS |= {"WithdrawalOpened", "WithdrawalClosed", *PAYMENT_EVENTS}
SHOP_AMOUNTS = ("provided_point", "used_point", "settled_point", "withdrawn_point", "withdraw_amount")


def _plain(value: Any) -> Any:
    """An event argument as JSON keeps it exactly."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if abs(value) > 2**53 else value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Indexer:
    def __init__(self, db: Database, chain: Chain, start_block: int, confirmations: int, batch: int = 500) -> None:
        self.db = db
        self.chain = chain
        self.start_block = start_block
        self.confirmations = confirmations
        self.batch = batch
        # Keyed by the emitting contract too: several contracts emit events of one signature (RoleGranted, ...).
        self.events: dict[tuple[str, bytes], tuple[str, Event]] = {
            (contract.address.lower(), topic): (name, event)
            for name, contract in chain.contracts.items()
            for topic, event in contract.topics.items()
        }

    def run_once(self) -> int:
        """Indexes the next block range, if any is confirmed; returns the number of events stored."""
        safe = self.chain.block_number() - self.confirmations
        lock = select(IndexerCursor).where(IndexerCursor.name == CURSOR).with_for_update(skip_locked=True)
        with self.db.session() as session:
            cursor = session.execute(lock).scalar_one_or_none()
            if cursor is None and session.get(IndexerCursor, CURSOR) is None:  # the first step (maybe of several)
                session.execute(insert_if_absent(self.db, IndexerCursor, name=CURSOR, next_block=self.start_block))
                cursor = session.execute(lock).scalar_one_or_none()
            if cursor is None or cursor.next_block > safe:
                return 0  # another instance holds the cursor, or no new block is confirmed
            start, end = cursor.next_block, min(safe, cursor.next_block + self.batch - 1)
            # The unique key forbids storing a log twice: skip those already stored, with one query.
            stored = select(ChainEvent.tx_hash, ChainEvent.log_index).where(ChainEvent.block_number.between(start, end))
            seen = {tuple(row) for row in session.execute(stored)}
            rows = [
                row
                for entry in self.chain.logs(start, end)
                if (row := self._row(entry)) is not None and (row["tx_hash"], row["log_index"]) not in seen
            ]
            shops = self._apply(session, rows)
            # One multi-row INSERT: flushing a busy range's events as ORM objects cost more CPU
            # than everything else the indexer does.
            if rows:
                session.connection().execute(insert(CHAIN_EVENTS), rows)
            for shop_id in shops:
                self._refresh_shop(session, shop_id, end)
            cursor.next_block = end + 1
        if rows:
            log.debug("indexed %d events in blocks %d-%d", len(rows), start, end)
        return len(rows)

    def _row(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        """The chain_events row of a log as eth_getLogs answers it (None for a log of no known event)."""
        topic = hex_bytes(entry["topics"][0]) if entry["topics"] else b""
        known = self.events.get((entry["address"].lower(), topic))
        if known is None:
            return None
        contract, event = known
        args = {key: _plain(value) for key, value in event.decode(entry).items()}
        account = args.get("account")
        return {
            "block_number": int(entry["blockNumber"], 16),
            "log_index": int(entry["logIndex"], 16),
            "tx_hash": entry["transactionHash"].lower(),
            "contract": contract,
            "event": event.name,
            "payment_id": args.get("paymentId"),
            "shop_id": args.get("shopId"),
            "account": account if isinstance(account, str) else None,  # checksummed by the decoder
            "args": args,
        }

    @staticmethod
    def _apply(session: Session, rows: list[dict[str, Any]]) -> set[str]:
        """Gives payment events their shop and records withdrawals; returns the shops the rows change."""
        opened: dict[str, str] = {}  # the shop of each payment opened in these rows
        shops: set[str] = set()
        for row in rows:
            name, payment_id, tx, block = row["event"], row["payment_id"], row["tx_hash"], row["block_number"]
            if name == "PaymentOpened":
                opened[payment_id] = row["shop_id"]
            elif name in PAYMENT_EVENTS:
                opening = select(ChainEvent.shop_id).where(
                    ChainEvent.payment_id == payment_id, ChainEvent.event == "PaymentOpened"
                )
                row["shop_id"] = opened.get(payment_id) or session.execute(opening).scalar()
            shop_id = row["shop_id"]
            if shop_id is not None and name in SHOP_EVENTS:
                shops.add(shop_id)
            if name == "WithdrawalOpened":
                amount = str(row["args"]["amount"])
                session.add(Withdrawal(shop_id=shop_id, amount=amount, opened_tx=tx, opened_block=block))
            elif name == "WithdrawalClosed":
                withdrawal = session.execute(
                    select(Withdrawal)
                    .where(Withdrawal.shop_id == shop_id, Withdrawal.closed_tx.is_(None))
                    .order_by(Withdrawal.id.desc())
                ).scalar()
                if withdrawal is not None:
                    withdrawal.closed_tx, withdrawal.closed_block = tx, block
        return shops

    def _refresh_shop(self, session: Session, shop_id: str, block: int) -> None:
        """Reads the shop from the registry as of `block` (not the head), so the row matches the events."""
        info = self.chain.shop(shop_id, block)
        amounts = {name: str(getattr(info, name)) for name in SHOP_AMOUNTS}
        session.merge(
            Shop(
                shop_id=shop_id,
                name=info.name,
                owner=info.account,
                provide_wait_time=info.provide_wait_time,
                provide_percent=info.provide_percent,
                block_number=block,
                **amounts,
            )
        )
