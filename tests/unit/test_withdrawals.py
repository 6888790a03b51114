"""Shop withdrawals (settlement): at most settled - withdrawn, one at a time, and the shop's debt
after a cancel that follows a withdrawal."""

import secrets

import ape

from tests.utils.checks import assert_event, changes, reverts
from tests.utils.constants import UNIT
from tests.utils.signing import deadline, sign_next

SETTLED = 1_000 * UNIT


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def settled(settle, shop_id):
    """The shared shop has 1,000 points settled (used, none provided) and nothing withdrawn."""
    settle(shop_id, SETTLED)
    return SETTLED


def test_openWithdrawal__registers_amount(shops, shop_id, shop_owner, open_withdrawal, state):
    nonce = shops.nonces(shop_owner)
    before = state(shop=shop_id)
    receipt = open_withdrawal(shop_id, 400 * UNIT)
    assert changes(before, state(shop=shop_id)) == {"shop.withdrawAmount": 400 * UNIT}
    info = shops.shopOf(shop_id)
    assert (info.withdrawOpen, info.withdrawAmount, info.withdrawnPoint) == (True, 400 * UNIT, 0)
    assert shops.nonces(shop_owner) == nonce + 1
    assert_event(receipt, shops.WithdrawalOpened, shopId=shop_id, account=shop_owner, amount=400 * UNIT)


def test_openWithdrawal__whole_available_amount__accepted(shops, shop_id, open_withdrawal):
    open_withdrawal(shop_id, SETTLED)
    assert shops.shopOf(shop_id).withdrawAmount == SETTLED


def test_openWithdrawal__more_than_available__reverts(shops, shop_id, open_withdrawal):
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop_id, amount=SETTLED + 1, available=SETTLED):
        open_withdrawal(shop_id, SETTLED + 1)


def test_openWithdrawal__zero__reverts(shops, shop_id, open_withdrawal):
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop_id, amount=0, available=SETTLED):
        open_withdrawal(shop_id, 0)


def test_openWithdrawal__while_one_is_open__reverts(shops, shop_id, open_withdrawal):
    open_withdrawal(shop_id, 100 * UNIT)
    with reverts(shops.WithdrawalAlreadyOpen, shopId=shop_id, openAmount=100 * UNIT):
        open_withdrawal(shop_id, 100 * UNIT)


def test_openWithdrawal__unknown_shop__reverts(shops, open_withdrawal):
    shop = "0x" + secrets.token_hex(32)
    with reverts(shops.UnknownShop, shopId=shop):
        open_withdrawal(shop, UNIT)


def test_openWithdrawal__not_relay__reverts(shops, shop_id, shop_owner):
    dl = deadline()
    sig = sign_next(shop_owner, shops, "OpenWithdrawal", dl, shopId=shop_id, amount=UNIT)
    with reverts(shops.AccessControlUnauthorizedAccount, account=shop_owner, neededRole=shops.RELAY_ROLE()):
        shops.openWithdrawal(shop_id, UNIT, dl, sig, sender=shop_owner)


def test_openWithdrawal__provided_more_than_used__nothing_to_withdraw(
    shops, ledger, relay, user, create_shop, settle, open_withdrawal
):
    shop = create_shop(percent=10_000)
    settle(shop, 100 * UNIT)
    ledger.provide(user, shop, "R1", 150 * UNIT, "krw", sender=relay)  # provides 150 points
    info = shops.shopOf(shop)
    assert (info.usedPoint, info.providedPoint, info.settledPoint) == (100 * UNIT, 150 * UNIT, 0)
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop, amount=UNIT, available=0):
        open_withdrawal(shop, UNIT)


def test_openWithdrawal__available_is_settled_minus_provided_and_withdrawn(
    shops, ledger, relay, user, shop_id, open_withdrawal, close_withdrawal
):
    ledger.provide(user, shop_id, "R1", 10_000 * UNIT, "krw", sender=relay)  # 1 %: 100 points provided
    open_withdrawal(shop_id, 300 * UNIT)
    close_withdrawal(shop_id)
    available = SETTLED - 100 * UNIT - 300 * UNIT
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop_id, amount=available + 1, available=available):
        open_withdrawal(shop_id, available + 1)
    open_withdrawal(shop_id, available)


def test_closeWithdrawal__records_withdrawn_total(shops, shop_id, shop_owner, open_withdrawal, close_withdrawal, state):
    open_withdrawal(shop_id, 400 * UNIT)
    nonce = shops.nonces(shop_owner)
    before = state(shop=shop_id)
    receipt = close_withdrawal(shop_id)
    assert changes(before, state(shop=shop_id)) == {
        "shop.withdrawAmount": -400 * UNIT,
        "shop.withdrawnPoint": 400 * UNIT,
    }
    assert shops.shopOf(shop_id).withdrawOpen is False
    assert shops.nonces(shop_owner) == nonce + 1
    assert_event(
        receipt,
        shops.WithdrawalClosed,
        shopId=shop_id,
        account=shop_owner,
        amount=400 * UNIT,
        withdrawnPoint=400 * UNIT,
    )


def test_closeWithdrawal__withdrawn_total_accumulates(shops, shop_id, open_withdrawal, close_withdrawal):
    open_withdrawal(shop_id, 400 * UNIT)
    close_withdrawal(shop_id)
    open_withdrawal(shop_id, 250 * UNIT)
    receipt = close_withdrawal(shop_id)
    assert shops.shopOf(shop_id).withdrawnPoint == 650 * UNIT
    assert_event(
        receipt,
        shops.WithdrawalClosed,
        shopId=shop_id,
        account=shops.shopOf(shop_id).account,
        amount=250 * UNIT,
        withdrawnPoint=650 * UNIT,
    )
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop_id, amount=350 * UNIT + 1, available=350 * UNIT):
        open_withdrawal(shop_id, 350 * UNIT + 1)


def test_closeWithdrawal__none_open__reverts(shops, shop_id, close_withdrawal):
    with reverts(shops.NoOpenWithdrawal, shopId=shop_id):
        close_withdrawal(shop_id)


def test_closeWithdrawal__twice__reverts(shops, shop_id, open_withdrawal, close_withdrawal):
    open_withdrawal(shop_id, 100 * UNIT)
    close_withdrawal(shop_id)
    with reverts(shops.NoOpenWithdrawal, shopId=shop_id):
        close_withdrawal(shop_id)


def test_closeWithdrawal__unknown_shop__reverts(shops, close_withdrawal):
    shop = "0x" + secrets.token_hex(32)
    with reverts(shops.UnknownShop, shopId=shop):
        close_withdrawal(shop)


def test_closeWithdrawal__not_relay__reverts(shops, shop_id, shop_owner, open_withdrawal):
    open_withdrawal(shop_id, 100 * UNIT)
    dl = deadline()
    sig = sign_next(shop_owner, shops, "CloseWithdrawal", dl, shopId=shop_id)
    with reverts(shops.AccessControlUnauthorizedAccount, account=shop_owner, neededRole=shops.RELAY_ROLE()):
        shops.closeWithdrawal(shop_id, dl, sig, sender=shop_owner)


# ---------------------------------------------------------------- debt after a cancel


def test_cancel_after_withdrawal__shop_owes_and_cannot_withdraw(
    shops, payment, relay, shop_id, user, give_points, completed_payment, open_cancel, open_withdrawal, close_withdrawal
):
    give_points(user, 1_000 * UNIT)
    payment_id = completed_payment(user, amount=500 * UNIT)
    open_withdrawal(shop_id, SETTLED + 500 * UNIT)  # everything, including the payment about to be cancelled
    close_withdrawal(shop_id)

    open_cancel(payment_id)
    payment.closeCancelPayment(payment_id, True, sender=relay)

    info = shops.shopOf(shop_id)
    assert (info.settledPoint, info.withdrawnPoint) == (SETTLED, SETTLED + 500 * UNIT)
    # withdrawn > settled: the shop owes 500 points; no withdrawal until payments cover the debt.
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop_id, amount=UNIT, available=0):
        open_withdrawal(shop_id, UNIT)


def test_shop_in_debt__withdraws_again_once_payments_cover_it(
    shops,
    payment,
    relay,
    shop_id,
    settle,
    user,
    give_points,
    completed_payment,
    open_cancel,
    open_withdrawal,
    close_withdrawal,
):
    give_points(user, 1_000 * UNIT)
    payment_id = completed_payment(user, amount=500 * UNIT)
    open_withdrawal(shop_id, SETTLED + 500 * UNIT)
    close_withdrawal(shop_id)
    open_cancel(payment_id)
    payment.closeCancelPayment(payment_id, True, sender=relay)

    settle(shop_id, 300 * UNIT)  # still 200 points in debt
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop_id, amount=UNIT, available=0):
        open_withdrawal(shop_id, UNIT)
    settle(shop_id, 300 * UNIT)  # 100 points available again
    with reverts(shops.InvalidWithdrawalAmount, shopId=shop_id, amount=100 * UNIT + 1, available=100 * UNIT):
        open_withdrawal(shop_id, 100 * UNIT + 1)
    open_withdrawal(shop_id, 100 * UNIT)
    assert shops.shopOf(shop_id).withdrawAmount == 100 * UNIT


def test_cancel_while_withdrawal_open__closing_still_records_it(
    shops, payment, relay, shop_id, user, give_points, completed_payment, open_cancel, open_withdrawal, close_withdrawal
):
    give_points(user, 1_000 * UNIT)
    payment_id = completed_payment(user, amount=500 * UNIT)
    open_withdrawal(shop_id, SETTLED + 500 * UNIT)
    open_cancel(payment_id)
    payment.closeCancelPayment(payment_id, True, sender=relay)
    # The money was sent against the settled total of the time; the shop now owes the difference.
    close_withdrawal(shop_id)
    info = shops.shopOf(shop_id)
    assert (info.settledPoint, info.withdrawnPoint, info.withdrawOpen) == (SETTLED, SETTLED + 500 * UNIT, False)


# ---------------------------------------------------------------- the operator's exposure is bounded


@ape.fixture(scope="module", chain_isolation=False)
def withdrawn_then_cancel(
    shops, payment, relay, admin, shop_id, user, give_points, completed_payment, open_withdrawal, close_withdrawal
):
    """A shop withdraws everything, including a 500-point payment, then its owner cancels that
    payment: the cancel would leave a 500-point debt. Returns the payment and the limit setter."""

    def setup(limit):
        shops.setCreditLimit(shop_id, limit, sender=admin)
        give_points(user, 1_000 * UNIT)
        payment_id = completed_payment(user, amount=500 * UNIT)
        open_withdrawal(shop_id, SETTLED + 500 * UNIT)
        close_withdrawal(shop_id)
        return payment_id

    return setup


def test_cancel_after_withdrawal__debt_beyond_credit_limit__reverts(
    shops, payment, shop_id, withdrawn_then_cancel, open_cancel
):
    payment_id = withdrawn_then_cancel(499 * UNIT)
    with reverts(shops.CreditLimitExceeded, shopId=shop_id, debt=500 * UNIT, creditLimit=499 * UNIT):
        open_cancel(payment_id)
    assert payment.paymentOf(payment_id).status == 2  # still completed


def test_cancel_after_withdrawal__debt_at_credit_limit__opens(
    shops, payment, shop_id, withdrawn_then_cancel, open_cancel
):
    payment_id = withdrawn_then_cancel(500 * UNIT)
    open_cancel(payment_id)
    info = shops.shopOf(shop_id)
    assert info.withdrawnPoint - info.settledPoint == 500 * UNIT == info.creditLimit
