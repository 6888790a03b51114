"""Shop onboarding and settlement (spec §1.5): actions the shop owner signs in the app and the
relay submits to the shop registry. A new shop costs the relay gas: with `shop_approval` on, a
valid AddShop sends nothing until an operator approved its (shop id, owner); it records a request,
which the operator approves or rejects (admin page, `loyalty shop`), and the owner sends it again."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, true, update
from sqlalchemy.orm import Session

from relay import typed_data
from relay.chain import Chain, ShopInfo
from relay.config import Settings
from relay.db import Database, insert_if_absent
from relay.errors import (
    AmountNotAvailable,
    ChainRejected,
    ChainUnavailable,
    InvalidParameter,
    InvalidStatus,
    ShopApprovalPending,
    ShopNotFound,
    ShopRegistrationRefused,
    TooManyShopRequests,
)
from relay.models import ShopRegistration, now
from relay.services.nonces import SignerNonces
from relay.services.signatures import require_deadline, verify
from relay.workers.watcher import Watcher

# Each action: its EIP-712 fields besides account, nonce and deadline (= the registry function's arguments).
ACTIONS = {
    "AddShop": ("shopId", "name", "provideWaitTime", "providePercent"),
    "UpdateShop": ("shopId", "name", "provideWaitTime", "providePercent"),
    "OpenWithdrawal": ("shopId", "amount"),
    "CloseWithdrawal": ("shopId",),
}
GAS = 400_000  # a shop's name is stored on chain: up to ~250k for a 100-character name (and simulated first)
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
log = logging.getLogger(__name__)


class Shops:
    def __init__(self, db: Database, chain: Chain, settings: Settings, nonces: SignerNonces, watcher: Watcher) -> None:
        self.db = db  # where shop registrations wait for approval
        self.chain = chain
        self.settings = settings
        self.nonces = nonces
        self.watcher = watcher

    def info(self, shop_id: str) -> ShopInfo:
        return self.chain.shop(shop_id)

    def typed_data(self, action: str, message: dict[str, Any], deadline: int | None = None) -> dict[str, Any]:
        """The document the owner signs for `action`, with the owner's current registry nonce."""
        if action not in ACTIONS:
            raise InvalidParameter(f"action must be one of {', '.join(ACTIONS)}")
        if action != "AddShop":
            message = message | {"account": self.chain.shop(message["shopId"]).account}
        if "account" not in message:
            raise InvalidParameter("account (the shop owner) is required")
        deadline = deadline if deadline is not None else int(time.time()) + self.settings.signature_ttl
        message = message | {"nonce": self.chain.shop_nonce(message["account"]), "deadline": deadline}
        try:
            return typed_data.build(action, self.chain.shop_domain(), message)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc

    def submit(
        self, action: str, message: dict[str, Any], deadline: int, signature: str, client_ip: str = "unknown"
    ) -> tuple[ShopInfo, str]:
        """Verifies the owner's signature, sends the action and waits for it to be mined."""
        require_deadline(deadline)
        shop_id = message["shopId"]
        if action == "OpenWithdrawal":
            shop = self.chain.shop(shop_id)
            if shop.withdraw_open:
                raise InvalidStatus(f"A withdrawal of {shop.withdraw_amount} is already open; complete it first.")
            available = max(0, shop.settled_point - shop.withdrawn_point)
            if message["amount"] > available:
                raise AmountNotAvailable(f"The shop may withdraw at most {available} (settled - withdrawn).")
        elif action == "CloseWithdrawal" and not self.chain.shop(shop_id).withdraw_open:
            raise InvalidStatus("The shop has no open withdrawal.")
        typed = self.typed_data(action, message, deadline)
        owner = typed["message"]["account"]
        verify(self.chain, typed, signature, owner)
        if action == "AddShop" and self.settings.shop_approval:
            self._admit(owner, message, client_ip)
        args = [message[field] for field in ACTIONS[action]] + ([owner] if action == "AddShop" else [])
        name = action[0].lower() + action[1:]
        call = self.chain.shops.call(name, *args, deadline, signature)
        tx = self.chain.send(call, self.nonces, gas=GAS, signed_by=owner, simulate=True)
        finished = self.watcher.wait(tx, self.settings.receipt_timeout)
        if finished is None:
            raise ChainUnavailable(f"Transaction {tx} was sent but is not mined yet.")
        if finished.receipt["status"] != 1:  # e.g. a concurrent action of the owner took its nonce first
            raise ChainRejected(f"Transaction {tx} reverted: {self.chain.why_reverted(call).message}")
        return self.chain.shop(shop_id), tx

    def _admit(self, owner: str, message: dict[str, Any], client_ip: str) -> None:
        """Returns if an operator approved this (shop id, owner); otherwise records the request (within
        the pending limits) and raises: nothing is sent."""
        shop_id = message["shopId"]
        try:
            self.chain.shop(shop_id)
        except ShopNotFound:
            pass
        else:
            raise ShopRegistrationRefused(f"Shop {shop_id} is already registered.")
        with self.db.session() as session:
            request = session.get(ShopRegistration, shop_id)
            if request is not None and request.status == REJECTED and request.owner != owner:
                session.delete(request)  # a rejection keeps the id from its owner only
                session.flush()
                request = None
            if request is None:
                self._within_limits(session, owner, client_ip)
                fields = {"name": message["name"], "provide_wait_time": message["provideWaitTime"]}
                row = fields | {"provide_percent": message["providePercent"], "client_ip": client_ip}
                new = insert_if_absent(self.db, ShopRegistration, shop_id=shop_id, owner=owner, status=PENDING, **row)
                session.execute(new.values(requested_at=now()))
                request = session.get(ShopRegistration, shop_id, populate_existing=True)
                assert request is not None
            status, requested_by = request.status, request.owner
        if requested_by != owner:
            raise ShopRegistrationRefused(f"Shop {shop_id} is already requested by another owner.")
        if status == REJECTED:
            raise ShopRegistrationRefused(f"The operator rejected the registration of shop {shop_id}.")
        if status == PENDING:
            log.info("shop %s of %s waits for the operator's approval (from %s)", shop_id, owner, client_ip)
            raise ShopApprovalPending(
                f"Shop {shop_id} waits for the operator's approval; nothing was sent. "
                "Sign and send the registration again once it is approved."
            )

    def _within_limits(self, session: Session, owner: str, client_ip: str) -> None:
        pending = select(func.count()).where(ShopRegistration.status == PENDING)
        s = self.settings
        for who, where, limit in (
            (owner, ShopRegistration.owner == owner, s.shop_requests_per_owner),
            (client_ip, ShopRegistration.client_ip == client_ip, s.shop_requests_per_ip),
            ("The relay", true(), s.shop_requests_pending),  # many addresses together: the operator's queue
        ):
            if (session.scalar(pending.where(where)) or 0) >= limit:
                raise TooManyShopRequests(
                    f"{who} already has {limit} shop registrations waiting for approval; wait for the operator."
                )


def registrations(session: Session, status: str = PENDING, limit: int | None = None) -> Sequence[ShopRegistration]:
    """Shop registrations of a status, oldest first (the first `limit`)."""
    query = select(ShopRegistration).where(ShopRegistration.status == status)
    return session.scalars(query.order_by(ShopRegistration.requested_at).limit(limit)).all()


def decide(session: Session, shop_id: str, approve: bool, by: str) -> bool:
    """Approves or rejects a pending registration, once: False if none is pending for `shop_id`."""
    decided = (
        update(ShopRegistration)
        .where(ShopRegistration.shop_id == shop_id, ShopRegistration.status == PENDING)
        .values(status=APPROVED if approve else REJECTED, decided_at=now(), decided_by=by)
    )
    if session.execute(decided).rowcount != 1:  # type: ignore[attr-defined]
        return False
    log.info("shop %s %s by %s", shop_id, "approved" if approve else "rejected", by)
    return True
