"""The on-chain operations of payments, in one table: what each needs on chain before and leaves
after, where its transaction is kept, and what the relay records when it is mined.

An operation is claimed (`chain_op`) in the database before its transaction is sent, the
transaction's hash is recorded with the signer's nonce, and the watcher (workers/watcher.py)
records the outcome from the receipt, whoever sent it. Every change is a conditional UPDATE on the
prior state, so concurrent requests and several relay instances never apply a step twice.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic.alias_generators import to_camel
from sqlalchemy import BindParameter, Update, bindparam, select, update
from sqlalchemy.orm import Session

from relay import chain as onchain
from relay.chain import Call, Chain, Receipt
from relay.config import Settings
from relay.db import Database
from relay.errors import ChainRejected, ChainUnavailable, InvalidParameter, RelayError
from relay.models import ChainOp, Payment, PaymentStatus, now
from relay.services.nonces import SignerNonces, Slot
from relay.services.outbox import CONTRACT_ERROR, SUCCESS, enqueue_callback, notify

log = logging.getLogger(__name__)
S = PaymentStatus
POINT = 0
# Gas limits (GAS.md has the measured use, up to 158k for an opening): user-signed openings are
# simulated before they are sent; the closing steps, which the database has just checked, are not.
OPEN_GAS, CLOSE_GAS = 300_000, 150_000


@dataclass(frozen=True)
class Operation:
    before: int  # the on-chain status it needs
    after: int  # the on-chain status it leaves
    tx_column: str
    status: int | None  # the relay status once mined (openings keep theirs: approved)
    done_column: str | None  # the timestamp set once mined
    callback: str | None  # the callback type of an opening ("create" / "cancel")
    call: Callable[[Payment, Settings], Call]


def max_total(p: Payment, settings: Settings) -> int:
    """The most the user signs the payment may take: the estimate stored at openNew (the opening
    replaces it only once it has succeeded), raised by the configured tolerance."""
    total = int(p.total_point if p.loyalty_type == POINT else p.total_token)
    return total + total * settings.charge_tolerance_bps // 10_000


def _open(p: Payment, settings: Settings, chain: Chain) -> Call:
    order = (p.payment_id, p.purchase_id, int(p.amount), p.currency, p.shop_id, p.account, p.loyalty_type,
             max_total(p, settings))  # fmt: skip
    return chain.payment.call("openNewPayment", (*order, p.open_new_at + settings.signature_ttl), p.signature)


def operations(chain: Chain) -> dict[ChainOp, Operation]:
    c = chain.payment.call
    return {
        ChainOp.OPEN: Operation(
            onchain.NONE, onchain.OPEN, "open_tx", None, None, "create", lambda p, s: _open(p, s, chain)
        ),
        ChainOp.CLOSE: Operation(
            onchain.OPEN, onchain.CLOSED, "close_tx", S.COMPLETED, "close_new_at", None,
            lambda p, s: c("closeNewPayment", p.payment_id, True),
        ),
        ChainOp.REFUND: Operation(
            onchain.OPEN, onchain.REFUNDED, "close_tx", S.REFUNDED, "close_new_at", None,
            lambda p, s: c("closeNewPayment", p.payment_id, False),
        ),
        ChainOp.OPEN_CANCEL: Operation(
            onchain.CLOSED, onchain.CANCEL_OPEN, "cancel_tx", None, None, "cancel",
            lambda p, s: c("openCancelPayment", p.payment_id, p.purchase_id,
                           (p.open_cancel_at or 0) + s.signature_ttl, p.signature),
        ),
        ChainOp.CLOSE_CANCEL: Operation(
            onchain.CANCEL_OPEN, onchain.CANCELLED, "close_cancel_tx", S.CANCEL_COMPLETED, "close_cancel_at", None,
            lambda p, s: c("closeCancelPayment", p.payment_id, True),
        ),
        ChainOp.REVERT_CANCEL: Operation(
            onchain.CANCEL_OPEN, onchain.CLOSED, "close_cancel_tx", S.COMPLETED, "close_cancel_at", None,
            lambda p, s: c("closeCancelPayment", p.payment_id, False),
        ),
    }  # fmt: skip


# The relay status that matches an on-chain status once no operation is in flight.
STATUS_OF_CHAIN = {
    onchain.NONE: S.FAILED,
    onchain.OPEN: S.APPROVED,
    onchain.CLOSED: S.COMPLETED,
    onchain.REFUNDED: S.REFUNDED,
    onchain.CANCEL_OPEN: S.CANCEL_APPROVED,
    onchain.CANCELLED: S.CANCEL_COMPLETED,
}
MESSAGES = {
    "create": "The payment has been approved by the user and is held in escrow.",
    "cancel": "The cancellation has been approved by the shop owner.",
}


def kiosk_view(p: Payment) -> dict[str, Any]:
    """The spec's payment fields as a KIOSK sees them (its own view of the account), for callbacks
    and notifications."""
    fields = ("payment_id", "purchase_id", "amount", "currency", "shop_id", "loyalty_type")
    amounts = [f"{kind}_{unit}" for kind in ("paid", "fee", "total") for unit in ("point", "token", "value")]
    return {to_camel(f): getattr(p, f) for f in (*fields, *amounts)} | {"account": p.kiosk_account}


def update_payment(session: Session, payment_id: str, where: dict[str, Any], values: dict[str, Any]) -> Payment | None:
    """Sets `values` if each column in `where` has its value (None: IS NULL; a set: one of its
    values), returning the new row; None if another request or instance changed it first."""
    shape = tuple((c, "null" if v is None else "in" if isinstance(v, set) else "eq") for c, v in where.items())
    params = {f"w_{c}": (list(v) if isinstance(v, set) else v) for c, v in where.items() if v is not None}
    params |= {f"v_{c}": v for c, v in values.items()} | {"w_payment_id": payment_id, "v_updated_at": now()}
    return session.execute(_update_statement(shape, tuple(values)), params).scalar_one_or_none()


@functools.cache
def _update_statement(where: tuple[tuple[str, str], ...], columns: tuple[str, ...]) -> Update:
    """The UPDATE of one shape, built once: building it per call cost more CPU than running it."""
    conditions = [Payment.payment_id == bindparam("w_payment_id")]
    for column, kind in where:
        attribute = getattr(Payment, column)
        value: BindParameter[Any] = bindparam(f"w_{column}", expanding=kind == "in")
        conditions.append(
            attribute.is_(None) if kind == "null" else attribute.in_(value) if kind == "in" else attribute == value
        )
    assigned: dict[str, BindParameter[Any]] = {c: bindparam(f"v_{c}") for c in ("updated_at", *columns)}
    return (
        update(Payment).where(*conditions).values(assigned).returning(Payment)
        .execution_options(populate_existing=True, synchronize_session=False)
    )  # fmt: skip


# populate_existing: a read inside a transaction sees what a concurrent request committed meanwhile.
BY_ID = select(Payment).where(Payment.payment_id == bindparam("payment_id")).execution_options(populate_existing=True)


class Operations:
    def __init__(self, db: Database, chain: Chain, settings: Settings) -> None:
        self.db = db
        self.chain = chain
        self.settings = settings
        self.nonces = SignerNonces(db)
        self.table = operations(chain)
        self.watch: Callable[[str, Payment], None] = lambda tx, p: None  # the watcher's, once it runs

    def claim(
        self, session: Session, p: Payment, from_statuses: set[int], op: ChainOp, **values: Any
    ) -> Payment | None:
        """Claims the payment's next on-chain operation if it is still in one of `from_statuses`
        with nothing in flight; None if another request or instance changed or claimed it first."""
        stamp = now()
        values = {"chain_op": op, "chain_op_at": stamp, "chain_tx": None} | values
        if "status" in values:
            values["decided_at"] = stamp
        return update_payment(session, p.payment_id, {"status": from_statuses, "chain_op": None}, values)

    def submit(self, p: Payment, restore: dict[str, Any]) -> Payment:
        """Sends the transaction of the payment's claimed operation; returns the payment with its
        hash recorded. If the node is unreachable the claim is released (`restore`) so the request
        can be retried; if the chain would refuse it, the refusal is recorded and raised."""
        op = ChainOp(p.chain_op or "")
        operation = self.table[op]
        sent: list[Payment | None] = []

        def record(slot: Slot, tx: str) -> None:
            values = {"chain_tx": tx, operation.tx_column: tx}
            sent.append(update_payment(slot.session, p.payment_id, {"chain_op": op, "chain_tx": None}, values))

        opening = operation.callback is not None
        try:
            self.chain.send(
                operation.call(p, self.settings), self.nonces, gas=OPEN_GAS if opening else CLOSE_GAS,
                signed_by=p.signer if opening else None, simulate=opening, then=record,
            )  # fmt: skip
        except ChainUnavailable:
            with self.db.session() as session:
                values = {"chain_op": None, "chain_op_at": None} | restore
                update_payment(session, p.payment_id, {"chain_op": op, "chain_tx": None}, values)
            raise
        except (ChainRejected, InvalidParameter) as exc:
            self.rejected(p.payment_id, op, exc.message)
            raise
        if not sent or sent[0] is None:  # finished meanwhile by another instance
            return self.reload(p.payment_id)
        self.watch(sent[0].chain_tx or "", sent[0])
        return sent[0]

    def refusal(self, p: Payment, op: ChainOp) -> RelayError | None:
        """Why the chain refuses the operation now (None if it would not)."""
        return self.chain.refusal(self.table[op].call(p, self.settings))

    def reload(self, payment_id: str) -> Payment:
        with self.db.session() as session:
            return session.execute(BY_ID, {"payment_id": payment_id}).scalar_one()

    def finish(self, p: Payment, receipt: Receipt) -> Payment | None:
        """Records the mined transaction of the operation `p` has in flight (a revert as a refusal,
        with the contract's reason); the payment as recorded, or None if it was recorded already
        (every UPDATE is conditional on the operation and its hash, so `p` need not be fresh)."""
        if p.chain_op is None or p.chain_tx != receipt["transactionHash"]:
            return None
        op = ChainOp(p.chain_op)
        if receipt["status"] == 1:
            return self.succeeded(p, op, receipt)
        # Its call again on the state the revert left unchanged says why (a close refused past its
        # escrow, or an opening whose rates moved between its simulation and its block).
        message = self.chain.why_reverted(self.table[op].call(p, self.settings)).message
        return self.rejected(p.payment_id, op, message, expected_tx=p.chain_tx)

    def succeeded(self, p: Payment, op: ChainOp, receipt: Receipt | None) -> Payment | None:
        operation = self.table[op]
        values: dict[str, Any] = {"chain_op": None, "error": None}  # the signature stays: a retry is answered
        if operation.status is not None:
            values |= {"status": operation.status, operation.done_column or "": int(time.time())}
        if op == ChainOp.OPEN:
            values |= self._opened_amounts(p, receipt)
        # The balance the opening's callback reports, read before the row is locked (no lock is held
        # across a call to the node).
        balance = self.chain.account_of(p.account)[1] if operation.callback else None
        with self.db.session() as session:
            where: dict[str, Any] = {"chain_op": op} | ({"chain_tx": p.chain_tx} if receipt is not None else {})
            done = update_payment(session, p.payment_id, where, values)
            if done is None:
                return None
            if operation.callback is not None:
                data = kiosk_view(done) | {"balance": str(balance)}
                enqueue_callback(session, done.kiosk_id, done.payment_id, operation.callback, SUCCESS,
                                 MESSAGES[operation.callback], data)  # fmt: skip
            notify(session, done.account, f"payment.{op.value}", done.payment_id, {"paymentStatus": done.status})
        return done

    def _opened_amounts(self, p: Payment, receipt: Receipt | None) -> dict[str, str]:
        """What actually moved into escrow, from the PaymentOpened event (or the payment record)."""
        if receipt is not None:
            event = self.chain.events(receipt, "LoyaltyPayment", "PaymentOpened")[0]
            paid, fee = int(event["paid"]), int(event["fee"])
        else:
            record = self.chain.payment_of(p.payment_id)
            paid, fee = record.paid, record.fee
        unit, other = ("point", "token") if p.loyalty_type == POINT else ("token", "point")
        return {f"paid_{unit}": str(paid), f"fee_{unit}": str(fee), f"total_{unit}": str(paid + fee)} | {
            f"{kind}_{other}": "0" for kind in ("paid", "fee", "total")
        }

    def rejected(self, payment_id: str, op: ChainOp, message: str, expected_tx: str | None = None) -> Payment | None:
        """The chain refused the operation: a new payment fails (status 10, callback 1002); any other
        operation leaves the payment as the chain has it (read before the row is locked)."""
        status = S.FAILED if op == ChainOp.OPEN else STATUS_OF_CHAIN[self.chain.payment_of(payment_id).status]
        with self.db.session() as session:
            where: dict[str, Any] = {"chain_op": op} | ({"chain_tx": expected_tx} if expected_tx else {})
            values = {"status": status, "chain_op": None, "error": message, "signature": None}
            p = update_payment(session, payment_id, where, values)
            callback = self.table[op].callback
            if p is not None and callback is not None:
                # The KIOSK knows the address it gave, not the wallet behind a temporary one.
                text = f"The contract rejected the operation: {message}".replace(p.account, p.kiosk_account)
                enqueue_callback(session, p.kiosk_id, p.payment_id, callback, CONTRACT_ERROR, text, kiosk_view(p))
        return p

    # ------------------------------------------------------------------ what the watcher sweeps

    def in_flight(self) -> list[tuple[str, Payment]]:
        """(tx, payment) of operations in flight for a moment (the sender watches them itself);
        recovers those whose transaction is not on the node for longer than the receipt timeout."""
        settings = self.settings
        with self.db.session() as session:
            rows = session.execute(
                select(Payment).where(Payment.chain_op.is_not(None), Payment.chain_op_at < now() - 2.0)
            ).scalars().all()  # fmt: skip
        watched = []
        for p in rows:
            if p.chain_tx is not None and self.chain.is_known(p.chain_tx):
                if (p.chain_op_at or 0) < now() - settings.receipt_timeout:
                    self.chain.repair_nonces(self.nonces)  # pending for long: perhaps behind a lost nonce
                watched.append((p.chain_tx, p))
            elif (p.chain_op_at or 0) < now() - settings.receipt_timeout:
                self.recover(p)
        return watched

    def recover(self, p: Payment) -> None:
        """The operation's transaction is not on the node (never sent, or dropped): the chain's own
        record decides whether it already happened, must be sent again, or cannot happen."""
        op = ChainOp(p.chain_op or "")
        with self.db.session() as session:  # one instance recovers it
            claimed = update_payment(session, p.payment_id, {"chain_op": op, "chain_op_at": p.chain_op_at},
                                     {"chain_op_at": now()})  # fmt: skip
        if claimed is None:
            return
        status = self.chain.payment_of(p.payment_id).status
        if status == self.table[op].after:
            self.succeeded(claimed, op, None)
        elif status == self.table[op].before:
            log.info("re-sending %s of payment %s", op.value, p.payment_id)
            try:
                self.chain.repair_nonces(self.nonces)  # if the node lost it, later ones wait behind its nonce
                with self.db.session() as session:
                    claimed = update_payment(session, p.payment_id, {"chain_op": op}, {"chain_tx": None})
                if claimed is not None:
                    self.submit(claimed, restore={})
            except RelayError as exc:
                log.warning("re-sending %s of %s failed: %s", op.value, p.payment_id, exc.message)
        else:
            self.rejected(p.payment_id, op, f"The payment is in on-chain state {status}.")
