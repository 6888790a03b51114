"""The payment flows of spec §1.1-1.4: what the KIOSK and app endpoints do, and what the workers
finish (receipts, timeouts).

State lives in the `payments` table; every status change is a conditional UPDATE on the prior
status, so concurrent requests and several relay instances can never apply a step twice. An
on-chain step is claimed (`chain_op`) in the database before its transaction is sent and finished
from its receipt — inline when the caller waits, or by the chain watcher after a restart — and
callbacks are queued in the same transaction as the status they report.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

from eth_account.messages import encode_typed_data
from eth_utils import keccak
from sqlalchemy import CursorResult, Table, Update, bindparam, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, class_mapper

from relay import chain as onchain
from relay import kiosks, temporary, typed_data
from relay.calls import Call, checksum
from relay.chain import Chain, Mined
from relay.config import Settings
from relay.db import Database, run
from relay.errors import (
    ChainRejected,
    ChainUnavailable,
    DuplicatePurchase,
    ExpiredSignature,
    InsufficientBalance,
    InvalidParameter,
    InvalidSignature,
    InvalidStatus,
    PaymentNotFound,
)
from relay.kiosks import Kiosk, KioskCredentials
from relay.models import ChainOp, Payment, PaymentStatus, now
from relay.outbox import CONTRACT_ERROR, DENIED, SUCCESS, TIMEOUT, enqueue_callback, notify

log = logging.getLogger(__name__)

S = PaymentStatus
POINT = 0

# What each on-chain operation needs before and leaves after, as on-chain payment statuses.
_BEFORE = {
    ChainOp.OPEN: onchain.NONE,
    ChainOp.CLOSE: onchain.OPEN,
    ChainOp.REFUND: onchain.OPEN,
    ChainOp.OPEN_CANCEL: onchain.CLOSED,
    ChainOp.CLOSE_CANCEL: onchain.CANCEL_OPEN,
    ChainOp.REVERT_CANCEL: onchain.CANCEL_OPEN,
}
_AFTER = {
    ChainOp.OPEN: onchain.OPEN,
    ChainOp.CLOSE: onchain.CLOSED,
    ChainOp.REFUND: onchain.REFUNDED,
    ChainOp.OPEN_CANCEL: onchain.CANCEL_OPEN,
    ChainOp.CLOSE_CANCEL: onchain.CANCELLED,
    ChainOp.REVERT_CANCEL: onchain.CLOSED,
}
# The payment column that keeps each operation's transaction hash.
_TX_COLUMN = {
    ChainOp.OPEN: "open_tx",
    ChainOp.CLOSE: "close_tx",
    ChainOp.REFUND: "close_tx",
    ChainOp.OPEN_CANCEL: "cancel_tx",
    ChainOp.CLOSE_CANCEL: "close_cancel_tx",
    ChainOp.REVERT_CANCEL: "close_cancel_tx",
}
# The relay status that matches an on-chain status once no operation is in flight.
_STATUS_OF_CHAIN = {
    onchain.NONE: S.FAILED,
    onchain.OPEN: S.APPROVED,
    onchain.CLOSED: S.COMPLETED,
    onchain.REFUNDED: S.REFUNDED,
    onchain.CANCEL_OPEN: S.CANCEL_APPROVED,
    onchain.CANCELLED: S.CANCEL_COMPLETED,
}

REVERTED = "The transaction reverted on chain."

# Gas limits (GAS.md has the measured use): the user-signed openings (122k and 72k) with room for
# cold storage and token accounts, simulated before they are sent; the closing steps (49k-58k),
# which the database has just checked, sent without simulation.
OPEN_GAS = {ChainOp.OPEN: 300_000, ChainOp.OPEN_CANCEL: 200_000}
CLOSE_GAS = 150_000

# The payment path reads and writes payment rows with statements built once and run as plain SQL
# (`relay.db.run`), and hands the rows on as Payment objects that belong to no session: every
# change to a payment is a conditional UPDATE that returns the new row. Through the ORM (a cache
# key worked out for each statement, each row loaded into the session) the relay spent about a
# sixth more CPU per payment (`python -m bench.compare`).
PAYMENTS = cast(Table, Payment.__table__)
_PAYMENT_MANAGER = class_mapper(Payment).class_manager
_BY_ID = select(PAYMENTS).where(PAYMENTS.c.payment_id == bindparam("payment"))
_BY_PURCHASE = select(PAYMENTS).where(
    PAYMENTS.c.shop_id == bindparam("shop"), PAYMENTS.c.purchase_id == bindparam("purchase")
)
_INSERT = insert(PAYMENTS)
# The signatures of an account the relay has claimed an opening for but not yet sent.
_UNSENT_SIGNATURES = select(PAYMENTS.c.payment_id, PAYMENTS.c.chain_op).where(
    PAYMENTS.c.signer == bindparam("signer"),
    or_(PAYMENTS.c.chain_op == ChainOp.OPEN.value, PAYMENTS.c.chain_op == ChainOp.OPEN_CANCEL.value),
    PAYMENTS.c.chain_tx.is_(None),
)

# How often the signature nonce is read around the relay's unsent signatures before giving up.
NONCE_READS = 5
# Openings remembered as recorded by a close (see Payments._recorded).
RECORDED = 1024

MESSAGES = {
    ("create", SUCCESS): "The payment has been approved by the user and is held in escrow.",
    ("create", DENIED): "The payment was denied by the user.",
    ("create", TIMEOUT): "The payment timed out: the user made no decision in time.",
    ("cancel", SUCCESS): "The cancellation has been approved by the shop owner.",
    ("cancel", DENIED): "The cancellation was denied by the shop owner.",
    ("cancel", TIMEOUT): "The cancellation timed out: the shop owner made no decision in time.",
}


def _amounts(estimate: onchain.Estimate) -> dict[str, str]:
    return {
        "paid_point": str(estimate.paid_point),
        "paid_token": str(estimate.paid_token),
        "paid_value": str(estimate.paid_value),
        "fee_point": str(estimate.fee_point),
        "fee_token": str(estimate.fee_token),
        "fee_value": str(estimate.fee_value),
        "total_point": str(estimate.total_point),
        "total_token": str(estimate.total_token),
        "total_value": str(estimate.total_value),
    }


def kiosk_view(p: Payment) -> dict[str, Any]:
    """The spec's payment fields, as the KIOSK sees them (its own view of the account)."""
    return {
        "paymentId": p.payment_id,
        "purchaseId": p.purchase_id,
        "amount": p.amount,
        "currency": p.currency,
        "shopId": p.shop_id,
        "account": p.kiosk_account,
        "loyaltyType": p.loyalty_type,
        "paidPoint": p.paid_point,
        "paidToken": p.paid_token,
        "paidValue": p.paid_value,
        "feePoint": p.fee_point,
        "feeToken": p.fee_token,
        "feeValue": p.fee_value,
        "totalPoint": p.total_point,
        "totalToken": p.total_token,
        "totalValue": p.total_value,
    }


class Payments:
    def __init__(self, db: Database, chain: Chain, settings: Settings) -> None:
        self.db = db
        self.chain = chain
        self.settings = settings
        # Openings this process is recording right now (a follow-up, or a close waiting for its
        # opening), each with an event set when that is done: the other one waits or stands back
        # instead of reading the same receipt and racing for the same row.
        self._recording: dict[str, threading.Event] = {}
        self._recording_lock = threading.Lock()
        # Openings whose outcome a close in this process recorded (it waited for the opening's
        # transaction) before their follow-up came, oldest first, at most RECORDED: the follow-up
        # that finds its transaction here has nothing left to do.
        self._recorded: dict[str, None] = {}

    # ================================================================== KIOSK reads

    def resolve(self, session: Session, address: str) -> str:
        """The wallet behind `address` (itself, or the wallet of a live temporary address)."""
        return temporary.resolve(session, address) or checksum(address)

    def balance(self, address: str) -> tuple[str, int, int]:
        with self.db.session() as session:
            account = self.resolve(session, address)
        loyalty_type, balance = self.chain.account_of(account)
        return address, loyalty_type, balance

    def estimate(self, address: str, amount: int, currency: str) -> onchain.Estimate:
        with self.db.session() as session:
            account = self.resolve(session, address)
        return self.chain.estimate(account, amount, currency)

    # ================================================================== 1.1 / 1.2 new payment

    def open_new(
        self, who: KioskCredentials, purchase_id: str, amount: int, currency: str, shop_id: str, address: str
    ) -> Payment:
        with self.db.session() as session:
            kiosk = who.verify(session)
            kiosks.require_shop(kiosk, shop_id)
            existing = self._by_purchase(session, shop_id, purchase_id)
            if existing is not None:
                return self._same_purchase(existing, kiosk, amount, currency, address)
            account = self.resolve(session, address)
        self.chain.require_shop(shop_id)
        estimate = self.chain.estimate(account, amount, currency)
        total = estimate.total_point if estimate.loyalty_type == POINT else estimate.total_token
        if estimate.balance < total:
            raise InsufficientBalance(f"The balance {estimate.balance} does not cover the total {total}.")
        row = dict.fromkeys(PAYMENTS.c.keys()) | {
            "payment_id": "0x" + secrets.token_hex(32),
            "purchase_id": purchase_id,
            "amount": str(amount),
            "currency": currency,
            "shop_id": shop_id,
            "account": account,
            "kiosk_account": address,
            "kiosk_id": kiosk.id,
            "loyalty_type": estimate.loyalty_type,
            "status": S.NEW,
            "open_new_at": int(time.time()),
            "updated_at": now(),
            **_amounts(estimate),
        }
        payment = _as_payment(row)
        try:
            with self.db.session() as session:
                if address != account:
                    temporary.consume(session, address)
                run(session, _INSERT, row)
                notify(session, account, "payment.new", payment.payment_id, kiosk_view(payment) | {"account": account})
        except IntegrityError:
            # The same purchase arrived concurrently; answer like a retry.
            with self.db.session() as session:
                existing = self._by_purchase(session, shop_id, purchase_id)
            if existing is None:
                raise
            return self._same_purchase(existing, kiosk, amount, currency, address)
        return payment

    @staticmethod
    def _by_purchase(session: Session, shop_id: str, purchase_id: str) -> Payment | None:
        return _payment_of(run(session, _BY_PURCHASE, {"shop": shop_id, "purchase": purchase_id}))

    @staticmethod
    def _same_purchase(existing: Payment, kiosk: Kiosk, amount: int, currency: str, address: str) -> Payment:
        same = (existing.kiosk_id, existing.amount, existing.currency, existing.kiosk_account.lower()) == (
            kiosk.id,
            str(amount),
            currency,
            address.lower(),
        )
        if not same:
            raise DuplicatePurchase(f"Purchase {existing.purchase_id} already has payment {existing.payment_id}.")
        return existing

    def _kiosk_payment(self, who: KioskCredentials, payment_id: str) -> Payment:
        """The payment, for a KIOSK allowed for its shop (authenticated in the same transaction)."""
        with self.db.session() as session:
            return self._load_for_kiosk(session, who, payment_id)

    def _load_for_kiosk(self, session: Session, who: KioskCredentials, payment_id: str) -> Payment:
        kiosk = who.verify(session)
        p = self._load(session, payment_id)
        kiosks.require_shop(kiosk, p.shop_id)
        return p

    def get(self, payment_id: str) -> Payment:
        with self.db.session() as session:
            payment = _payment_of(run(session, _BY_ID, {"payment": payment_id}))
            if payment is None:
                raise PaymentNotFound(f"Unknown payment: {payment_id}")
            return payment

    def item(self, payment_id: str) -> tuple[Payment, dict[str, Any] | None]:
        """The payment, and the EIP-712 documents the app may sign for its pending decision."""
        with self.db.session() as session:
            payment = self._load(session, payment_id)
            return payment, self._pending_typed_data(session, payment)

    def _pending_typed_data(self, session: Session, payment: Payment) -> dict[str, Any] | None:
        if payment.status == S.NEW:
            deadline = payment.open_new_at + self.settings.signature_ttl
            nonce = self._expected_nonce(payment.account, session)
            return {
                "confirm": self._new_payment_typed(payment, nonce, deadline),
                "deny": self._deny_typed("DenyPayment", payment, payment.account, deadline),
            }
        if payment.status == S.CANCEL_RECEIVED:
            owner = self.chain.shop_owner(payment.shop_id)
            deadline = (payment.open_cancel_at or 0) + self.settings.signature_ttl
            return {
                "confirm": self._cancel_typed(payment, owner, self._expected_nonce(owner, session), deadline),
                "deny": self._deny_typed("DenyCancel", payment, owner, deadline),
            }
        return None

    def confirm_new(self, payment_id: str, signature: str) -> Payment:
        with self.db.session() as session:
            p = self._load(session, payment_id)
            if p.status == S.APPROVED and p.signature == signature:
                return p  # a retry of the same approval
            self._require(p, S.NEW)
            deadline = p.open_new_at + self.settings.signature_ttl
            nonce = self._expected_nonce(p.account, session)
            self._verify(self._new_payment_typed(p, nonce, deadline), signature, p.account, deadline)
            p = self._claim(session, p, {S.NEW}, ChainOp.OPEN, status=S.APPROVED, signature=signature, signer=p.account)
        fn = self.chain.payment.functions.openNewPayment(self._new_payment_args(p, deadline), signature)
        sent = self._submit(p, ChainOp.OPEN, fn, restore={"status": S.NEW, "signature": None, "signer": None})
        self._follow(sent, ChainOp.OPEN)
        return sent

    def deny_new(self, payment_id: str, signature: str) -> Payment:
        with self.db.session() as session:
            p = self._load(session, payment_id)
            self._require(p, S.NEW)
            deadline = p.open_new_at + self.settings.signature_ttl
            self._verify(self._deny_typed("DenyPayment", p, p.account, deadline), signature, p.account, deadline)
            denied = self._transition(session, payment_id, {S.NEW}, status=S.DENIED, decided_at=now())
            if denied is None:
                raise InvalidStatus()
            self._callback(session, denied, "create", DENIED)
            notify(session, p.account, "payment.denied", p.payment_id, {"paymentStatus": S.DENIED})
        return denied

    def close_new(self, who: KioskCredentials, payment_id: str, confirm: bool) -> Payment:
        done = S.COMPLETED if confirm else S.REFUNDED
        op = ChainOp.CLOSE if confirm else ChainOp.REFUND
        p, claimed = self._kiosk_claim(who, payment_id, ChainOp.OPEN, S.APPROVED, op, lambda q: q.status == done)
        if not claimed:
            return p  # a retry of the same close
        fn = self.chain.payment.functions.closeNewPayment(payment_id, confirm)
        return self._submit_and_wait(p, op, fn)

    # ================================================================== 1.3 / 1.4 cancel

    def open_cancel(self, who: KioskCredentials, payment_id: str) -> Payment:
        p = self._kiosk_payment(who, payment_id)
        if p.status == S.CANCEL_RECEIVED:
            return p  # a retry
        self._require(p, S.COMPLETED, S.CANCEL_DENIED, idle=True)
        on_chain = self.chain.payment_of(payment_id)
        if on_chain.status != onchain.CLOSED or self.chain.latest_timestamp() > on_chain.deadline:
            raise InvalidStatus("The cancel period of this payment is over.")
        owner = self.chain.shop_owner(p.shop_id)
        with self.db.session() as session:
            received = self._transition(
                session,
                payment_id,
                {S.COMPLETED, S.CANCEL_DENIED},
                status=S.CANCEL_RECEIVED,
                open_cancel_at=int(time.time()),
            )
            if received is None:
                raise InvalidStatus()
            notify(session, owner, "cancel.new", payment_id, kiosk_view(received) | {"account": received.account})
        return received

    def confirm_cancel(self, payment_id: str, signature: str) -> Payment:
        with self.db.session() as session:
            p = self._load(session, payment_id)
            if p.status == S.CANCEL_APPROVED and p.signature == signature:
                return p
            self._require(p, S.CANCEL_RECEIVED)
            owner = self.chain.shop_owner(p.shop_id)
            deadline = (p.open_cancel_at or 0) + self.settings.signature_ttl
            nonce = self._expected_nonce(owner, session)
            self._verify(self._cancel_typed(p, owner, nonce, deadline), signature, owner, deadline)
            p = self._claim(
                session,
                p,
                {S.CANCEL_RECEIVED},
                ChainOp.OPEN_CANCEL,
                status=S.CANCEL_APPROVED,
                signature=signature,
                signer=owner,
            )
        fn = self.chain.payment.functions.openCancelPayment(payment_id, p.purchase_id, deadline, signature)
        sent = self._submit(p, ChainOp.OPEN_CANCEL, fn, restore={"status": S.CANCEL_RECEIVED, "signature": None})
        self._follow(sent, ChainOp.OPEN_CANCEL)
        return sent

    def deny_cancel(self, payment_id: str, signature: str) -> Payment:
        with self.db.session() as session:
            p = self._load(session, payment_id)
            self._require(p, S.CANCEL_RECEIVED)
            owner = self.chain.shop_owner(p.shop_id)
            deadline = (p.open_cancel_at or 0) + self.settings.signature_ttl
            self._verify(self._deny_typed("DenyCancel", p, owner, deadline), signature, owner, deadline)
            denied = self._transition(
                session, payment_id, {S.CANCEL_RECEIVED}, status=S.CANCEL_DENIED, decided_at=now()
            )
            if denied is None:
                raise InvalidStatus()
            self._callback(session, denied, "cancel", DENIED)
        return denied

    def close_cancel(self, who: KioskCredentials, payment_id: str, confirm: bool) -> Payment:
        done = S.CANCEL_COMPLETED if confirm else S.COMPLETED
        op = ChainOp.CLOSE_CANCEL if confirm else ChainOp.REVERT_CANCEL
        p, claimed = self._kiosk_claim(
            who,
            payment_id,
            ChainOp.OPEN_CANCEL,
            S.CANCEL_APPROVED,
            op,
            lambda q: q.status == done and bool(q.close_cancel_at),
        )
        if not claimed:
            return p  # a retry of the same close
        fn = self.chain.payment.functions.closeCancelPayment(payment_id, confirm)
        return self._submit_and_wait(p, op, fn)

    # ================================================================== workers

    def settle(self, payment_id: str) -> None:
        """Finishes the payment's on-chain operation if its transaction has been mined; if it was
        never sent or the node lost it, checks the chain and sends it again or records what happened."""
        p = self.get(payment_id)
        if p.chain_op is None:
            return
        if p.chain_tx is not None:
            receipt = self.chain.receipt(p.chain_tx)
            if receipt is not None:
                self._finish(p, receipt)
                return
            if self.chain.is_known(p.chain_tx):
                if (p.chain_op_at or 0) < now() - self.settings.receipt_timeout:
                    self.chain.repair_nonces()  # pending for long: perhaps behind a nonce the node lost
                return  # still pending
        if (p.chain_op_at or 0) > now() - self.settings.receipt_timeout:
            return  # being sent right now, perhaps by another request
        self._recover(p)

    def _kiosk_claim(
        self,
        who: KioskCredentials,
        payment_id: str,
        opening: ChainOp,
        approved: int,
        op: ChainOp,
        closed: Callable[[Payment], bool],
    ) -> tuple[Payment, bool]:
        """A KIOSK's closing step, as `_claim_closing`. In the common case (the payment is
        approved and nothing is in flight) the key, the payment and the claim of `op` take one
        transaction."""
        with self.db.session() as session:
            p = self._load_for_kiosk(session, who, payment_id)
            if p.status == approved and p.chain_op is None:
                claimed = self._try_claim(session, p, {approved}, op)
                if claimed is not None:
                    return claimed, True
                p = self._load(session, payment_id)  # a concurrent close (a retry) took it first
        return self._claim_closing(p, opening, approved, op, closed)

    def _claim_closing(
        self, p: Payment, opening: ChainOp, approved: int, op: ChainOp, closed: Callable[[Payment], bool]
    ) -> tuple[Payment, bool]:
        """Claims the closing operation `op` of an approved payment (or cancel). If the `opening`
        transaction is still being mined (a KIOSK may close the moment the app approves), waits for
        it and claims `op` in the update that records it. Returns the payment and whether `op` was
        claimed: not if the payment is already `closed` (a retry; it may have waited for the
        close it repeats)."""
        if p.chain_op == opening:
            p, claimed = self._await_pending(p, then=op)
            if claimed:
                return p, True
        if p.chain_op is None and closed(p):
            return p, False
        self._require(p, approved, idle=True)
        with self.db.session() as session:
            taken = self._try_claim(session, p, {approved}, op)
            if taken is not None:
                return taken, True
            p = self._load(session, p.payment_id)
        # A concurrent close took it first: answered as a retry that came a moment later would be.
        if p.chain_op is None and closed(p):
            return p, False
        self._require(p, approved, idle=True)
        raise InvalidStatus(f"Payment {p.payment_id} changed meanwhile; reload it.")

    def _await_pending(self, p: Payment, then: ChainOp) -> tuple[Payment, bool]:
        """Waits (up to the receipt timeout) for the transaction of the payment's opening step,
        then records it, so a close that follows an approval at once does not fail. If this call
        records a successful opening, the same update claims the closing operation `then`.
        Returns the payment as it is then, and whether `then` was claimed."""
        if p.chain_tx is not None:
            with self._recording_of(p.payment_id) as other:
                if other is not None:  # the approval's follow-up is recording it
                    other.wait(self.settings.receipt_timeout)
                    return self.get(p.payment_id), False
                receipt = self.chain.wait(p.chain_tx, self.settings.receipt_timeout)
                if receipt is not None:
                    done = self._finish(p, receipt, then)
                    if done is not None:
                        self._remember_recorded(p.chain_tx)
                        return done, done.chain_op == then
                    return self.get(p.payment_id), False
        self.settle(p.payment_id)
        return self.get(p.payment_id), False

    @contextlib.contextmanager
    def _recording_of(self, payment_id: str) -> Iterator[threading.Event | None]:
        """None if the caller may record the payment's opening (others wait until it is done);
        else the event of whoever is recording it now."""
        with self._recording_lock:
            other = self._recording.get(payment_id)
            if other is None:
                mine = self._recording[payment_id] = threading.Event()
        if other is not None:
            yield other
            return
        try:
            yield None
        finally:
            with self._recording_lock:
                del self._recording[payment_id]
            mine.set()

    def pending_chain_ops(self, older_than: float) -> list[str]:
        with self.db.session() as session:
            return list(
                session.execute(
                    select(Payment.payment_id).where(
                        Payment.chain_op.is_not(None), Payment.chain_op_at < now() - older_than
                    )
                ).scalars()
            )

    def expire(self) -> int:
        """Applies the timeouts; returns how many payments it changed."""
        t = now()
        changed = 0
        with self.db.session() as session:
            undecided = session.execute(
                select(Payment).where(Payment.status == S.NEW, Payment.open_new_at < t - self.settings.payment_timeout)
            ).scalars()
            for p in list(undecided):
                if self._transition(session, p.payment_id, {S.NEW}, status=S.TIMEOUT):
                    self._callback(session, p, "create", TIMEOUT)
                    notify(session, p.account, "payment.timeout", p.payment_id, {"paymentStatus": S.TIMEOUT})
                    changed += 1
            undecided_cancels = session.execute(
                select(Payment).where(
                    Payment.status == S.CANCEL_RECEIVED,
                    Payment.open_cancel_at < t - self.settings.payment_timeout,
                )
            ).scalars()
            for p in list(undecided_cancels):
                # The payment stands; the KIOSK learns the cancel timed out.
                if self._transition(session, p.payment_id, {S.CANCEL_RECEIVED}, status=S.COMPLETED):
                    self._callback(session, p, "cancel", TIMEOUT)
                    changed += 1
            unclosed = session.execute(
                select(Payment.payment_id, Payment.status).where(
                    Payment.status.in_([S.APPROVED, S.CANCEL_APPROVED]),
                    Payment.chain_op.is_(None),
                    Payment.decided_at < t - self.settings.close_timeout,
                )
            ).all()
        for payment_id, status in unclosed:
            changed += self._close_unclosed(payment_id, status)
        return changed

    def _close_unclosed(self, payment_id: str, status: int) -> int:
        """An approved payment (or cancel) the KIOSK never closed: the loyalty goes back to the user."""
        new = status == S.APPROVED
        op = ChainOp.REFUND if new else ChainOp.CLOSE_CANCEL
        with self.db.session() as session:
            p = self._transition(session, payment_id, {status}, chain_op=op, chain_op_at=now(), chain_tx=None)
            if p is None:
                return 0
            message = (
                "The approved payment was not closed in time and has been refunded."
                if new
                else "The approved cancellation was not closed in time and has been completed."
            )
            self._callback(session, p, "create" if new else "cancel", TIMEOUT, message)
        fn = (
            self.chain.payment.functions.closeNewPayment(payment_id, False)
            if new
            else self.chain.payment.functions.closeCancelPayment(payment_id, True)
        )
        try:
            self._submit_and_wait(p, op, fn)
        except (ChainUnavailable, ChainRejected) as exc:
            log.warning("closing unclosed payment %s: %s", payment_id, exc.message)
        return 1

    # ================================================================== internals: state

    @staticmethod
    def _load(session: Session, payment_id: str) -> Payment:
        payment = _payment_of(run(session, _BY_ID, {"payment": payment_id}))
        if payment is None:
            raise PaymentNotFound(f"Unknown payment: {payment_id}")
        return payment

    @staticmethod
    def _require(p: Payment, *statuses: int, idle: bool = False) -> None:
        if p.status not in statuses:
            names = ", ".join(str(s) for s in statuses)
            raise InvalidStatus(f"Payment {p.payment_id} has status {p.status}; this action needs {names}.")
        if idle and p.chain_op is not None:
            raise InvalidStatus(f"Payment {p.payment_id} is waiting for its transaction {p.chain_tx or ''}.")

    @staticmethod
    def _transition(session: Session, payment_id: str, from_statuses: set[int], **values: Any) -> Payment | None:
        """Sets `values` if the payment is still in one of `from_statuses` with no on-chain
        operation in flight, and returns the updated row (one UPDATE ... RETURNING); None if
        another request or instance changed or claimed it first."""
        return _update_payment(session, payment_id, {"status": set(from_statuses), "chain_op": None}, values)

    def _try_claim(
        self, session: Session, p: Payment, from_statuses: set[int], op: ChainOp, **values: Any
    ) -> Payment | None:
        """Claims the payment's next on-chain operation; returns the claimed row, None if another
        request or instance changed or claimed it first."""
        stamp = now()
        return self._transition(
            session,
            p.payment_id,
            from_statuses,
            chain_op=op,
            chain_op_at=stamp,
            chain_tx=None,
            decided_at=stamp if "status" in values else p.decided_at,
            **values,
        )

    def _claim(self, session: Session, p: Payment, from_statuses: set[int], op: ChainOp, **values: Any) -> Payment:
        """`_try_claim`, raising InvalidStatus if the claim is lost."""
        claimed = self._try_claim(session, p, from_statuses, op, **values)
        if claimed is None:
            # Another request or instance changed it first (a concurrent retry of the same step,
            # most often): say what it is doing now, as a request that came a moment later would hear.
            self._require(self._load(session, p.payment_id), *from_statuses, idle=True)
            raise InvalidStatus(f"Payment {p.payment_id} changed meanwhile; reload it.")
        return claimed

    def _callback(self, session: Session, p: Payment, type_: str, code: int, message: str | None = None) -> None:
        data = kiosk_view(p)
        enqueue_callback(session, p.kiosk_id, p.payment_id, type_, code, message or MESSAGES[(type_, code)], data)

    # ================================================================== internals: chain

    def _submit(self, p: Payment, op: ChainOp, fn: Call, restore: dict[str, Any]) -> Payment:
        """Sends the transaction of a claimed operation; returns the payment with the transaction
        recorded. If the node is unreachable the claim is released (`restore`) so the request can
        be retried; if the chain would reject it, the rejection is recorded and reported."""
        column = _TX_COLUMN[op]
        recorded: list[Payment | None] = []

        def record(session: Session, tx: str) -> None:
            recorded.append(_update_payment(session, p.payment_id, {"chain_op": op}, {"chain_tx": tx, column: tx}))

        try:
            # User-signed steps are simulated first (a bad signature is caught before it costs
            # gas); closing steps are the relay's own and the database has just checked them.
            if op in OPEN_GAS:
                self.chain.send(fn, gas=OPEN_GAS[op], signed_by=p.signer, record=record, simulate=True)
            else:
                self.chain.send(fn, gas=CLOSE_GAS, record=record)
        except ChainUnavailable:
            with self.db.session() as session:
                session.execute(
                    update(Payment)
                    .where(Payment.payment_id == p.payment_id, Payment.chain_op == op, Payment.chain_tx.is_(None))
                    .values(chain_op=None, chain_op_at=None, updated_at=now(), **restore)
                )
            raise
        except ChainRejected as exc:
            self._rejected(p.payment_id, op, exc.message)
            raise
        sent = recorded[0] if recorded else None
        if sent is None:  # finished meanwhile by another instance's chain watcher
            return self.get(p.payment_id)
        return sent

    def _follow(self, sent: Payment, op: ChainOp) -> None:
        """Records the outcome of an approval's transaction, and queues the KIOSK's callback, as
        soon as it is mined (the app's request has answered by then). In this process, a close
        that comes meanwhile waits for it (or it stands back for the close); elsewhere (another
        process, the chain watcher after a restart) the first to record it wins."""
        if sent.chain_op != op or sent.chain_tx is None:
            return

        def record(receipt: Mined) -> None:
            with self._recording_of(sent.payment_id) as other:
                # Else the KIOSK's close is recording it (and claiming the close), or has: that
                # costs a read of the balance and an update that would change nothing.
                if other is None and not self._forget_recorded(sent.chain_tx):
                    self._finish(sent, receipt)

        self.chain.follow(sent.chain_tx, self.settings.receipt_timeout, record)

    def _submit_and_wait(self, p: Payment, op: ChainOp, fn: Call) -> Payment:
        sent = self._submit(p, op, fn, restore={})
        if sent.chain_op != op or sent.chain_tx is None:
            return sent
        receipt = self.chain.wait(sent.chain_tx, self.settings.receipt_timeout)
        if receipt is None:
            raise ChainUnavailable(
                f"Transaction {sent.chain_tx} was sent but is not mined yet; call again to see the result."
            )
        if receipt["status"] != 1:
            rejection = self._why_reverted(sent, op)
            self._rejected(p.payment_id, op, rejection.message, expected_tx=sent.chain_tx)
            raise rejection
        return self._finish(sent, receipt) or self.get(p.payment_id)

    def _finish(self, p: Payment, receipt: Mined, then: ChainOp | None = None) -> Payment | None:
        """Records a mined transaction of the payment's operation (a revert as a rejection);
        returns the payment as recorded, None if someone else recorded it first. `then`: the
        operation to claim in the same update if an opening step succeeded."""
        op = ChainOp(p.chain_op) if p.chain_op else None
        if op is None or p.chain_tx is None:
            return None
        if receipt["status"] == 1:
            return self._succeeded(p, op, receipt, then)
        return self._rejected(p.payment_id, op, self._why_reverted(p, op).message, expected_tx=p.chain_tx)

    def _why_reverted(self, p: Payment, op: ChainOp) -> ChainRejected:
        """The contract's reason for a mined transaction's revert: its call run again on the state
        the revert left unchanged. Closing steps are sent unsimulated (the database has just
        checked them; the rare one refused is most likely past its escrow), and an opening that
        passed its simulation can still be refused if rates or the fee moved before it was mined."""
        return self.chain.rejection(self._operation(p, op), REVERTED)

    def _remember_recorded(self, tx: str) -> None:
        with self._recording_lock:
            self._recorded[tx] = None
            if len(self._recorded) > RECORDED:  # follow-ups that never came (dropped, or in another process)
                del self._recorded[next(iter(self._recorded))]

    def _forget_recorded(self, tx: str | None) -> bool:
        """Whether a close in this process has recorded the outcome of transaction `tx` in place
        of its follow-up (forgotten now: each transaction has one follow-up)."""
        with self._recording_lock:
            if tx is None or tx not in self._recorded:
                return False
            del self._recorded[tx]
            return True

    def _succeeded(self, p: Payment, op: ChainOp, receipt: Mined | None, then: ChainOp | None = None) -> Payment | None:
        # The signature stays: a retry of the approval it carried is answered like the first time.
        values: dict[str, Any] = {"chain_op": None, "error": None}
        stamp = int(time.time())
        if then is not None and op in (ChainOp.OPEN, ChainOp.OPEN_CANCEL):
            # The KIOSK's close is waiting for this opening: claim it now (what _claim would do
            # next, in the same update: the payment is approved and idle once the opening is in).
            values |= {"chain_op": then, "chain_op_at": now(), "chain_tx": None}
        if op == ChainOp.OPEN:
            values |= self._opened_amounts(p, receipt)
        elif op == ChainOp.CLOSE:
            values |= {"status": S.COMPLETED, "close_new_at": stamp}
        elif op == ChainOp.REFUND:
            values |= {"status": S.REFUNDED, "close_new_at": stamp}
        elif op == ChainOp.CLOSE_CANCEL:
            values |= {"status": S.CANCEL_COMPLETED, "close_cancel_at": stamp}
        elif op == ChainOp.REVERT_CANCEL:
            values |= {"status": S.COMPLETED, "close_cancel_at": stamp}
        # The balance the opening's callback reports, read before the row is locked (no lock is
        # held across a call to the node).
        balance = self.chain.account_of(p.account)[1] if op in (ChainOp.OPEN, ChainOp.OPEN_CANCEL) else None
        with self.db.session() as session:
            where: dict[str, Any] = {"chain_op": op}
            if receipt is not None:
                where["chain_tx"] = p.chain_tx
            done = _update_payment(session, p.payment_id, where, values)
            if done is None:
                return None  # finished by someone else
            p = done
            if balance is not None:
                type_ = "create" if op == ChainOp.OPEN else "cancel"
                data = kiosk_view(p) | {"balance": str(balance)}
                enqueue_callback(session, p.kiosk_id, p.payment_id, type_, SUCCESS, MESSAGES[(type_, SUCCESS)], data)
            notify(session, p.account, f"payment.{op.value}", p.payment_id, {"paymentStatus": p.status})
        return p

    def _opened_amounts(self, p: Payment, receipt: Mined | None) -> dict[str, str]:
        """What actually moved into escrow, from the PaymentOpened event (or the payment record)."""
        if receipt is not None:
            events = self.chain.events(receipt, "LoyaltyPayment", "PaymentOpened")
            paid, fee = int(events[0]["paid"]), int(events[0]["fee"])
        else:
            record = self.chain.payment_of(p.payment_id)
            paid, fee = record.paid, record.fee
        unit = "point" if p.loyalty_type == POINT else "token"
        other = "token" if unit == "point" else "point"
        return {
            f"paid_{unit}": str(paid),
            f"fee_{unit}": str(fee),
            f"total_{unit}": str(paid + fee),
            f"paid_{other}": "0",
            f"fee_{other}": "0",
            f"total_{other}": "0",
        }

    def _rejected(self, payment_id: str, op: ChainOp, message: str, expected_tx: str | None = None) -> Payment | None:
        """The chain refused the operation: a new payment fails (status 10, callback 1002); any
        other operation leaves the payment as the chain says it is, with the error recorded."""
        # A failed open moved nothing; any other step leaves the payment as the chain has it
        # (read before the row is locked).
        status = S.FAILED if op == ChainOp.OPEN else _STATUS_OF_CHAIN[self.chain.payment_of(payment_id).status]
        with self.db.session() as session:
            where: dict[str, Any] = {"chain_op": op}
            if expected_tx is not None:
                where["chain_tx"] = expected_tx
            values = {"status": status, "chain_op": None, "error": message, "signature": None}
            p = _update_payment(session, payment_id, where, values)
            if p is None:
                return None
            if op in (ChainOp.OPEN, ChainOp.OPEN_CANCEL):
                type_ = "create" if op == ChainOp.OPEN else "cancel"
                self._callback(session, p, type_, CONTRACT_ERROR, f"The contract rejected the operation: {message}")
        return p

    def _recover(self, p: Payment) -> None:
        """The operation's transaction is not on chain (never sent, or dropped): the chain's own
        record decides whether it already happened, must be sent again, or cannot happen."""
        op = ChainOp(p.chain_op) if p.chain_op else None
        if op is None:
            return
        with self.db.session() as session:
            claimed = session.execute(
                update(Payment)
                .where(Payment.payment_id == p.payment_id, Payment.chain_op == op, Payment.chain_op_at == p.chain_op_at)
                .values(chain_op_at=now())
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return  # another instance is on it
        status = self.chain.payment_of(p.payment_id).status
        if status == _AFTER[op]:
            self._succeeded(p, op, None)
        elif status == _BEFORE[op]:
            log.info("re-sending %s of payment %s", op.value, p.payment_id)
            fn = self._operation(p, op)
            try:
                # If the node lost the transaction, the signer's later ones wait behind its nonce.
                self.chain.repair_nonces()
                self._submit(p, op, fn, restore={})
            except (ChainRejected, ChainUnavailable) as exc:
                log.warning("re-sending %s of %s failed: %s", op.value, p.payment_id, exc.message)
        else:
            self._rejected(p.payment_id, op, f"The payment is in on-chain state {status}.")

    def _operation(self, p: Payment, op: ChainOp) -> Call:
        functions = self.chain.payment.functions
        operations: dict[ChainOp, Callable[[], Call]] = {
            ChainOp.OPEN: lambda: functions.openNewPayment(
                self._new_payment_args(p, p.open_new_at + self.settings.signature_ttl), p.signature
            ),
            ChainOp.CLOSE: lambda: functions.closeNewPayment(p.payment_id, True),
            ChainOp.REFUND: lambda: functions.closeNewPayment(p.payment_id, False),
            ChainOp.OPEN_CANCEL: lambda: functions.openCancelPayment(
                p.payment_id, p.purchase_id, (p.open_cancel_at or 0) + self.settings.signature_ttl, p.signature
            ),
            ChainOp.CLOSE_CANCEL: lambda: functions.closeCancelPayment(p.payment_id, True),
            ChainOp.REVERT_CANCEL: lambda: functions.closeCancelPayment(p.payment_id, False),
        }
        return operations[op]()

    # ================================================================== internals: signatures

    def _expected_nonce(self, account: str, session: Session | None = None) -> int:
        """The nonce the next signature of `account` must carry: its nonce on the node's pending
        state (every transaction the node has accepted, mined or not: what the contract will see
        when the next one runs), plus its signatures the relay has claimed but not yet handed to
        the node. A mined block's state is no better: a node may answer calls at the newest
        block number from a state it is still changing (anvil does while it mines), and a
        signature may be recorded as done just after it was mined."""
        if session is None:
            with self.db.session() as own:
                unsent = run(own, _UNSENT_SIGNATURES, {"signer": account}).all()
        else:
            unsent = run(session, _UNSENT_SIGNATURES, {"signer": account}).all()
        nonce = self.chain.payment_nonce(account, "pending")
        for _ in range(NONCE_READS):
            if not unsent:
                return nonce
            # Claimed with no hash recorded: not sent yet, or sent a moment ago (then the pending
            # state already has it, and the payment has left its status before the operation).
            waiting = sum(
                self.chain.payment_of(row.payment_id, "pending").status == _BEFORE[ChainOp(row.chain_op)]
                for row in unsent
            )
            # One of them sent while they were read would be counted in neither: the nonce read
            # again after them must still be the one read before.
            again = self.chain.payment_nonce(account, "pending")
            if again == nonce:
                return nonce + waiting
            nonce = again
        raise ChainUnavailable(f"The signature nonce of {account} keeps changing; try again.")

    def _max_total(self, p: Payment) -> int:
        """The most the user signs the payment may take: the estimate stored at openNew (the
        opening replaces it only once it has succeeded), raised by the configured tolerance."""
        total = int(p.total_point if p.loyalty_type == POINT else p.total_token)
        return total + total * self.settings.charge_tolerance_bps // 10_000

    def _new_payment_args(self, p: Payment, deadline: int) -> tuple[Any, ...]:
        return (
            p.payment_id,
            p.purchase_id,
            int(p.amount),
            p.currency,
            p.shop_id,
            p.account,
            p.loyalty_type,
            self._max_total(p),
            deadline,
        )

    def _new_payment_typed(self, p: Payment, nonce: int, deadline: int) -> dict[str, Any]:
        message = {
            "paymentId": p.payment_id,
            "purchaseId": p.purchase_id,
            "amount": int(p.amount),
            "currency": p.currency,
            "shopId": p.shop_id,
            "account": p.account,
            "loyaltyType": p.loyalty_type,
            "maxTotal": self._max_total(p),
            "nonce": nonce,
            "deadline": deadline,
        }
        return typed_data.build("NewPayment", self.chain.payment_domain(), message)

    def _cancel_typed(self, p: Payment, owner: str, nonce: int, deadline: int) -> dict[str, Any]:
        message = {
            "paymentId": p.payment_id,
            "purchaseId": p.purchase_id,
            "shopId": p.shop_id,
            "account": owner,
            "nonce": nonce,
            "deadline": deadline,
        }
        return typed_data.build("CancelPayment", self.chain.payment_domain(), message)

    def _deny_typed(self, primary_type: str, p: Payment, account: str, deadline: int) -> dict[str, Any]:
        message = {"paymentId": p.payment_id, "account": account, "deadline": deadline}
        return typed_data.build(primary_type, self.chain.payment_domain(), message)

    def _verify(self, typed: dict[str, Any], signature: str, signer: str, deadline: int) -> None:
        if time.time() > deadline:
            raise ExpiredSignature(f"The signature deadline {deadline} has passed.")
        verify_signature(self.chain, typed, signature, signer)


def _update_payment(session: Session, payment_id: str, where: dict[str, Any], values: dict[str, Any]) -> Payment | None:
    """UPDATE the payment SET `values` (and updated_at) if each column in `where` has its value
    (None: IS NULL; a set: one of its values), RETURNING the new row; None if the conditions do not
    hold."""
    tests = tuple(
        (column, "null", ())
        if value is None
        else (column, "in", tuple(sorted(value)))
        if isinstance(value, set | frozenset)
        else (column, "eq", ())
        for column, value in where.items()
    )
    statement = _payment_update_statement(tests, tuple(sorted(values)))
    params = {"payment": payment_id, "new_updated_at": now()}
    params |= {f"was_{column}": value for column, value in where.items() if not isinstance(value, set | frozenset)}
    params |= {f"new_{column}": value for column, value in values.items()}
    return _payment_of(run(session, statement, params))


def _payment_of(result: CursorResult[Any]) -> Payment | None:
    """The result's payment row (if any) as a Payment of no session."""
    row = result.one_or_none()
    return None if row is None else _as_payment(row._mapping)


def _as_payment(columns: Mapping[Any, Any]) -> Payment:
    """A Payment of no session holding a whole row's columns, filled in as the ORM fills in a loaded
    object (straight into its __dict__, with no change events): a twentieth of the cost of
    Payment(**columns), which sets each column through its instrumented attribute. It is only ever
    read (every change to a payment is a conditional UPDATE)."""
    payment: Payment = _PAYMENT_MANAGER.new_instance()
    payment.__dict__.update(columns)
    return payment


@functools.lru_cache(maxsize=128)
def _payment_update_statement(tests: tuple[tuple[str, str, tuple[Any, ...]], ...], columns: tuple[str, ...]) -> Update:
    """`_update_payment`'s statement for one shape of call, built once, with the payment id, the
    compared values and the new values as bind parameters: building a statement and its cache
    key on every call cost a quarter to a half of the client CPU of the whole transaction
    (`python -m bench.statements`)."""
    conditions = [PAYMENTS.c.payment_id == bindparam("payment")]
    for column, test, values in tests:
        attribute = PAYMENTS.c[column]
        if test == "null":
            conditions.append(attribute.is_(None))
        elif test == "in":
            conditions.append(or_(*(attribute == value for value in values)))
        else:
            conditions.append(attribute == bindparam(f"was_{column}"))
    return (
        update(PAYMENTS)
        .where(*conditions)
        .values({column: bindparam(f"new_{column}") for column in ("updated_at", *columns)})
        .returning(*PAYMENTS.c)
    )


def verify_signature(chain: Chain, typed: dict[str, Any], signature: str, signer: str) -> None:
    """Accepts `signer`'s EIP-712 signature of `typed`: an EOA's, or a contract wallet's (ERC-1271)."""
    try:
        recovered = typed_data.recover(typed, signature)
    except Exception as exc:  # malformed or non-canonical signature bytes
        recovered = None
        if not chain.has_code(signer):
            raise InvalidParameter(f"Malformed signature: {exc}") from exc
    if recovered is not None and recovered.lower() == signer.lower():
        return
    if chain.has_code(signer):
        signable = encode_typed_data(full_message=typed)
        digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
        if chain.is_valid_erc1271(signer, digest, bytes.fromhex(signature.removeprefix("0x"))):
            return
    raise InvalidSignature(f"The signature is not {signer}'s signature of this {typed['primaryType']}.")
