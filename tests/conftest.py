"""Fixtures named by role (admin, relay, shop_owner, user) and factories for shops and payments.

Session fixtures say whether they change the chain when set up (`ape.fixture(chain_isolation=...)`):
True for the deployment and what it sets up, False for accounts, contract handles and factories
(which only return functions). Ape then knows which ones need a re-snapshot ("rebase") of the
chain when first used late in a run, without asking the node about each before every test."""

from __future__ import annotations

import os
import secrets
import shutil

import ape

from scripts._system import UNIT, deploy_system
from tests.utils.checks import system_state
from tests.utils.constants import CANCEL_OPEN, CANCELLED, CLOSED, NONE, OPEN, POINT, REFUNDED, TOKEN
from tests.utils.signing import deadline, sign, sign_next
from tools.build import DEPENDENCY_COPY, build_if_stale

# ape-solidity unpacks dependencies (OpenZeppelin, 300+ files) into contracts/.cache when it builds
# import remappings (`ape compile` does). Ape lists at most 500 files of the contracts folder, so
# that copy can hide our own sources, e.g. contracts/test/, from `project.<Name>`. This module is
# loaded before Ape first lists the sources; compilation recreates the copy when it needs it.
shutil.rmtree(DEPENDENCY_COPY, ignore_errors=True)
# The tests run on bytecode compiled from the sources as they are now: when ape-config.yaml or a
# contract source differs from what the build was compiled from, everything is compiled again.
if build_if_stale():
    shutil.rmtree(DEPENDENCY_COPY, ignore_errors=True)

__all__ = ["CANCELLED", "CANCEL_OPEN", "CLOSED", "NONE", "OPEN", "POINT", "REFUNDED", "TOKEN"]


def pytest_collection_modifyitems(items):
    """Runs the test files named in TESTS_FIRST (comma-separated file names) before the others:
    `make mutate` names the mutated contract's own tests, which fail first for most mutants."""
    first = {name for name in os.environ.get("TESTS_FIRST", "").split(",") if name}
    if first:
        items.sort(key=lambda item: item.path.name not in first)


# ---------------------------------------------------------------- roles


@ape.fixture(scope="session", chain_isolation=False)
def admin(accounts):
    return accounts[0]


@ape.fixture(scope="session", chain_isolation=False)
def relay(accounts):
    return accounts[1]


@ape.fixture(scope="session", chain_isolation=False)
def shop_owner(accounts):
    return accounts[2]


@ape.fixture(scope="session", chain_isolation=False)
def user(accounts):
    return accounts[3]


@ape.fixture(scope="session", chain_isolation=False)
def other_user(accounts):
    return accounts[4]


@ape.fixture(scope="session", chain_isolation=False)
def customer(accounts):
    """A second paying user, whose payments give shops a settled total to withdraw."""
    return accounts[5]


@ape.fixture(scope="session", chain_isolation=False)
def stranger(accounts):
    return accounts[9]


# ---------------------------------------------------------------- contracts


@ape.fixture(scope="session", chain_isolation=True)
def system(admin, relay):
    system = deploy_system(admin, [relay])
    # A reserve for token rewards, switches and cancels of token payments.
    system.token.approve(system.ledger, 100_000_000 * UNIT, sender=admin)
    system.ledger.fundReserve(10_000_000 * UNIT, sender=admin)
    return system


@ape.fixture(scope="session", chain_isolation=False)
def token(system):
    return system.token


@ape.fixture(scope="session", chain_isolation=False)
def rates(system):
    return system.rates


@ape.fixture(scope="session", chain_isolation=False)
def shops(system):
    return system.shops


@ape.fixture(scope="session", chain_isolation=False)
def ledger(system):
    return system.ledger


@ape.fixture(scope="session", chain_isolation=False)
def payment(system):
    return system.payment


# ---------------------------------------------------------------- factories


@ape.fixture(scope="session", chain_isolation=False)
def create_shop(shops, relay, shop_owner):
    def create_shop(owner=None, shop_id=None, name="Demo Shop", wait=0, percent=100):
        owner = owner or shop_owner
        shop_id = shop_id or "0x" + secrets.token_hex(32)
        dl = deadline()
        fields = dict(shopId=shop_id, name=name, provideWaitTime=wait, providePercent=percent)
        sig = sign_next(owner, shops, "AddShop", dl, **fields)
        shops.addShop(shop_id, name, wait, percent, owner, dl, sig, sender=relay)
        return shop_id

    return create_shop


@ape.fixture(scope="session", chain_isolation=True)
def shop_id(create_shop):
    return create_shop()


@ape.fixture(scope="session", chain_isolation=False)
def give_points(ledger, admin):
    def give_points(account, amount):
        ledger.grant(account, amount, sender=admin)

    return give_points


@ape.fixture(scope="session", chain_isolation=False)
def make_token_user(ledger, token, admin):
    def make_token_user(account, tokens=0):
        ledger.switchToToken(0, sender=account)
        if tokens:
            ledger.deposit(account, tokens, sender=admin)

    return make_token_user


def charge_bound(payment, ledger, account, amount, currency):
    """The loyalty type and `maxTotal` a wallet signs: the account's type and the contract's own
    estimate of the total (what the relay fills in with no tolerance); a total of 0 when the
    estimate reverts (unknown currency), so the test sees the open's own error."""
    loyalty_type = int(ledger.accountOf(account)[0])
    try:
        e = payment.estimate(account, amount, currency)
    except ape.exceptions.ContractLogicError:
        return loyalty_type, 0
    return loyalty_type, e.totalToken if loyalty_type == TOKEN else e.totalPoint


@ape.fixture(scope="session", chain_isolation=False)
def sign_new_payment(payment, ledger):
    def sign_new_payment(account, payment_id, shop_id, amount, currency="krw", purchase_id="P000001", **overrides):
        loyalty_type, max_total = charge_bound(payment, ledger, account, amount, currency)
        fields = dict(
            paymentId=payment_id,
            purchaseId=purchase_id,
            amount=amount,
            currency=currency,
            shopId=shop_id,
            account=account.address,
            loyaltyType=loyalty_type,
            maxTotal=max_total,
            nonce=payment.nonces(account),
            deadline=deadline(),
        )
        fields.update(overrides)
        data = (
            payment_id,
            purchase_id,
            amount,
            currency,
            shop_id,
            account.address,
            fields["loyaltyType"],
            fields["maxTotal"],
            fields["deadline"],
        )
        return data, sign(account, payment, "NewPayment", **fields)

    return sign_new_payment


@ape.fixture(scope="session", chain_isolation=False)
def open_payment(payment, relay, shop_id, sign_new_payment):
    def open_payment(account, amount=10 * UNIT, currency="krw", shop=None, purchase_id="P000001"):
        payment_id = "0x" + secrets.token_hex(32)
        data, sig = sign_new_payment(account, payment_id, shop or shop_id, amount, currency, purchase_id)
        payment.openNewPayment(data, sig, sender=relay)
        return payment_id

    return open_payment


@ape.fixture(scope="session", chain_isolation=False)
def sign_cancel(payment, shops):
    def sign_cancel(owner, payment_id, purchase_id="P000001", shop=None, **overrides):
        shop = shop or payment.paymentOf(payment_id).shopId
        fields = dict(
            paymentId=payment_id,
            purchaseId=purchase_id,
            shopId=shop,
            account=owner.address,
            nonce=payment.nonces(owner),
            deadline=deadline(),
        )
        fields.update(overrides)
        return fields["deadline"], sign(owner, payment, "CancelPayment", **fields)

    return sign_cancel


@ape.fixture(scope="session", chain_isolation=False)
def completed_payment(payment, relay, open_payment):
    def completed_payment(account, **kwargs):
        payment_id = open_payment(account, **kwargs)
        payment.closeNewPayment(payment_id, True, sender=relay)
        return payment_id

    return completed_payment


@ape.fixture(scope="session", chain_isolation=False)
def open_cancel(payment, relay, shop_owner, sign_cancel):
    def open_cancel(payment_id, owner=None, purchase_id="P000001"):
        dl, sig = sign_cancel(owner or shop_owner, payment_id, purchase_id)
        payment.openCancelPayment(payment_id, purchase_id, dl, sig, sender=relay)

    return open_cancel


@ape.fixture(scope="session", chain_isolation=False)
def fund(give_points, make_token_user):
    """Gives `account` `amount` loyalty of `loyalty_type`: points granted, or tokens deposited
    after switching (the account must still be a point account with no points)."""

    def fund(account, loyalty_type=POINT, amount=1_000_000 * UNIT):
        if loyalty_type == POINT:
            give_points(account, amount)
        else:
            make_token_user(account, tokens=amount)

    return fund


@ape.fixture(scope="session", chain_isolation=False)
def payment_in_state(payment, relay, open_payment, open_cancel):
    """Returns the id of a payment of `account` brought to `status` along the normal path."""

    def payment_in_state(account, status, **kwargs):
        if status == NONE:
            return "0x" + secrets.token_hex(32)
        payment_id = open_payment(account, **kwargs)
        if status == OPEN:
            return payment_id
        payment.closeNewPayment(payment_id, status != REFUNDED, sender=relay)
        if status in (CLOSED, REFUNDED):
            return payment_id
        open_cancel(payment_id)
        if status == CANCELLED:
            payment.closeCancelPayment(payment_id, True, sender=relay)
        return payment_id

    return payment_in_state


@ape.fixture(scope="session", chain_isolation=False)
def settle(payment, relay, customer, give_points, open_payment):
    """Makes `shop`'s settled total grow by `amount` points: `customer` pays it and the payment completes."""

    def settle(shop, amount):
        give_points(customer, amount * 2)
        payment_id = open_payment(customer, amount=amount, currency="point", shop=shop)
        payment.closeNewPayment(payment_id, True, sender=relay)
        return payment_id

    return settle


@ape.fixture(scope="session", chain_isolation=False)
def open_withdrawal(shops, relay, shop_owner):
    def open_withdrawal(shop, amount, owner=None):
        owner = owner or shop_owner
        dl = deadline()
        sig = sign_next(owner, shops, "OpenWithdrawal", dl, shopId=shop, amount=amount)
        return shops.openWithdrawal(shop, amount, dl, sig, sender=relay)

    return open_withdrawal


@ape.fixture(scope="session", chain_isolation=False)
def close_withdrawal(shops, relay, shop_owner):
    def close_withdrawal(shop, owner=None):
        owner = owner or shop_owner
        dl = deadline()
        sig = sign_next(owner, shops, "CloseWithdrawal", dl, shopId=shop)
        return shops.closeWithdrawal(shop, dl, sig, sender=relay)

    return close_withdrawal


# ---------------------------------------------------------------- inspection


@ape.fixture(scope="session", chain_isolation=False)
def state(token, ledger, shops):
    """Snapshot of every system balance plus the named accounts and shops (see checks.system_state)."""

    def state(**named):
        return system_state(token, ledger, shops, **named)

    return state


def _impersonate(address):
    account = ape.accounts[address]
    account.balance = 10**20
    return account


@ape.fixture(scope="session", chain_isolation=True)
def as_controller(payment):
    """The payment controller's address as a sender, to call the ledger's escrow functions directly."""
    return _impersonate(payment.address)


@ape.fixture(scope="session", chain_isolation=True)
def as_ledger(ledger):
    """The ledger's address as a sender, to call ShopRegistry.recordProvision directly."""
    return _impersonate(ledger.address)
