"""The payment flows of spec §1.1-1.4, as the KIOSK and app endpoints run them; on-chain steps go
through services/operations.py and are recorded by the watcher.

State lives in the `payments` table; every status change is a conditional UPDATE on the prior
status, so concurrent requests and several relay instances never apply a step twice: a request
that loses such a race answers as a retry that came a moment later would.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relay import chain as onchain
from relay.chain import Chain, Estimate, checksum
from relay.config import Settings
from relay.db import Database
from relay.errors import (
    ChainUnavailable,
    DuplicatePurchase,
    InsufficientBalance,
    InvalidStatus,
    PaymentNotFound,
    RelayError,
    TemporaryAccountNotFound,
)
from relay.models import ChainOp, Payment, PaymentStatus, Purchase, now
from relay.services import decisions, kiosks, limits, wallets
from relay.services.kiosks import Kiosk, KioskCredentials
from relay.services.operations import BY_ID, POINT, Operations, kiosk_view, update_payment
from relay.services.outbox import DENIED, TIMEOUT, enqueue_callback, notify
from relay.services.signatures import require_deadline, verify
from relay.workers.watcher import Watcher

log = logging.getLogger(__name__)
S = PaymentStatus
BY_PURCHASE = select(Payment).where(
    Payment.shop_id == bindparam("shop_id"), Payment.purchase_id == bindparam("purchase_id")
)
SENDING_WAIT = 0.02  # seconds between looks at a claimed operation whose transaction is being sent
MESSAGES = {
    ("create", DENIED): "The payment was denied by the user.",
    ("create", TIMEOUT): "The payment timed out: the user made no decision in time.",
    ("cancel", DENIED): "The cancellation was denied by the shop owner.",
    ("cancel", TIMEOUT): "The cancellation timed out: the shop owner made no decision in time.",
}


class Payments:
    def __init__(self, db: Database, chain: Chain, settings: Settings, ops: Operations, watcher: Watcher) -> None:
        self.db = db
        self.chain = chain
        self.settings = settings
        self.ops = ops
        self.watcher = watcher

    # ================================================================== KIOSK reads

    def resolve(self, address: str) -> str:
        """The wallet behind `address` (itself, or the wallet of a live temporary address)."""
        with self.db.session() as session:
            return wallets.resolve(session, address) or checksum(address)

    def balance(self, address: str) -> tuple[int, int]:
        return self.chain.account_of(self.resolve(address))

    def estimate(self, address: str, amount: int, currency: str) -> Estimate:
        return self.chain.estimate(self.resolve(address), amount, currency)

    def get(self, payment_id: str, session: Session | None = None) -> Payment:
        if session is None:
            with self.db.session() as own:
                return self.get(payment_id, own)
        payment = session.execute(BY_ID, {"payment_id": payment_id}).scalar_one_or_none()
        if payment is None:
            raise PaymentNotFound(f"Unknown payment: {payment_id}")
        return payment

    def _for_kiosk(self, session: Session, who: KioskCredentials, payment_id: str) -> Payment:
        """The payment, for a KIOSK allowed for its shop (authenticated in the same transaction)."""
        kiosk = who.verify(session)
        p = self.get(payment_id, session)
        kiosks.require_shop(kiosk, p.shop_id)
        return p

    # ================================================================== 1.1 / 1.2 new payment

    def open_new(
        self, who: KioskCredentials, purchase_id: str, amount: int, currency: str, shop_id: str, address: str
    ) -> Payment:
        with self.db.session() as session:
            kiosk = who.verify(session)
            kiosks.require_shop(kiosk, shop_id)
            existing = self._by_purchase(session, shop_id, purchase_id)
            try:
                account = wallets.resolve(session, address) or checksum(address)
            except TemporaryAccountNotFound:  # perhaps used by the same purchase a moment ago: a retry
                existing = existing or self._by_purchase(session, shop_id, purchase_id)
                if existing is None:
                    raise
            if existing is not None:
                return self._same_purchase(existing, kiosk, amount, currency, address)
            self._not_reported(session, shop_id, purchase_id)
        self.chain.require_shop(shop_id)
        estimate = self.chain.estimate(account, amount, currency)
        total = estimate.total_point if estimate.loyalty_type == POINT else estimate.total_token
        if estimate.balance < total:
            raise InsufficientBalance(f"The balance {estimate.balance} does not cover the total {total}.")
        limits.check("payments for a wallet", account)  # each one pushes a request to the wallet's app
        amounts = {k: str(v) for k, v in vars(estimate).items() if k not in ("loyalty_type", "balance")}
        payment = Payment(
            payment_id="0x" + secrets.token_hex(32), purchase_id=purchase_id, amount=str(amount), currency=currency,
            shop_id=shop_id, account=account, kiosk_account=address, kiosk_id=kiosk.id,
            loyalty_type=estimate.loyalty_type, status=S.NEW, open_new_at=int(time.time()), **amounts,
        )  # fmt: skip
        try:
            with self.db.session() as session:
                if address != account:
                    wallets.consume(session, address)
                session.add(payment)
                session.flush()
                self._not_reported(session, shop_id, purchase_id)  # again: a report stored meanwhile earns
                notify(session, account, "payment.new", payment.payment_id, kiosk_view(payment) | {"account": account})
        except (IntegrityError, TemporaryAccountNotFound):
            # The same purchase arrived concurrently (and took the temporary address): a retry.
            with self.db.session() as session:
                existing = self._by_purchase(session, shop_id, purchase_id)
            if existing is None:
                raise
            return self._same_purchase(existing, kiosk, amount, currency, address)
        return payment

    @staticmethod
    def _by_purchase(session: Session, shop_id: str, purchase_id: str) -> Payment | None:
        return session.execute(BY_PURCHASE, {"shop_id": shop_id, "purchase_id": purchase_id}).scalar_one_or_none()

    @staticmethod
    def _not_reported(session: Session, shop_id: str, purchase_id: str) -> None:
        """DuplicatePurchase if the purchase was reported as paid otherwise (it earns loyalty)."""
        if session.get(Purchase, (shop_id, purchase_id)) is not None:
            raise DuplicatePurchase(f"Purchase {purchase_id} was reported as paid otherwise (it earns loyalty).")

    @staticmethod
    def _same_purchase(existing: Payment, kiosk: Kiosk, amount: int, currency: str, address: str) -> Payment:
        given = (kiosk.id, str(amount), currency, address.lower())
        if (existing.kiosk_id, existing.amount, existing.currency, existing.kiosk_account.lower()) != given:
            raise DuplicatePurchase(f"Purchase {existing.purchase_id} already has payment {existing.payment_id}.")
        return existing

    def item(self, payment_id: str, token: str | None = None) -> tuple[Payment, bool, dict[str, Any] | None]:
        """The payment; whether the caller may see its wallet; the EIP-712 documents of its pending
        decision. Opened through a temporary address, it shows its wallet and documents only to a
        session (`token`) of the wallet, and a cancel's documents (naming only the shop owner) to the
        owner's (DESIGN.md §5); opened with the wallet, to anyone (spec 5.1)."""
        with self.db.session() as session:
            viewer = wallets.session_of(session, token).account.lower() if wallets.is_session_token(token) else None
            p = self.get(payment_id, session)
            public = p.kiosk_account.lower() == p.account.lower() or viewer == p.account.lower()
            if p.status not in (S.NEW, S.CANCEL_RECEIVED) or not (public or viewer):
                return p, public, None
            signer, deadline = decisions.signer_and_deadline(self.chain, self.settings, p)
            if not public and viewer != signer.lower():
                return p, public, None
            confirm = decisions.approval(session, self.chain, self.settings, p, signer, deadline)
            return p, public, {"confirm": confirm, "deny": decisions.denial(self.chain, p, signer, deadline)}

    def confirm_new(self, payment_id: str, signature: str) -> Payment:
        return self._approve(payment_id, signature, S.NEW, S.APPROVED, ChainOp.OPEN)

    def deny_new(self, payment_id: str, signature: str) -> Payment:
        return self._deny(payment_id, signature, S.NEW, S.DENIED, "create")

    def close_new(self, who: KioskCredentials, payment_id: str, confirm: bool) -> Payment:
        op = ChainOp.CLOSE if confirm else ChainOp.REFUND
        return self._close(who, payment_id, ChainOp.OPEN, S.APPROVED, op, S.COMPLETED if confirm else S.REFUNDED)

    # ================================================================== 1.3 / 1.4 cancel

    def open_cancel(self, who: KioskCredentials, payment_id: str) -> Payment:
        with self.db.session() as session:
            p = self._for_kiosk(session, who, payment_id)
        if p.status == S.CANCEL_RECEIVED:
            return p  # a retry
        self._require(p, S.COMPLETED, S.CANCEL_DENIED, idle=True)
        on_chain = self.chain.payment_of(payment_id)
        if on_chain.status != onchain.CLOSED or self.chain.latest_timestamp() > on_chain.deadline:
            raise InvalidStatus("The cancel period of this payment is over.")
        owner = self.chain.shop(p.shop_id).account
        with self.db.session() as session:
            where = {"status": {S.COMPLETED, S.CANCEL_DENIED}, "chain_op": None}
            received = update_payment(
                session, payment_id, where, {"status": S.CANCEL_RECEIVED, "open_cancel_at": int(time.time())}
            )
            if received is None:
                return self._require(self.get(payment_id, session), S.CANCEL_RECEIVED)
            notify(session, owner, "cancel.new", payment_id, kiosk_view(received))
        return received

    def confirm_cancel(self, payment_id: str, signature: str) -> Payment:
        return self._approve(payment_id, signature, S.CANCEL_RECEIVED, S.CANCEL_APPROVED, ChainOp.OPEN_CANCEL)

    def deny_cancel(self, payment_id: str, signature: str) -> Payment:
        return self._deny(payment_id, signature, S.CANCEL_RECEIVED, S.CANCEL_DENIED, "cancel")

    def close_cancel(self, who: KioskCredentials, payment_id: str, confirm: bool) -> Payment:
        op = ChainOp.CLOSE_CANCEL if confirm else ChainOp.REVERT_CANCEL
        done = S.CANCEL_COMPLETED if confirm else S.COMPLETED
        return self._close(who, payment_id, ChainOp.OPEN_CANCEL, S.CANCEL_APPROVED, op, done)

    # ================================================================== internals

    def _approve(self, payment_id: str, signature: str, pending: int, approved: int, op: ChainOp) -> Payment:
        """The user's (or for a cancel the owner's) signed approval: verified, claimed and sent. A
        retry of an approval already claimed, here or concurrently, answers with the payment once
        its transaction is sent."""
        claimed = None
        with self.db.session() as session:
            p = self.get(payment_id, session)
            if p.status != approved or p.signature != signature:  # else a retry
                self._require(p, pending)
                signer, deadline = decisions.signer_and_deadline(self.chain, self.settings, p)
                typed = decisions.approval(session, self.chain, self.settings, p, signer, deadline)
                try:
                    self._verify(typed, signature, signer, deadline)
                except RelayError:
                    again = self.get(payment_id)  # a concurrent retry's claim moved the nonce on?
                    if again.status != approved or again.signature != signature:
                        raise
                else:
                    claimed = self.ops.claim(session, p, {pending}, op, status=approved, signature=signature,
                                             signer=signer)  # fmt: skip
                if claimed is None:
                    p = self.get(payment_id, session)
                    if p.status != approved or p.signature != signature:
                        raise InvalidStatus(f"Payment {payment_id} changed meanwhile (status {p.status}); reload it.")
        if claimed is not None:
            return self.ops.submit(claimed, restore={"status": pending, "signature": None, "signer": None})
        return self._sent(p)

    def _deny(self, payment_id: str, signature: str, pending: int, denied: int, type_: str) -> Payment:
        with self.db.session() as session:
            p = self.get(payment_id, session)
            self._require(p, pending)
            signer, deadline = decisions.signer_and_deadline(self.chain, self.settings, p)
            self._verify(decisions.denial(self.chain, p, signer, deadline), signature, signer, deadline)
            return self._decide(session, p, {pending}, denied, type_, notify_app=pending == S.NEW)

    def _close(
        self, who: KioskCredentials, payment_id: str, opening: ChainOp, approved: int, op: ChainOp, done: int
    ) -> Payment:
        """A KIOSK's closing step: claims `op` on the approved payment (after its opening, if that is
        still being mined: a KIOSK may close the moment the app approves), sends it, and answers
        once it is executed. A retry of a close in flight or done answers with its outcome."""
        with self.db.session() as session:  # in the common case the key, the payment and the claim take one
            p = self._for_kiosk(session, who, payment_id)
            claimed = self.ops.claim(session, p, {approved}, op) if p.status == approved and not p.chain_op else None
        for _ in range(3):  # a lost claim is looked at again: a concurrent close, or an opening recorded
            if claimed is not None:
                return self._executed(self._settled(self.ops.submit(claimed, restore={})), op, done)
            p = self.get(payment_id)
            if p.chain_op == opening:
                p = self._settled(p)
            if p.chain_op == op:  # the same close, in flight
                return self._executed(self._settled(p), op, done)
            if p.chain_op is None and p.status == done and (op in (ChainOp.CLOSE, ChainOp.REFUND) or p.close_cancel_at):
                return p  # a retry of a close done
            self._require(p, approved, idle=True)
            with self.db.session() as session:
                claimed = self.ops.claim(session, p, {approved}, op)
        raise InvalidStatus(f"Payment {payment_id} keeps changing; reload it.")

    def _executed(self, p: Payment, op: ChainOp, done: int) -> Payment:
        """The payment once its close is executed; the chain's reason if it refused the close."""
        if p.chain_op is not None:
            raise ChainUnavailable(
                f"Transaction {p.chain_tx} was sent but is not mined yet; call again to see the result."
            )
        if p.status != done:
            raise self.ops.refusal(p, op) or InvalidStatus(p.error or f"Payment {p.payment_id} has status {p.status}.")
        return p

    def _settled(self, p: Payment) -> Payment:
        """The payment once its operation in flight is recorded (or as it is after the receipt timeout)."""
        deadline = time.monotonic() + self.settings.receipt_timeout
        while p.chain_op is not None and time.monotonic() < deadline:
            finished = self.watcher.wait(p.chain_tx, deadline - time.monotonic(), p) if p.chain_tx else None
            if finished is not None and isinstance(finished.outcome, Payment):
                p = finished.outcome  # recorded by this process's watcher
                continue
            if finished is not None or p.chain_tx is None:
                time.sleep(SENDING_WAIT)  # being sent by another request; or recorded by another process
            p = self.get(p.payment_id)
        return p

    def _sent(self, p: Payment) -> Payment:
        """An approval retried: the payment as it stands once its transaction is sent."""
        deadline = time.monotonic() + self.settings.receipt_timeout
        while p.chain_tx is None and p.chain_op is not None and time.monotonic() < deadline:
            time.sleep(SENDING_WAIT)
            p = self.get(p.payment_id)
        return p

    def _decide(
        self, session: Session, p: Payment, before: set[int], status: int, type_: str, notify_app: bool = False
    ) -> Payment:
        """Records a denial (once: a concurrent retry of it is answered with the payment as denied)."""
        values = {"status": status, "decided_at": now()}
        decided = update_payment(session, p.payment_id, {"status": before, "chain_op": None}, values)
        if decided is None:
            return self._require(self.get(p.payment_id, session), status)
        queue_callback(session, decided, type_, DENIED)
        if notify_app:
            notify(session, p.account, "payment.denied", p.payment_id, {"paymentStatus": status})
        return decided

    @staticmethod
    def _require(p: Payment, *statuses: int, idle: bool = False) -> Payment:
        if p.status not in statuses:
            names = ", ".join(str(s) for s in statuses)
            raise InvalidStatus(f"Payment {p.payment_id} has status {p.status}; this action needs {names}.")
        if idle and p.chain_op is not None:
            raise InvalidStatus(f"Payment {p.payment_id} is waiting for its transaction {p.chain_tx or ''}.")
        return p

    def _verify(self, typed: dict[str, Any], signature: str, signer: str, deadline: int) -> None:
        require_deadline(deadline)
        verify(self.chain, typed, signature, signer)


def queue_callback(session: Session, p: Payment, type_: str, code: int, message: str | None = None) -> None:
    """The KIOSK's callback for a decision or a timeout of the payment."""
    enqueue_callback(session, p.kiosk_id, p.payment_id, type_, code, message or MESSAGES[(type_, code)], kiosk_view(p))
