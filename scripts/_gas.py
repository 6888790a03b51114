"""The gas scenario behind GAS.md and the budget test: every operation as the relay sends it, in its
best case (a running system, a returning user) and in the worst cases users commonly hit (a user's
first payment, a token user, the first payment on a fresh system, a new customer's first reward, a
shop owner's first cancel and withdrawal).

Ids and deadlines are fixed, so every run sends the same calldata and signs the same messages
(calldata costs 4 gas per zero byte and 16 per other byte: random ids made the table move by a few
dozen gas from run to run)."""

from __future__ import annotations

from dataclasses import dataclass

from ape.api import AccountAPI
from eth_utils import keccak

from scripts._system import UNIT, System, sign_next

POINT, TOKEN = 0, 1


@dataclass(frozen=True)
class Case:
    operation: str
    case: str
    budget: int


# What the public implementation of the spec spends on each operation (it has one path for each).
REFERENCE = {
    "openNewPayment": 398_088,
    "closeNewPayment (confirm)": 146_680,
    "openCancelPayment": 149_753,
    "closeCancelPayment (confirm)": 106_816,
    "openWithdrawal": 89_745,
    "closeWithdrawal": 68_307,
    "provide (purchase reward)": 290_563,
}

CASES = [
    Case("openNewPayment", "returning point user", 130_000),
    Case("openNewPayment", "first payment of a user", 150_000),
    Case("openNewPayment", "token user", 135_000),
    Case("openNewPayment", "first payment on a fresh system", 175_000),
    Case("closeNewPayment (confirm)", "point payment", 65_000),
    Case("closeNewPayment (confirm)", "token payment", 65_000),
    Case("closeNewPayment (confirm)", "first payment on a fresh system", 100_000),
    Case("closeNewPayment (refuse)", "point payment", 60_000),
    Case("openCancelPayment", "returning shop owner", 80_000),
    Case("openCancelPayment", "first cancel of a shop owner", 100_000),
    Case("closeCancelPayment (confirm)", "point payment", 60_000),
    Case("closeCancelPayment (refuse)", "point payment", 60_000),
    Case("openWithdrawal", "returning shop", 60_000),
    Case("openWithdrawal", "first withdrawal of a shop", 75_000),
    Case("closeWithdrawal", "returning shop", 55_000),
    Case("provide (purchase reward)", "returning customer", 80_000),
    Case("provide (purchase reward)", "new customer", 100_000),
]
BUDGETS = {(c.operation, c.case): c.budget for c in CASES}

# 2097-01-11: far enough ahead for any run, and no zero byte (a timestamp's usual make-up).
DEADLINE = 0xEEEEEEEE


def _id(label: str) -> str:
    return "0x" + keccak(text=f"gas scenario: {label}").hex()


def measure(
    system: System, admin: AccountAPI, relay: AccountAPI, owner: AccountAPI, users: list[AccountAPI]
) -> dict[tuple[str, str], int]:
    """Runs the scenario on a freshly deployed system (no payment yet, reserve funded by `admin`)
    and returns gas used per (operation, case). `users`: five accounts that hold nothing yet."""
    shops, ledger, payment = system.shops, system.ledger, system.payment
    first_user, user, big_spender, token_user, new_customer = users
    gas: dict[tuple[str, str], int] = {}

    shop_id = _id("shop")
    fields = dict(shopId=shop_id, name="Gas Shop", provideWaitTime=0, providePercent=100)
    sig = sign_next(owner, shops, "AddShop", DEADLINE, **fields)
    shops.addShop(shop_id, "Gas Shop", 0, 100, owner, DEADLINE, sig, sender=relay)
    shops.setCreditLimit(shop_id, 1_000_000 * UNIT, sender=admin)
    for account in (first_user, user, big_spender):
        ledger.grant(account, 3_000_000 * UNIT, sender=admin)
    ledger.switchToToken(0, sender=token_user)
    ledger.grant(token_user, 1_000_000 * UNIT, sender=admin)

    def open_new(account: AccountAPI, purchase_id: str, amount: int = 10 * UNIT) -> tuple[str, int]:
        payment_id = _id(purchase_id)
        loyalty_type = int(ledger.accountOf(account)[0])
        order = dict(paymentId=payment_id, purchaseId=purchase_id, amount=amount, currency="krw", shopId=shop_id)
        max_total = payment.estimate(account, amount, "krw")["totalToken" if loyalty_type else "totalPoint"]
        signed = dict(order, loyaltyType=loyalty_type, maxTotal=max_total)
        sig = sign_next(account, payment, "NewPayment", DEADLINE, **signed)
        data = (*order.values(), account.address, loyalty_type, max_total, DEADLINE)
        return payment_id, payment.openNewPayment(data, sig, sender=relay).gas_used

    def close_new(payment_id: str, confirm: bool = True) -> int:
        return payment.closeNewPayment(payment_id, confirm, sender=relay).gas_used

    # The very first payment: every system total (escrow, fees, the shop's used total) starts at zero.
    first, gas[("openNewPayment", "first payment on a fresh system")] = open_new(first_user, "P000001")
    gas[("closeNewPayment (confirm)", "first payment on a fresh system")] = close_new(first)

    second, gas[("openNewPayment", "first payment of a user")] = open_new(user, "P000002")
    close_new(second)
    third, gas[("openNewPayment", "returning point user")] = open_new(user, "P000003")
    gas[("closeNewPayment (confirm)", "point payment")] = close_new(third)
    refused, _ = open_new(user, "P000004")
    gas[("closeNewPayment (refuse)", "point payment")] = close_new(refused, confirm=False)

    token_first, _ = open_new(token_user, "T000001")
    close_new(token_first)
    token_paid, gas[("openNewPayment", "token user")] = open_new(token_user, "T000002")
    gas[("closeNewPayment (confirm)", "token payment")] = close_new(token_paid)

    def open_cancel(payment_id: str, purchase_id: str) -> int:
        fields = dict(paymentId=payment_id, purchaseId=purchase_id, shopId=shop_id)
        sig = sign_next(owner, payment, "CancelPayment", DEADLINE, **fields)
        return payment.openCancelPayment(payment_id, purchase_id, DEADLINE, sig, sender=relay).gas_used

    gas[("openCancelPayment", "first cancel of a shop owner")] = open_cancel(first, "P000001")
    gas[("closeCancelPayment (refuse)", "point payment")] = payment.closeCancelPayment(
        first, False, sender=relay
    ).gas_used
    gas[("openCancelPayment", "returning shop owner")] = open_cancel(second, "P000002")
    gas[("closeCancelPayment (confirm)", "point payment")] = payment.closeCancelPayment(
        second, True, sender=relay
    ).gas_used

    # Rewards: to a returning customer (a balance already) and to a new one.
    ledger.provide(user, shop_id, "R000001", 10_000 * UNIT, "krw", sender=relay)
    gas[("provide (purchase reward)", "returning customer")] = ledger.provide(
        user, shop_id, "R000002", 100_000 * UNIT, "krw", sender=relay
    ).gas_used
    gas[("provide (purchase reward)", "new customer")] = ledger.provide(
        new_customer, shop_id, "R000003", 100_000 * UNIT, "krw", sender=relay
    ).gas_used

    def open_withdrawal(amount: int) -> int:
        sig = sign_next(owner, shops, "OpenWithdrawal", DEADLINE, shopId=shop_id, amount=amount)
        return shops.openWithdrawal(shop_id, amount, DEADLINE, sig, sender=relay).gas_used

    def close_withdrawal() -> int:
        sig = sign_next(owner, shops, "CloseWithdrawal", DEADLINE, shopId=shop_id)
        return shops.closeWithdrawal(shop_id, DEADLINE, sig, sender=relay).gas_used

    # The shop is owed money once its customers have spent more than it handed out.
    big, _ = open_new(big_spender, "P000005", 2_000_000 * UNIT)
    close_new(big)
    gas[("openWithdrawal", "first withdrawal of a shop")] = open_withdrawal(1_000 * UNIT)
    close_withdrawal()
    gas[("openWithdrawal", "returning shop")] = open_withdrawal(1_000 * UNIT)
    gas[("closeWithdrawal", "returning shop")] = close_withdrawal()
    return gas
