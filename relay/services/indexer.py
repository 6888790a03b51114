"""Event indexer: follows every event of the deployed contracts from a stored block cursor, a
confirmation depth behind the head, and writes them to the database together with what the
operator page needs (shops and their totals, withdrawals).

Each step reads a block range and stores its events and the advanced cursor in one transaction,
so a restart resumes exactly where the last committed step ended: no gap, no duplicate. The cursor
row is locked (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so with several relay instances one
indexes while the others skip. An unreachable node only delays the next step.
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
# Events that change a shop's row (settings, owner, totals): the shop is read again at their block.
SHOP_EVENTS = {
    "ShopAdded",
    "ShopUpdated",
    "ProvisionRecorded",
    "WithdrawalOpened",
    "WithdrawalClosed",
    "ShopTotalsCorrected",
    "ShopTransferred",
}
PAYMENT_TOTAL_EVENTS = {"PaymentClosed", "CancelOpened"}  # change a shop's used total (a reverted cancel closes again)
# A log as eth_getLogs answers it: addresses, hashes, topics, data and numbers as hex strings.
RawLog = dict[str, Any]


def _plain(value: Any) -> Any:
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
        # (contract address, topic) -> (contract name, event): several contracts emit events of
        # the same signature (RoleGranted, ...), and each is stored under the contract that emitted it.
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
            if cursor is None:
                if session.get(IndexerCursor, CURSOR) is not None:
                    return 0  # another instance holds it
                # The first step ever: instances starting together must not both insert the row.
                session.execute(insert_if_absent(self.db, IndexerCursor, name=CURSOR, next_block=self.start_block))
                cursor = session.execute(lock).scalar_one_or_none()
                if cursor is None:
                    return 0  # another instance created it and holds it
            start = cursor.next_block
            if start > safe:
                return 0
            end = min(safe, start + self.batch - 1)
            logs: list[RawLog] = self.chain.logs(start, end)
            # Events already stored (a step that read them and then failed to commit its cursor
            # cannot leave any, but the unique key is the guarantee): one query for the range.
            seen = {
                (tx, index)
                for tx, index in session.execute(
                    select(ChainEvent.tx_hash, ChainEvent.log_index).where(ChainEvent.block_number.between(start, end))
                )
            }
            touched_shops: set[str] = set()
            shop_of_payment: dict[str, str] = {}
            rows = [
                row
                for entry in logs
                if (row := self._store(session, entry, seen, touched_shops, shop_of_payment)) is not None
            ]
            # One multi-row INSERT for the range (as ORM objects, flushing a busy range's events
            # one by one cost more CPU than everything else the indexer does).
            if rows:
                session.connection().execute(insert(CHAIN_EVENTS), rows)
            stored = len(rows)
            for shop_id in touched_shops:
                self._refresh_shop(session, shop_id, end)
            cursor.next_block = end + 1
        if stored:
            log.debug("indexed %d events in blocks %d-%d", stored, start, end)
        return stored

    def _store(
        self,
        session: Session,
        entry: RawLog,
        seen: set[tuple[str, int]],
        touched_shops: set[str],
        shop_of_payment: dict[str, str],
    ) -> dict[str, Any] | None:
        """The row of a log to store (None for a log of no known event, or one already stored),
        and what it changes: the shops it touches, an opened or closed withdrawal."""
        topic = hex_bytes(entry["topics"][0]) if entry["topics"] else b""
        known = self.events.get((entry["address"].lower(), topic))
        if known is None:
            return None
        contract, decoder = known
        name = decoder.name
        tx_hash = entry["transactionHash"].lower()
        log_index = int(entry["logIndex"], 16)
        if (tx_hash, log_index) in seen:
            return None
        args = {key: _plain(value) for key, value in decoder.decode(entry).items()}
        payment_id = args.get("paymentId")
        shop_id = args.get("shopId")
        if name == "PaymentOpened" and payment_id is not None and shop_id is not None:
            shop_of_payment[payment_id] = shop_id
        if shop_id is None and name in PAYMENT_TOTAL_EVENTS and payment_id is not None:
            shop_id = shop_of_payment.get(payment_id) or self._shop_of_payment(session, payment_id)
        account = args.get("account")
        block = int(entry["blockNumber"], 16)
        row = {
            "block_number": block,
            "log_index": log_index,
            "tx_hash": tx_hash,
            "contract": contract,
            "event": name,
            "payment_id": payment_id,
            "shop_id": shop_id,
            "account": account if isinstance(account, str) else None,  # checksummed by the decoder
            "args": args,
        }
        if shop_id is not None and (name in SHOP_EVENTS or name in PAYMENT_TOTAL_EVENTS):
            touched_shops.add(shop_id)
        if name == "WithdrawalOpened":
            session.add(Withdrawal(shop_id=shop_id, amount=str(args["amount"]), opened_tx=tx_hash, opened_block=block))
        elif name == "WithdrawalClosed" and shop_id is not None:
            self._close_withdrawal(session, shop_id, tx_hash, block)
        return row

    @staticmethod
    def _shop_of_payment(session: Session, payment_id: str) -> str | None:
        return session.execute(
            select(ChainEvent.shop_id).where(ChainEvent.payment_id == payment_id, ChainEvent.event == "PaymentOpened")
        ).scalar()

    @staticmethod
    def _close_withdrawal(session: Session, shop_id: str, tx_hash: str, block: int) -> None:
        open_withdrawal = session.execute(
            select(Withdrawal)
            .where(Withdrawal.shop_id == shop_id, Withdrawal.closed_tx.is_(None))
            .order_by(Withdrawal.id.desc())
        ).scalar()
        if open_withdrawal is not None:
            open_withdrawal.closed_tx = tx_hash
            open_withdrawal.closed_block = block

    def _refresh_shop(self, session: Session, shop_id: str, block: int) -> None:
        """Reads the shop from the registry as of `block` (not the head), so the row matches the events."""
        info = self.chain.shop(shop_id, block)
        values = {
            "name": info.name,
            "owner": info.account,
            "provide_wait_time": info.provide_wait_time,
            "provide_percent": info.provide_percent,
            "provided_point": str(info.provided_point),
            "used_point": str(info.used_point),
            "settled_point": str(info.settled_point),
            "withdrawn_point": str(info.withdrawn_point),
            "withdraw_amount": str(info.withdraw_amount),
            "block_number": block,
        }
        shop = session.get(Shop, shop_id)
        if shop is None:
            session.add(Shop(shop_id=shop_id, **values))
        else:
            for key, value in values.items():
                setattr(shop, key, value)
