"""The gas scenario behind GAS.md and the budget test: one point-paying user's second payment and
the operations around it, each in its own transaction, as the relay sends them.

Ids and deadlines are fixed, so every run sends the same calldata and signs the same messages
(calldata costs 4 gas per zero byte and 16 per other byte: random ids made the table move by a few
dozen gas from run to run)."""

from __future__ import annotations

from ape.api import AccountAPI
from eth_utils import keccak

from scripts._system import UNIT, System, sign_next

# Gas budgets per operation (a point-paying user's second payment, separate transactions).
BUDGETS = {
    "openNewPayment": 125_000,
    "closeNewPayment (confirm)": 60_000,
    "closeNewPayment (refuse)": 60_000,
    "openCancelPayment": 75_000,
    "closeCancelPayment (confirm)": 55_000,
    "closeCancelPayment (refuse)": 60_000,
    "openWithdrawal": 60_000,
    "closeWithdrawal": 50_000,
    "provide (purchase reward)": 80_000,
}

# What the public implementation of the spec spends on the same operations.
REFERENCE = {
    "openNewPayment": 398_088,
    "closeNewPayment (confirm)": 146_680,
    "openCancelPayment": 149_753,
    "closeCancelPayment (confirm)": 106_816,
    "openWithdrawal": 89_745,
    "closeWithdrawal": 68_307,
    "provide (purchase reward)": 290_563,
}


# 2097-01-11: far enough ahead for any run, and no zero byte (a timestamp's usual make-up).
DEADLINE = 0xEEEEEEEE


def _id(label: str) -> str:
    return "0x" + keccak(text=f"gas scenario: {label}").hex()


def measure(system: System, relay: AccountAPI, owner: AccountAPI, user: AccountAPI) -> dict[str, int]:
    """Runs the scenario on a freshly deployed system and returns gas used per operation."""
    shops, ledger, payment = system.shops, system.ledger, system.payment
    gas: dict[str, int] = {}

    shop_id = _id("shop")
    dl = DEADLINE
    fields = dict(shopId=shop_id, name="Gas Shop", provideWaitTime=0, providePercent=100)
    shops.addShop(
        shop_id, "Gas Shop", 0, 100, owner, dl, sign_next(owner, shops, "AddShop", dl, **fields), sender=relay
    )

    # Purchase rewards: the first one creates the user's balance; the second is measured.
    ledger.provide(user, shop_id, "R000001", 100_000_000 * UNIT, "krw", sender=relay)
    gas["provide (purchase reward)"] = ledger.provide(
        user, shop_id, "R000002", 100_000 * UNIT, "krw", sender=relay
    ).gas_used

    def open_new(purchase_id: str, amount: int = 10 * UNIT) -> tuple[str, int]:
        payment_id = _id(purchase_id)
        dl = DEADLINE
        order = dict(paymentId=payment_id, purchaseId=purchase_id, amount=amount, currency="krw", shopId=shop_id)
        sig = sign_next(user, payment, "NewPayment", dl, **order)
        receipt = payment.openNewPayment((*order.values(), user.address, dl), sig, sender=relay)
        return payment_id, receipt.gas_used

    # First payment: warms the user's nonce and the fee account like any running system.
    first, _ = open_new("P000001")
    payment.closeNewPayment(first, True, sender=relay)

    second, gas["openNewPayment"] = open_new("P000002")
    gas["closeNewPayment (confirm)"] = payment.closeNewPayment(second, True, sender=relay).gas_used

    refused, _ = open_new("P000003")
    gas["closeNewPayment (refuse)"] = payment.closeNewPayment(refused, False, sender=relay).gas_used

    def open_cancel(payment_id: str, purchase_id: str) -> int:
        dl = DEADLINE
        fields = dict(paymentId=payment_id, purchaseId=purchase_id, shopId=shop_id)
        sig = sign_next(owner, payment, "CancelPayment", dl, **fields)
        return payment.openCancelPayment(payment_id, purchase_id, dl, sig, sender=relay).gas_used

    # A first cancel (opened, refused) warms the owner's nonce; then the measured cancel.
    open_cancel(first, "P000001")
    gas["closeCancelPayment (refuse)"] = payment.closeCancelPayment(first, False, sender=relay).gas_used
    gas["openCancelPayment"] = open_cancel(second, "P000002")
    gas["closeCancelPayment (confirm)"] = payment.closeCancelPayment(second, True, sender=relay).gas_used

    def open_withdrawal(amount: int) -> int:
        dl = DEADLINE
        sig = sign_next(owner, shops, "OpenWithdrawal", dl, shopId=shop_id, amount=amount)
        return shops.openWithdrawal(shop_id, amount, dl, sig, sender=relay).gas_used

    def close_withdrawal() -> int:
        dl = DEADLINE
        sig = sign_next(owner, shops, "CloseWithdrawal", dl, shopId=shop_id)
        return shops.closeWithdrawal(shop_id, dl, sig, sender=relay).gas_used

    # The shop has used more than it provided only after enough payments; pay a large one.
    big, _ = open_new("P000004")
    payment.closeNewPayment(big, True, sender=relay)
    ledger.grant(user, 2_000_000 * UNIT, sender=relay)
    big, _ = open_new("P000005", 1_500_000 * UNIT)
    payment.closeNewPayment(big, True, sender=relay)

    # First withdrawal warms the withdrawn total; the second is measured.
    open_withdrawal(1_000 * UNIT)
    close_withdrawal()
    gas["openWithdrawal"] = open_withdrawal(1_000 * UNIT)
    gas["closeWithdrawal"] = close_withdrawal()
    return gas
