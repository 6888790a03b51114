"""Purchase rewards: a KIOSK reports a purchase; after the shop's `provideWaitTime` the relay
credits the shop's `providePercent` of it to the buyer through the ledger's provider role.

Reports are idempotent on (shopId, purchaseId). A purchase is claimed with a lease before its
transaction is sent; after a crash, the chain's LoyaltyProvided events decide whether it was
already credited, so a reward is never paid twice.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from relay.chain import Chain, ShopInfo
from relay.config import Settings
from relay.db import Database, insert_if_absent
from relay.errors import (
    ChainUnavailable,
    DuplicatePurchase,
    InvalidParameter,
    InvalidStatus,
    RelayError,
    RewardCapExceeded,
    RewardLimitExceeded,
)
from relay.models import Payment, PaymentStatus, Purchase, PurchaseStatus, now
from relay.services import kiosks, wallets
from relay.services.kiosks import Kiosk
from relay.services.nonces import SignerNonces
from relay.workers.watcher import Watcher

log = logging.getLogger(__name__)

DAY = 24 * 3600  # the ledger's cap period: UTC days
GAS = 150_000  # a reward takes up to 86k (GAS.md)
PERCENT = 10_000  # providePercent is in hundredths of a percent

# A purchase paid with loyalty earns none: these payment statuses mean loyalty was (or may yet be) spent.
PAID_WITH_LOYALTY = {
    PaymentStatus.NEW,
    PaymentStatus.APPROVED,
    PaymentStatus.COMPLETED,
    PaymentStatus.CANCEL_RECEIVED,
    PaymentStatus.CANCEL_APPROVED,
    PaymentStatus.CANCEL_DENIED,
}


class Rewards:
    def __init__(self, db: Database, chain: Chain, settings: Settings, nonces: SignerNonces, watcher: Watcher) -> None:
        self.db = db
        self.chain = chain
        self.settings = settings
        self.nonces = nonces
        self.watcher = watcher

    def report(
        self, kiosk: Kiosk, purchase_id: str, amount: int, currency: str, shop_id: str, address: str
    ) -> Purchase:
        """Records a purchase once; a report repeated with the same values answers the same purchase."""
        kiosks.require_shop(kiosk, shop_id)
        with self.db.session() as session:
            existing = self._reported(session, purchase_id, amount, currency, shop_id, address)
            if existing is not None:
                return existing
            if self._paid_with_loyalty(session, shop_id, purchase_id):
                raise InvalidStatus(f"Purchase {purchase_id} has a loyalty payment, which earns no loyalty.")
            account = wallets.resolve(session, address) or address
        shop, expected = self._reward(shop_id, amount, currency)
        if expected == 0:  # the ledger refuses a reward of 0
            raise InvalidParameter(
                f"The purchase would earn no points at the shop's reward rate of {shop.provide_percent / 100} %."
            )
        with self.db.session() as session:  # the same report may arrive concurrently: one insert wins
            self._within_limits(session, kiosk.id, shop_id, expected, now())
            values = {"account": account, "kiosk_account": address, "kiosk_id": kiosk.id, "currency": currency}
            values |= {"amount": str(amount), "provide_at": time.time() + shop.provide_wait_time}
            values |= {"expected_point": str(expected)}
            session.execute(insert_if_absent(self.db, Purchase, shop_id=shop_id, purchase_id=purchase_id, **values))
            reported = self._reported(session, purchase_id, amount, currency, shop_id, address)
        assert reported is not None
        return reported

    def _reward(self, shop_id: str, amount: int, currency: str) -> tuple[ShopInfo, int]:
        """The shop and the reward the ledger would pay for the purchase now."""
        shop = self.chain.shop(shop_id)  # ShopNotFound
        return shop, self.chain.to_point(amount, currency) * shop.provide_percent // PERCENT  # UnknownCurrency

    def _within_limits(
        self, session: Session, kiosk_id: int, shop_id: str, expected: int, reported_at: float, replaced: int = 0
    ) -> None:
        """RewardLimitExceeded past the relay's reward limits: per purchase, and per KIOSK and per shop
        in the UTC day of the report (what is expected of the purchases reported that day and not
        failed, `replaced` being the part of it that `expected` replaces). Concurrent reports may each
        pass the check: they exceed a daily limit by at most their own rewards; the ledger's daily
        reward cap bounds every KIOSK and shop together on chain."""
        s = self.settings
        if expected > s.reward_limit_purchase:
            raise RewardLimitExceeded(
                f"The purchase would earn {expected} points, more than the {s.reward_limit_purchase} a purchase may."
            )
        day = reported_at // DAY * DAY
        of_day = select(Purchase.expected_point).where(
            Purchase.created_at >= day, Purchase.created_at < day + DAY, Purchase.status != PurchaseStatus.FAILED
        )
        for name, where, limit in (
            ("KIOSK", Purchase.kiosk_id == kiosk_id, s.reward_limit_kiosk_day),
            ("shop", Purchase.shop_id == shop_id, s.reward_limit_shop_day),
        ):
            used = sum(int(e or 0) for e in session.execute(of_day.where(where)).scalars()) - replaced
            if used + expected > limit:
                raise RewardLimitExceeded(
                    f"The {name}'s purchases reported on {time.strftime('%Y-%m-%d', time.gmtime(day))} (UTC) would "
                    f"earn {used + expected} points, more than its daily limit of {limit}; it resets at 00:00 UTC."
                )

    @staticmethod
    def _reported(
        session: Session, purchase_id: str, amount: int, currency: str, shop_id: str, address: str
    ) -> Purchase | None:
        """The purchase if it was reported; DuplicatePurchase if it was, with other values."""
        existing = session.get(Purchase, (shop_id, purchase_id))
        reported = (str(amount), currency, address.lower())
        if existing is not None and (existing.amount, existing.currency, existing.kiosk_account.lower()) != reported:
            raise DuplicatePurchase(f"Purchase {purchase_id} was already reported with other values.")
        return existing

    @staticmethod
    def _paid_with_loyalty(session: Session, shop_id: str, purchase_id: str) -> bool:
        query = select(Payment.status).where(Payment.shop_id == shop_id, Payment.purchase_id == purchase_id)
        return session.execute(query).scalar() in PAID_WITH_LOYALTY

    def get(self, shop_id: str, purchase_id: str) -> Purchase | None:
        with self.db.session() as session:
            return session.get(Purchase, (shop_id, purchase_id))

    def run_once(self) -> int:
        """Credits the purchases whose wait time has passed; returns how many it handled."""
        t = now()
        lease = 2 * self.settings.receipt_timeout
        waiting = (Purchase.status == PurchaseStatus.WAITING, Purchase.provide_at <= t, Purchase.locked_until <= t)
        query = select(Purchase).where(*waiting).order_by(Purchase.provide_at).limit(20)
        with self.db.session() as session:
            due = session.execute(query.with_for_update(skip_locked=True)).scalars().all()
            claimed = [(p, p.locked_until > 0) for p in due]
            for p in due:
                p.locked_until = t + lease
        for purchase, retried in claimed:
            self._provide(purchase, retried)
        return len(claimed)

    def _provide(self, p: Purchase, retried: bool) -> None:
        # A previous attempt may have credited it before the relay stopped.
        if (retried or p.tx) and self._record_if_provided(p):
            return
        with self.db.session() as session:  # a loyalty payment opened for it since it was reported
            paid_with_loyalty = self._paid_with_loyalty(session, p.shop_id, p.purchase_id)
        if paid_with_loyalty:
            self._set(p, status=PurchaseStatus.FAILED, error="The purchase has a loyalty payment.")
            return
        call = self.chain.ledger.call("provide", p.account, p.shop_id, p.purchase_id, int(p.amount), p.currency)
        try:
            self._within_limits_now(p)
            tx = self.chain.send(call, self.nonces, gas=GAS, simulate=True)
        except ChainUnavailable:
            self._set(p, locked_until=0.0)
            return
        except RelayError as exc:
            self._refused(p, exc)
            return
        self._set(p, tx=tx)
        finished = self.watcher.wait(tx, self.settings.receipt_timeout)
        if finished is not None:
            receipt = finished.receipt
            if receipt["status"] != 1:  # refused after its simulation (another reward took the cap, ...)
                self._refused(p, self.chain.why_reverted(call))
                return
            self._record(p, self.chain.events(receipt, "Ledger", "LoyaltyProvided")[0], tx)

    def _within_limits_now(self, p: Purchase) -> None:
        """The ledger pays the shop's percent at payout, not the one the report was admitted with: a
        reward that grew since is held to the limits again, in place of what was admitted."""
        admitted = int(p.expected_point or 0)
        reward = self._reward(p.shop_id, int(p.amount), p.currency)[1]
        if reward <= admitted:
            return
        with self.db.session() as session:
            try:
                self._within_limits(session, p.kiosk_id, p.shop_id, reward, p.created_at, admitted)
            except RewardLimitExceeded as exc:
                raise RewardLimitExceeded(
                    f"The shop's reward rate (or the currency's rate) rose after the report: the reward ({reward} "
                    f"points, {admitted} when reported) would exceed the relay's reward limits. {exc.message}"
                ) from exc
        self._set(p, expected_point=str(reward))

    def _refused(self, p: Purchase, exc: RelayError) -> None:
        """The ledger (or the relay's reward limits) refused the reward. Past the day's reward cap it
        waits for the next UTC day, when the cap allows rewards again; any other refusal (the shop's
        credit limit, ...) stands, so the purchase fails with its reason."""
        if isinstance(exc, RewardCapExceeded):
            self._set(p, provide_at=(now() // DAY + 1) * DAY, locked_until=0.0, error=exc.message)
        else:
            self._set(p, status=PurchaseStatus.FAILED, error=exc.message)

    def _record_if_provided(self, p: Purchase) -> bool:
        start = self.chain.deployment.get("startBlock", 0)
        for event in self.chain.event_logs("Ledger", "LoyaltyProvided", start, p.account, p.shop_id):
            if event["purchaseId"] == p.purchase_id:
                self._record(p, event, event["transactionHash"])
                return True
        return False

    def _record(self, p: Purchase, event: dict[str, object], tx: str) -> None:
        self._set(
            p,
            status=PurchaseStatus.PROVIDED,
            tx=tx,
            loyalty_type=int(event["loyaltyType"]),  # type: ignore[call-overload]
            reward=str(event["amount"]),
            reward_point=str(event["rewardPoint"]),
        )

    def _set(self, p: Purchase, **values: object) -> None:
        with self.db.session() as session:
            session.execute(
                update(Purchase)
                .where(Purchase.shop_id == p.shop_id, Purchase.purchase_id == p.purchase_id)
                .values(values)
            )
