"""The payments' timeouts (a worker): a decision not made in time, and an approved payment or
cancel that its KIOSK never closed."""

from __future__ import annotations

import logging

from sqlalchemy import select

from relay.config import Settings
from relay.db import Database
from relay.errors import RelayError
from relay.models import ChainOp, Payment, PaymentStatus, now
from relay.services.operations import Operations, update_payment
from relay.services.outbox import TIMEOUT, notify
from relay.services.payments import queue_callback

log = logging.getLogger(__name__)
S = PaymentStatus
# A decision not made in time: (the pending status, when it was asked, the status it leaves, the
# callback type, the app's notification). A cancel nobody decided leaves the payment as it stands.
UNDECIDED = (
    (S.NEW, Payment.open_new_at, S.TIMEOUT, "create", "payment.timeout"),
    (S.CANCEL_RECEIVED, Payment.open_cancel_at, S.COMPLETED, "cancel", None),
)


class Timeouts:
    def __init__(self, db: Database, settings: Settings, ops: Operations) -> None:
        self.db = db
        self.settings = settings
        self.ops = ops

    def expire(self) -> int:
        """Applies the timeouts; returns how many payments it changed."""
        t, changed = now(), 0
        with self.db.session() as session:
            for pending, asked_at, status, type_, kind in UNDECIDED:
                late = select(Payment).where(Payment.status == pending, asked_at < t - self.settings.payment_timeout)
                undecided = {"status": {pending}, "chain_op": None}
                for p in session.execute(late).scalars().all():
                    if update_payment(session, p.payment_id, undecided, {"status": status}):
                        queue_callback(session, p, type_, TIMEOUT)
                        if kind is not None:
                            notify(session, p.account, kind, p.payment_id, {"paymentStatus": status})
                        changed += 1
            unclosed = session.execute(
                select(Payment).where(
                    Payment.status.in_([S.APPROVED, S.CANCEL_APPROVED]),
                    Payment.chain_op.is_(None),
                    Payment.decided_at < t - self.settings.close_timeout,
                )
            ).scalars().all()  # fmt: skip
        for p in unclosed:
            changed += self._close_unclosed(p)
        return changed

    def _close_unclosed(self, p: Payment) -> int:
        """An approved payment (or cancel) the KIOSK never closed: the loyalty goes back to the user."""
        new = p.status == S.APPROVED
        with self.db.session() as session:
            claimed = self.ops.claim(session, p, {p.status}, ChainOp.REFUND if new else ChainOp.CLOSE_CANCEL)
            if claimed is None:
                return 0
            message = (
                "The approved payment was not closed in time and has been refunded."
                if new
                else "The approved cancellation was not closed in time and has been completed."
            )
            queue_callback(session, claimed, "create" if new else "cancel", TIMEOUT, message)
        try:
            self.ops.submit(claimed, restore={})
        except RelayError as exc:  # the claim is released (or the refusal recorded): tried again next round
            log.warning("closing unclosed payment %s: %s", p.payment_id, exc.message)
        return 1
