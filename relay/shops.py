"""Shop onboarding and settlement (spec §1.5): actions the shop owner signs in the app and the
relay submits to the shop registry."""

from __future__ import annotations

import time
from typing import Any

from relay import typed_data
from relay.calls import Call
from relay.chain import Chain, Shop
from relay.config import Settings
from relay.errors import AmountNotAvailable, ChainUnavailable, ExpiredSignature, InvalidParameter, InvalidStatus
from relay.payments import verify_signature

ACTIONS = ("AddShop", "UpdateShop", "OpenWithdrawal", "CloseWithdrawal")


class Shops:
    def __init__(self, chain: Chain, settings: Settings) -> None:
        self.chain = chain
        self.settings = settings

    def typed_data(self, action: str, message: dict[str, Any], deadline: int | None = None) -> dict[str, Any]:
        """The document the owner signs for `action`, with the owner's current registry nonce."""
        if action not in ACTIONS:
            raise InvalidParameter(f"action must be one of {', '.join(ACTIONS)}")
        if action != "AddShop":
            message = message | {"account": self.chain.shop(message["shopId"]).account}
        if "account" not in message:
            raise InvalidParameter("account (the shop owner) is required")
        message = message | {
            "nonce": self.chain.shop_nonce(message["account"]),
            "deadline": deadline if deadline is not None else int(time.time()) + self.settings.signature_ttl,
        }
        try:
            return typed_data.build(action, self.chain.shop_domain(), message)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from exc

    def _submit(self, action: str, message: dict[str, Any], deadline: int, signature: str, fn: Call) -> str:
        if deadline < time.time():
            raise ExpiredSignature(f"The deadline {deadline} has passed.")
        typed = self.typed_data(action, message, deadline)
        verify_signature(self.chain, typed, signature, typed["message"]["account"])
        tx = self.chain.send(fn, signed_by=typed["message"]["account"])
        if self.chain.wait(tx, self.settings.receipt_timeout) is None:
            raise ChainUnavailable(f"Transaction {tx} was sent but is not mined yet.")
        return tx

    def add(
        self, shop_id: str, name: str, wait: int, percent: int, account: str, deadline: int, signature: str
    ) -> tuple[Shop, str]:
        message = {
            "shopId": shop_id,
            "name": name,
            "provideWaitTime": wait,
            "providePercent": percent,
            "account": account,
        }
        fn = self.chain.shops.functions.addShop(shop_id, name, wait, percent, account, deadline, signature)
        tx = self._submit("AddShop", message, deadline, signature, fn)
        return self.chain.shop(shop_id), tx

    def update(
        self, shop_id: str, name: str, wait: int, percent: int, deadline: int, signature: str
    ) -> tuple[Shop, str]:
        message = {"shopId": shop_id, "name": name, "provideWaitTime": wait, "providePercent": percent}
        fn = self.chain.shops.functions.updateShop(shop_id, name, wait, percent, deadline, signature)
        tx = self._submit("UpdateShop", message, deadline, signature, fn)
        return self.chain.shop(shop_id), tx

    def open_withdrawal(self, shop_id: str, amount: int, deadline: int, signature: str) -> tuple[Shop, str]:
        shop = self.chain.shop(shop_id)
        if shop.withdraw_open:
            raise InvalidStatus(f"A withdrawal of {shop.withdraw_amount} is already open; complete it first.")
        available = max(0, shop.settled_point - shop.withdrawn_point)
        if amount > available:
            raise AmountNotAvailable(f"The shop may withdraw at most {available} (settled - withdrawn).")
        fn = self.chain.shops.functions.openWithdrawal(shop_id, amount, deadline, signature)
        tx = self._submit("OpenWithdrawal", {"shopId": shop_id, "amount": amount}, deadline, signature, fn)
        return self.chain.shop(shop_id), tx

    def close_withdrawal(self, shop_id: str, deadline: int, signature: str) -> tuple[Shop, str]:
        if not self.chain.shop(shop_id).withdraw_open:
            raise InvalidStatus("The shop has no open withdrawal.")
        fn = self.chain.shops.functions.closeWithdrawal(shop_id, deadline, signature)
        tx = self._submit("CloseWithdrawal", {"shopId": shop_id}, deadline, signature, fn)
        return self.chain.shop(shop_id), tx
