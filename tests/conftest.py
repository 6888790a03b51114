"""Fixtures named by role (admin, relay, shop_owner, user) and factories for shops and payments."""

from __future__ import annotations

import secrets

import pytest

from scripts._system import UNIT, deploy_system
from tests.utils.signing import deadline, sign

POINT, TOKEN = 0, 1
# Payment statuses on chain.
NONE, OPEN, CLOSED, REFUNDED, CANCEL_OPEN, CANCELLED = range(6)


# ---------------------------------------------------------------- roles


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def relay(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def shop_owner(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def user(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def other_user(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[9]


# ---------------------------------------------------------------- contracts


@pytest.fixture(scope="session")
def system(admin, relay):
    system = deploy_system(admin, [relay])
    # A reserve for token rewards, switches and cancels of token payments.
    system.token.approve(system.ledger, 100_000_000 * UNIT, sender=admin)
    system.ledger.fundReserve(10_000_000 * UNIT, sender=admin)
    return system


@pytest.fixture(scope="session")
def token(system):
    return system.token


@pytest.fixture(scope="session")
def rates(system):
    return system.rates


@pytest.fixture(scope="session")
def shops(system):
    return system.shops


@pytest.fixture(scope="session")
def ledger(system):
    return system.ledger


@pytest.fixture(scope="session")
def payment(system):
    return system.payment


# ---------------------------------------------------------------- factories


@pytest.fixture(scope="session")
def create_shop(shops, relay, shop_owner):
    def create_shop(owner=None, shop_id=None, name="Demo Shop", wait=0, percent=100):
        owner = owner or shop_owner
        shop_id = shop_id or "0x" + secrets.token_hex(32)
        dl = deadline()
        sig = sign(
            owner,
            shops,
            "AddShop",
            shopId=shop_id,
            name=name,
            provideWaitTime=wait,
            providePercent=percent,
            account=owner.address,
            nonce=shops.nonces(owner),
            deadline=dl,
        )
        shops.addShop(shop_id, name, wait, percent, owner, dl, sig, sender=relay)
        return shop_id

    return create_shop


@pytest.fixture(scope="session")
def shop_id(create_shop):
    return create_shop()


@pytest.fixture(scope="session")
def give_points(ledger, relay):
    def give_points(account, amount):
        ledger.grant(account, amount, sender=relay)

    return give_points


@pytest.fixture(scope="session")
def make_token_user(ledger, token, admin):
    def make_token_user(account, tokens=0):
        ledger.switchToToken(sender=account)
        if tokens:
            ledger.deposit(account, tokens, sender=admin)

    return make_token_user


@pytest.fixture(scope="session")
def sign_new_payment(payment):
    def sign_new_payment(account, payment_id, shop_id, amount, currency="krw", purchase_id="P000001", **overrides):
        fields = dict(
            paymentId=payment_id,
            purchaseId=purchase_id,
            amount=amount,
            currency=currency,
            shopId=shop_id,
            account=account.address,
            nonce=payment.nonces(account),
            deadline=deadline(),
        )
        fields.update(overrides)
        data = (payment_id, purchase_id, amount, currency, shop_id, account.address, fields["deadline"])
        return data, sign(account, payment, "NewPayment", **fields)

    return sign_new_payment


@pytest.fixture(scope="session")
def open_payment(payment, relay, shop_id, sign_new_payment):
    def open_payment(account, amount=10 * UNIT, currency="krw", shop=None, purchase_id="P000001"):
        payment_id = "0x" + secrets.token_hex(32)
        data, sig = sign_new_payment(account, payment_id, shop or shop_id, amount, currency, purchase_id)
        payment.openNewPayment(data, sig, sender=relay)
        return payment_id

    return open_payment


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def completed_payment(payment, relay, open_payment):
    def completed_payment(account, **kwargs):
        payment_id = open_payment(account, **kwargs)
        payment.closeNewPayment(payment_id, True, sender=relay)
        return payment_id

    return completed_payment


@pytest.fixture(scope="session")
def open_cancel(payment, relay, shop_owner, sign_cancel):
    def open_cancel(payment_id, owner=None, purchase_id="P000001"):
        dl, sig = sign_cancel(owner or shop_owner, payment_id, purchase_id)
        payment.openCancelPayment(payment_id, purchase_id, dl, sig, sender=relay)

    return open_cancel
