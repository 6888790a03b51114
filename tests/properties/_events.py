"""Rebuilds every balance, escrow, fee account, the reserve and every shop total from the contracts'
events alone (PROPERTIES.md P15), as an indexer or an auditor would, without reading any state.

A payment's fixed terms (account, shop, loyalty type, paid, fee, shop value) are in its
`PaymentOpened`; every later payment event names the payment, so each transition's movements follow
from that record. A refund to an account that switched to tokens since is the one movement whose
amount depends on a rate at the time: the ledger's `RefundConverted` carries it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode
from eth_utils import keccak, to_checksum_address

POINT, TOKEN = 0, 1


class EventDecoder:
    """Decodes the logs of a set of contracts by their ABIs (topic 0 and the emitting address)."""

    def __init__(self, contracts: list[Any]) -> None:
        self.addresses = [str(c.address) for c in contracts]
        self.events: dict[tuple[str, bytes], Any] = {}
        for contract in contracts:
            for item in contract.contract_type.abi:
                if item.type == "event":
                    self.events[(str(contract.address).lower(), keccak(text=item.selector))] = item

    def decode(self, log: dict) -> tuple[str, dict[str, Any]] | None:
        topics = [bytes.fromhex(t[2:]) for t in log["topics"]]
        abi = self.events.get((log["address"].lower(), topics[0])) if topics else None
        if abi is None:
            return None
        indexed = [i for i in abi.inputs if i.indexed]
        plain = [i for i in abi.inputs if not i.indexed]
        values = {i.name: decode([i.canonical_type], t)[0] for i, t in zip(indexed, topics[1:], strict=True)}
        data = decode([i.canonical_type for i in plain], bytes.fromhex(log["data"][2:]))
        values.update({i.name: v for i, v in zip(plain, data, strict=True)})
        return abi.name, {
            k: to_checksum_address(v) if isinstance(v, str) and len(v) == 42 else v for k, v in values.items()
        }


@dataclass
class Rebuilt:
    types: dict[str, int] = field(default_factory=dict)
    balances: dict[str, int] = field(default_factory=dict)
    escrow: list[int] = field(default_factory=lambda: [0, 0])
    fees: list[int] = field(default_factory=lambda: [0, 0])
    reserve: int = 0
    # shop id -> [provided, used, withdrawn, open withdrawal]
    shops: dict[bytes, list[int]] = field(default_factory=dict)
    # payment id -> (account, shop id, loyalty type, paid, fee, shop value)
    payments: dict[bytes, tuple[str, bytes, int, int, int, int]] = field(default_factory=dict)

    def copy(self) -> Rebuilt:
        return copy.deepcopy(self)

    def apply(self, name: str, e: dict[str, Any]) -> None:
        handler = getattr(self, f"_on_{name}", None)
        if handler is not None:
            handler(e)

    def _credit(self, account: str, loyalty_type: int, amount: int) -> None:
        self.balances[account] = self.balances.get(account, 0) + amount
        if loyalty_type == TOKEN and amount:
            self.reserve -= amount

    # ---------------------------------------------------------------- Ledger

    def _on_LoyaltyProvided(self, e: dict) -> None:
        self._credit(e["account"], e["loyaltyType"], e["amount"])

    def _on_LoyaltyGranted(self, e: dict) -> None:
        self._credit(e["account"], e["loyaltyType"], e["amount"])

    def _on_SwitchedToToken(self, e: dict) -> None:
        self.types[e["account"]] = TOKEN
        self.balances[e["account"]] = e["token"]
        self.reserve -= e["token"]

    def _on_RefundConverted(self, e: dict) -> None:
        self._credit(e["account"], TOKEN, e["token"])

    def _on_Deposited(self, e: dict) -> None:
        self.balances[e["account"]] = self.balances.get(e["account"], 0) + e["amount"]

    def _on_Withdrawn(self, e: dict) -> None:
        self.balances[e["account"]] -= e["amount"]

    def _on_ReserveFunded(self, e: dict) -> None:
        self.reserve += e["amount"]

    def _on_ReserveWithdrawn(self, e: dict) -> None:
        self.reserve -= e["amount"]

    def _on_FeesWithdrawn(self, e: dict) -> None:
        self.fees[TOKEN] -= e["amount"]

    # ---------------------------------------------------------------- LoyaltyPayment

    def _on_PaymentOpened(self, e: dict) -> None:
        t, total = e["loyaltyType"], e["paid"] + e["fee"]
        self.payments[e["paymentId"]] = (e["account"], e["shopId"], t, e["paid"], e["fee"], e["shopPoint"])
        self.balances[e["account"]] -= total
        self.escrow[t] += total

    def _on_PaymentClosed(self, e: dict) -> None:
        _account, shop_id, t, paid, fee, shop_point = self.payments[e["paymentId"]]
        self.escrow[t] -= paid + fee
        self.fees[t] += fee
        if t == TOKEN:
            self.reserve += paid
        self.shops[shop_id][1] += shop_point

    def _on_CancelOpened(self, e: dict) -> None:
        _account, shop_id, t, paid, fee, shop_point = self.payments[e["paymentId"]]
        self.escrow[t] += paid + fee
        self.fees[t] -= fee
        if t == TOKEN:
            self.reserve -= paid
        self.shops[shop_id][1] -= shop_point

    def _refunded(self, e: dict) -> None:
        account, _shop, t, _paid, _fee, _point = self.payments[e["paymentId"]]
        self.escrow[t] -= e["total"]
        if self.types.get(account, POINT) == t:
            self.balances[account] += e["total"]
        # Otherwise the account switched since: the ledger's RefundConverted that follows credits it.

    _on_PaymentRefunded = _refunded
    _on_PaymentCancelled = _refunded

    # ---------------------------------------------------------------- ShopRegistry

    def _on_ShopAdded(self, e: dict) -> None:
        self.shops[e["shopId"]] = [0, 0, 0, 0]

    def _on_ProvisionRecorded(self, e: dict) -> None:
        self.shops[e["shopId"]][0] += e["rewardPoint"]

    def _on_WithdrawalOpened(self, e: dict) -> None:
        self.shops[e["shopId"]][3] = e["amount"]

    def _on_WithdrawalClosed(self, e: dict) -> None:
        shop = self.shops[e["shopId"]]
        shop[2] += e["amount"]
        shop[3] = 0

    def _on_ShopTotalsCorrected(self, e: dict) -> None:
        shop = self.shops[e["shopId"]]
        shop[0], shop[2] = e["providedPoint"], e["withdrawnPoint"]
