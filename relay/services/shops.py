"""Shop onboarding and settlement (spec §1.5): actions the shop owner signs in the app and the
relay submits to the shop registry."""

from __future__ import annotations

import time
from typing import Any

from relay import typed_data
from relay.chain import Chain, ShopInfo
from relay.config import Settings
from relay.errors import AmountNotAvailable, ChainUnavailable, InvalidParameter, InvalidStatus
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


class Shops:
    def __init__(self, chain: Chain, settings: Settings, nonces: SignerNonces, watcher: Watcher) -> None:
        self.chain = chain
        self.settings = settings
        self.nonces = nonces
        self.watcher = watcher

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

    def submit(self, action: str, message: dict[str, Any], deadline: int, signature: str) -> tuple[ShopInfo, str]:
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
        args = [message[field] for field in ACTIONS[action]] + ([owner] if action == "AddShop" else [])
        name = action[0].lower() + action[1:]
        call = self.chain.shops.call(name, *args, deadline, signature)
        tx = self.chain.send(call, self.nonces, gas=GAS, signed_by=owner, simulate=True)
        if self.watcher.wait(tx, self.settings.receipt_timeout) is None:
            raise ChainUnavailable(f"Transaction {tx} was sent but is not mined yet.")
        return self.chain.shop(shop_id), tx
