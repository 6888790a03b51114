"""LoyaltyPayment: settings, the estimate, and each payment function on its own.

Whole flows and every wrong-state transition: test_payment_flows.py; signatures: test_signatures.py."""

import secrets

import ape
import pytest

from tests.utils.checks import assert_event, assert_no_event, changes, event_names, ledger_tokens_balance, reverts
from tests.utils.constants import (
    CANCEL_OPEN,
    CANCELLED,
    CLOSED,
    DAY,
    FEE_RATE,
    NONE,
    OPEN,
    POINT,
    REFUNDED,
    TOKEN,
    UNIT,
    ZERO_ADDRESS,
    ZERO_BYTES32,
)
from tests.utils.signing import deadline

ESCROW = {POINT: "escrow.point", TOKEN: "escrow.token"}
FEES = {POINT: "fees.point", TOKEN: "fees.token"}


def fee_of(amount, rate=FEE_RATE):
    return amount * rate // 10_000


def new_id():
    return "0x" + secrets.token_hex(32)


@pytest.fixture(params=[POINT, TOKEN], ids=["point", "token"])
def loyalty_type(request):
    return request.param


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def payers(point_payer, token_payer, fund):
    """Funded once for the module: 10,000 points, and 10,000 THE9 in a token account."""
    fund(point_payer, POINT, 10_000 * UNIT)
    fund(token_payer, TOKEN, 10_000 * UNIT)
    return [point_payer, token_payer]


@pytest.fixture
def payer(payers, loyalty_type):
    """The user paying with the test's loyalty type (10,000 points or 10,000 THE9)."""
    return payers[loyalty_type]


def paid_for(loyalty_type, amount_krw):
    """What a payment of `amount_krw` KRW costs in the payer's unit (100 points per THE9)."""
    return amount_krw if loyalty_type == POINT else amount_krw // 100


# ---------------------------------------------------------------- deployment and settings


def test_constructor__default_settings_and_wiring(payment, ledger, shops, rates, admin, relay):
    assert (payment.feeRate(), payment.cancelPeriod(), payment.escrowTimeout()) == (500, 7 * DAY, DAY)
    assert (payment.ledger(), payment.shops(), payment.rates()) == (ledger.address, shops.address, rates.address)
    assert payment.hasRole(payment.DEFAULT_ADMIN_ROLE(), admin)
    assert payment.hasRole(payment.RELAY_ROLE(), relay)
    assert payment.FEE_DENOMINATOR() == 10_000
    assert payment.MAX_FEE_RATE() == 1_000
    assert payment.MAX_CANCEL_PERIOD() == 365 * DAY
    assert (payment.MIN_ESCROW_TIMEOUT(), payment.MAX_ESCROW_TIMEOUT()) == (600, 30 * DAY)


@pytest.mark.parametrize("rate", [0, 1, 1_000])
def test_setFeeRate__within_bounds__sets(payment, admin, rate):
    receipt = payment.setFeeRate(rate, sender=admin)
    assert payment.feeRate() == rate
    assert_event(receipt, payment.FeeRateSet, feeRate=rate)


def test_setFeeRate__over_maximum__reverts(payment, admin):
    with reverts(payment.InvalidSetting, value=1_001, min=0, max=1_000):
        payment.setFeeRate(1_001, sender=admin)


@pytest.mark.parametrize("period", [0, DAY, 365 * DAY])
def test_setCancelPeriod__within_bounds__sets(payment, admin, period):
    receipt = payment.setCancelPeriod(period, sender=admin)
    assert payment.cancelPeriod() == period
    assert_event(receipt, payment.CancelPeriodSet, cancelPeriod=period)


def test_setCancelPeriod__over_maximum__reverts(payment, admin):
    with reverts(payment.InvalidSetting, value=365 * DAY + 1, min=0, max=365 * DAY):
        payment.setCancelPeriod(365 * DAY + 1, sender=admin)


@pytest.mark.parametrize("timeout", [600, DAY, 30 * DAY])
def test_setEscrowTimeout__within_bounds__sets(payment, admin, timeout):
    receipt = payment.setEscrowTimeout(timeout, sender=admin)
    assert payment.escrowTimeout() == timeout
    assert_event(receipt, payment.EscrowTimeoutSet, escrowTimeout=timeout)


@pytest.mark.parametrize("timeout", [0, 599, 30 * DAY + 1])
def test_setEscrowTimeout__out_of_bounds__reverts(payment, admin, timeout):
    with reverts(payment.InvalidSetting, value=timeout, min=600, max=30 * DAY):
        payment.setEscrowTimeout(timeout, sender=admin)


@pytest.mark.parametrize("setter, value", [("setFeeRate", 100), ("setCancelPeriod", DAY), ("setEscrowTimeout", DAY)])
def test_settings__not_admin__reverts(payment, relay, setter, value):
    with reverts(payment.AccessControlUnauthorizedAccount, account=relay, neededRole=payment.DEFAULT_ADMIN_ROLE()):
        getattr(payment, setter)(value, sender=relay)


def test_setFeeRate__applies_to_payments_opened_afterwards(
    payment, admin, relay, user, give_points, open_payment, state
):
    payer = user
    give_points(payer, 1_000 * UNIT)
    before_change = open_payment(payer, amount=100 * UNIT)
    payment.setFeeRate(1_000, sender=admin)
    after_change = open_payment(payer, amount=100 * UNIT)
    assert (payment.paymentOf(before_change).feeRate, payment.paymentOf(before_change).fee) == (500, 5 * UNIT)
    assert (payment.paymentOf(after_change).feeRate, payment.paymentOf(after_change).fee) == (1_000, 10 * UNIT)
    # Closing and refunding use the rate fixed at opening.
    before = state(user=payer)
    receipt = payment.closeNewPayment(before_change, True, sender=relay)
    assert_event(receipt, payment.PaymentClosed, paymentId=before_change, paid=100 * UNIT, fee=5 * UNIT)
    assert changes(before, state(user=payer)) == {"escrow.point": -105 * UNIT, "fees.point": 5 * UNIT}
    receipt = payment.closeNewPayment(after_change, False, sender=relay)
    assert_event(receipt, payment.PaymentRefunded, paymentId=after_change, total=110 * UNIT)


# ---------------------------------------------------------------- estimate


def test_estimate__spec_example__point_user(payment, user, give_points):
    give_points(user, 1_000 * UNIT)
    e = payment.estimate(user, 10 * UNIT, "krw")
    assert (e.loyaltyType, e.balance) == (POINT, 1_000 * UNIT)
    assert (e.paidPoint, e.feePoint, e.totalPoint) == (10 * UNIT, UNIT // 2, 105 * UNIT // 10)
    assert (e.paidValue, e.feeValue, e.totalValue) == (10 * UNIT, UNIT // 2, 105 * UNIT // 10)
    assert (e.paidToken, e.feeToken, e.totalToken) == (0, 0, 0)


@pytest.mark.parametrize(
    "currency, paid",
    [
        ("krw", UNIT // 10),  # 10 KRW = 10 points = 0.1 THE9
        ("usd", 135 * UNIT),  # 10 USD = 13,500 points = 135 THE9
        ("the9", 10 * UNIT),
        ("point", UNIT // 10),
    ],
)
def test_estimate__token_user(payment, user, make_token_user, currency, paid):
    make_token_user(user, tokens=500 * UNIT)
    e = payment.estimate(user, 10 * UNIT, currency)
    assert (e.loyaltyType, e.balance) == (TOKEN, 500 * UNIT)
    assert (e.paidToken, e.feeToken, e.totalToken) == (paid, paid // 20, paid + paid // 20)
    assert (e.paidValue, e.feeValue, e.totalValue) == (10 * UNIT, UNIT // 2, 105 * UNIT // 10)
    assert (e.paidPoint, e.feePoint, e.totalPoint) == (0, 0, 0)


@pytest.mark.parametrize(
    "currency, paid",
    [("krw", 10 * UNIT), ("usd", 13_500 * UNIT), ("the9", 1_000 * UNIT), ("point", 10 * UNIT)],
)
def test_estimate__point_user__any_currency(payment, user, currency, paid):
    e = payment.estimate(user, 10 * UNIT, currency)
    assert (e.loyaltyType, e.balance) == (POINT, 0)
    assert (e.paidPoint, e.feePoint, e.totalPoint) == (paid, paid // 20, paid + paid // 20)
    assert (e.paidValue, e.feeValue, e.totalValue) == (10 * UNIT, UNIT // 2, 105 * UNIT // 10)
    assert (e.paidToken, e.feeToken, e.totalToken) == (0, 0, 0)


def test_estimate__follows_rate_changes(payment, rates, admin, user, make_token_user, chain):
    make_token_user(user)
    chain.pending_timestamp += 3_600
    rates.setRates(["usd", "the9"], [1_400 * UNIT, 110 * UNIT], sender=admin)
    assert payment.estimate(user, 10 * UNIT, "usd").paidToken == 14_000 * UNIT * UNIT // (110 * UNIT)


@pytest.mark.parametrize("rate", [0, 1_000])
def test_estimate__follows_fee_rate(payment, admin, user, rate):
    payment.setFeeRate(rate, sender=admin)
    e = payment.estimate(user, 10 * UNIT, "krw")
    assert (e.feePoint, e.feeValue) == (fee_of(10 * UNIT, rate), fee_of(10 * UNIT, rate))


@pytest.mark.parametrize("amount, fee", [(1, 0), (19, 0), (20, 1), (39, 1), (40, 2)])
def test_estimate__fee_rounds_down(payment, user, amount, fee):
    e = payment.estimate(user, amount, "krw")
    assert (e.paidPoint, e.feePoint, e.totalPoint) == (amount, fee, amount + fee)


def test_estimate__unknown_currency__reverts(payment, rates, user, relay):
    with reverts(rates.UnknownCurrency, currency="eur"):
        payment.estimate.transact(user, 10 * UNIT, "eur", sender=relay)


@pytest.mark.parametrize("currency", ["krw", "usd", "the9"])
def test_estimate__matches_what_openNewPayment_charges(
    payment, rates, payer, loyalty_type, currency, open_payment, state
):
    amount = 12_345_678_901_234_567  # an odd amount, to exercise rounding
    e = payment.estimate(payer, amount, currency)
    paid, fee, total = (
        (e.paidPoint, e.feePoint, e.totalPoint) if loyalty_type == POINT else (e.paidToken, e.feeToken, e.totalToken)
    )
    before = state(user=payer)
    payment_id = open_payment(payer, amount=amount, currency=currency)
    assert changes(before, state(user=payer)) == {"user": -total, ESCROW[loyalty_type]: total}
    info = payment.paymentOf(payment_id)
    assert (info.paid, info.fee, info.shopPoint) == (paid, fee, rates.toPoint(amount, currency))
    assert total == paid + fee > 0


# ---------------------------------------------------------------- openNewPayment


def test_openNewPayment__holds_total_in_escrow(
    payment, relay, payer, payers, loyalty_type, shop_id, sign_new_payment, state, chain, token, ledger
):
    payment_id = new_id()
    nonce = payment.nonces(payer)
    data, sig = sign_new_payment(payer, payment_id, shop_id, 1_000 * UNIT, "krw", "P000042")
    before = state(user=payer, shop=shop_id)

    receipt = payment.openNewPayment(data, sig, sender=relay)

    paid = paid_for(loyalty_type, 1_000 * UNIT)
    fee = fee_of(paid)
    assert changes(before, state(user=payer, shop=shop_id)) == {"user": -(paid + fee), ESCROW[loyalty_type]: paid + fee}
    assert payment.nonces(payer) == nonce + 1
    info = payment.paymentOf(payment_id)
    assert info == (
        bytes.fromhex(payment_id[2:]),
        bytes.fromhex(shop_id[2:]),
        payer.address,
        loyalty_type,
        OPEN,
        paid,
        fee,
        1_000 * UNIT,
        FEE_RATE,
        chain.blocks.head.timestamp + DAY,
    )
    assert_event(
        receipt,
        payment.PaymentOpened,
        paymentId=payment_id,
        shopId=shop_id,
        account=payer,
        purchaseId="P000042",
        amount=1_000 * UNIT,
        currency="krw",
        loyaltyType=loyalty_type,
        paid=paid,
        fee=fee,
        shopPoint=1_000 * UNIT,
    )
    ledger_tokens_balance(token, ledger, payers)


def test_openNewPayment__used_id__reverts(payment, relay, user, give_points, shop_id, open_payment, sign_new_payment):
    give_points(user, 100 * UNIT)
    payment_id = open_payment(user)
    # A fresh, valid signature does not make an id usable twice.
    data, sig = sign_new_payment(user, payment_id, shop_id, 10 * UNIT)
    with reverts(payment.PaymentAlreadyExists, paymentId=payment_id):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__zero_id__reverts(payment, relay, user, give_points, shop_id, sign_new_payment):
    give_points(user, 100 * UNIT)
    data, sig = sign_new_payment(user, ZERO_BYTES32, shop_id, 10 * UNIT)
    with reverts(payment.PaymentAlreadyExists, paymentId=ZERO_BYTES32):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__zero_amount__reverts(payment, relay, user, give_points, shop_id, sign_new_payment):
    give_points(user, 100 * UNIT)
    data, sig = sign_new_payment(user, new_id(), shop_id, 0)
    with reverts(payment.InvalidAmount, amount=0):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__amount_worth_no_token__reverts(
    payment, relay, user, make_token_user, shop_id, sign_new_payment
):
    make_token_user(user, tokens=100 * UNIT)
    # 99 wei of KRW is less than one wei of THE9.
    data, sig = sign_new_payment(user, new_id(), shop_id, 99)
    with reverts(payment.InvalidAmount, amount=99):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__insufficient_balance__reverts(
    payment, ledger, relay, payer, loyalty_type, shop_id, sign_new_payment
):
    balance = 10_000 * UNIT
    amount = 10_000 * UNIT if loyalty_type == POINT else 1_000_000 * UNIT  # in KRW: the whole balance
    data, sig = sign_new_payment(payer, new_id(), shop_id, amount)
    with reverts(ledger.InsufficientBalance, account=payer, balance=balance, required=balance + fee_of(balance)):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__unknown_shop__reverts(payment, shops, relay, user, give_points, sign_new_payment):
    give_points(user, 100 * UNIT)
    shop = new_id()
    data, sig = sign_new_payment(user, new_id(), shop, 10 * UNIT)
    with reverts(shops.UnknownShop, shopId=shop):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__unknown_currency__reverts(payment, rates, relay, user, give_points, shop_id, sign_new_payment):
    give_points(user, 100 * UNIT)
    data, sig = sign_new_payment(user, new_id(), shop_id, 10 * UNIT, "eur")
    with reverts(rates.UnknownCurrency, currency="eur"):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__not_relay__reverts(payment, user, give_points, shop_id, sign_new_payment):
    give_points(user, 100 * UNIT)
    data, sig = sign_new_payment(user, new_id(), shop_id, 10 * UNIT)
    # Not even the paying user may submit: payments go through the relay.
    with reverts(payment.AccessControlUnauthorizedAccount, account=user, neededRole=payment.RELAY_ROLE()):
        payment.openNewPayment(data, sig, sender=user)


def test_openNewPayment__amount_beyond_uint128__reverts(payment, relay, user, shop_id, sign_new_payment):
    data, sig = sign_new_payment(user, new_id(), shop_id, 2**128)
    with reverts(payment.SafeCastOverflowedUintDowncast, bits=128, value=2**128):
        payment.openNewPayment(data, sig, sender=relay)


# ---------------------------------------------------------------- what the user signed bounds the charge


def test_openNewPayment__max_total_above_the_charge__charges_only_the_charge(
    payment, relay, user, give_points, shop_id, sign_new_payment, state
):
    give_points(user, 100 * UNIT)
    data, sig = sign_new_payment(user, new_id(), shop_id, 10 * UNIT, maxTotal=50 * UNIT)
    before = state(user=user)
    payment.openNewPayment(data, sig, sender=relay)
    assert changes(before, state(user=user)) == {"user": -105 * UNIT // 10, "escrow.point": 105 * UNIT // 10}


def test_openNewPayment__max_total_exactly_the_charge__opens(
    payment, relay, user, give_points, shop_id, sign_new_payment
):
    give_points(user, 100 * UNIT)
    payment_id = new_id()
    data, sig = sign_new_payment(user, payment_id, shop_id, 10 * UNIT, maxTotal=105 * UNIT // 10)
    payment.openNewPayment(data, sig, sender=relay)
    assert payment.paymentOf(payment_id).status == OPEN


@pytest.mark.parametrize("moved", ["fee rate", "currency rate", "token rate"])
def test_openNewPayment__rates_moved_after_signing__reverts_with_the_charge(
    payment, rates, relay, admin, payer, loyalty_type, shop_id, sign_new_payment, chain, moved
):
    # The wallet signed the estimate of 1 USD; the rate setter or the admin moves before the relay submits.
    payment_id = new_id()
    # Signed for longer than the hour the rate setter must wait between updates.
    data, sig = sign_new_payment(payer, payment_id, shop_id, UNIT, currency="usd", deadline=deadline(3 * 3_600))
    signed_total = data[7]
    chain.pending_timestamp += 3_600
    if moved == "fee rate":
        payment.setFeeRate(1_000, sender=admin)
    elif moved == "currency rate":
        rates.setRates(["usd"], [1_485 * UNIT], sender=admin)
    else:
        rates.setRates(["the9"], [91 * UNIT], sender=admin)
    e = payment.estimate(payer, UNIT, "usd")
    total = e.totalToken if loyalty_type == TOKEN else e.totalPoint
    if total <= signed_total:  # the token rate does not move a point payment
        payment.openNewPayment(data, sig, sender=relay)
        assert (moved, loyalty_type) == ("token rate", POINT)
        return
    with reverts(payment.ChargeExceedsMaxTotal, paymentId=payment_id, total=total, maxTotal=signed_total):
        payment.openNewPayment(data, sig, sender=relay)
    assert payment.nonces(payer) == 0


@pytest.mark.parametrize("signed", [TOKEN, POINT])
def test_openNewPayment__other_loyalty_type_than_signed__reverts(
    payment, relay, user, fund, shop_id, sign_new_payment, signed
):
    # The account's type is the other one (it switched, or the wallet signed the wrong one).
    fund(user, 1 - signed, 100 * UNIT)
    payment_id = new_id()
    data, sig = sign_new_payment(user, payment_id, shop_id, 10 * UNIT, loyaltyType=signed, maxTotal=10**30)
    with reverts(payment.LoyaltyTypeMismatch, account=user, loyaltyType=1 - signed):
        payment.openNewPayment(data, sig, sender=relay)


def test_openNewPayment__zero_max_total__reverts(payment, relay, user, give_points, shop_id, sign_new_payment):
    give_points(user, 100 * UNIT)
    payment_id = new_id()
    data, sig = sign_new_payment(user, payment_id, shop_id, 10 * UNIT, maxTotal=0)
    with reverts(payment.ChargeExceedsMaxTotal, paymentId=payment_id, total=105 * UNIT // 10, maxTotal=0):
        payment.openNewPayment(data, sig, sender=relay)


def test_paymentOf__unknown_payment__is_empty(payment):
    payment_id = new_id()
    assert payment.paymentOf(payment_id) == (
        bytes.fromhex(payment_id[2:]),
        bytes(32),
        ZERO_ADDRESS,
        POINT,
        NONE,
        0,
        0,
        0,
        0,
        0,
    )


# ---------------------------------------------------------------- closeNewPayment


def test_closeNewPayment__confirm__pays_shop_and_fee_account(
    payment, relay, payer, payers, loyalty_type, shop_id, open_payment, state, chain, token, ledger
):
    payment_id = open_payment(payer, amount=1_000 * UNIT)
    paid = paid_for(loyalty_type, 1_000 * UNIT)
    before = state(user=payer, shop=shop_id)

    receipt = payment.closeNewPayment(payment_id, True, sender=relay)

    expected = {
        ESCROW[loyalty_type]: -(paid + fee_of(paid)),
        FEES[loyalty_type]: fee_of(paid),
        "shop.usedPoint": 1_000 * UNIT,
        "shop.settledPoint": 1_000 * UNIT,
    }
    if loyalty_type == TOKEN:
        expected["reserve"] = paid  # redeemed tokens return to the foundation
    assert changes(before, state(user=payer, shop=shop_id)) == expected
    info = payment.paymentOf(payment_id)
    assert (info.status, info.deadline) == (CLOSED, chain.blocks.head.timestamp + 7 * DAY)
    assert_event(receipt, payment.PaymentClosed, paymentId=payment_id, paid=paid, fee=fee_of(paid))
    ledger_tokens_balance(token, ledger, payers)


def test_closeNewPayment__refuse__refunds_user(payment, relay, payer, loyalty_type, shop_id, open_payment, state):
    payment_id = open_payment(payer, amount=1_000 * UNIT)
    paid = paid_for(loyalty_type, 1_000 * UNIT)
    deadline = payment.paymentOf(payment_id).deadline
    before = state(user=payer, shop=shop_id)

    receipt = payment.closeNewPayment(payment_id, False, sender=relay)

    total = paid + fee_of(paid)
    assert changes(before, state(user=payer, shop=shop_id)) == {"user": total, ESCROW[loyalty_type]: -total}
    info = payment.paymentOf(payment_id)
    assert (info.status, info.deadline) == (REFUNDED, deadline)
    assert_event(receipt, payment.PaymentRefunded, paymentId=payment_id, total=total)
    assert_no_event(receipt, payment.PaymentClosed)


def test_closeNewPayment__confirm_at_escrow_expiry__completes(payment, relay, user, give_points, open_payment, chain):
    give_points(user, 100 * UNIT)
    payment_id = open_payment(user)
    chain.pending_timestamp = payment.paymentOf(payment_id).deadline
    payment.closeNewPayment(payment_id, True, sender=relay)
    assert payment.paymentOf(payment_id).status == CLOSED


def test_closeNewPayment__confirm_after_escrow_expiry__reverts_and_refund_still_possible(
    payment, relay, user, give_points, open_payment, chain
):
    # After the timeout the payment belongs back to the user: the relay can no longer complete it.
    give_points(user, 100 * UNIT)
    payment_id = open_payment(user)
    expires_at = payment.paymentOf(payment_id).deadline
    chain.pending_timestamp = expires_at + 1
    with reverts(payment.EscrowExpired, paymentId=payment_id, expiresAt=expires_at):
        payment.closeNewPayment(payment_id, True, sender=relay)
    payment.closeNewPayment(payment_id, False, sender=relay)
    assert payment.paymentOf(payment_id).status == REFUNDED
    assert ledger_balance(payment, user) == 100 * UNIT


def ledger_balance(payment, account):
    return ape.project.Ledger.at(payment.ledger()).accountOf(account)[1]


@pytest.mark.parametrize("confirm", [True, False])
def test_closeNewPayment__not_relay__reverts(payment, user, give_points, open_payment, confirm):
    give_points(user, 100 * UNIT)
    payment_id = open_payment(user)
    with reverts(payment.AccessControlUnauthorizedAccount, account=user, neededRole=payment.RELAY_ROLE()):
        payment.closeNewPayment(payment_id, confirm, sender=user)


# ---------------------------------------------------------------- openCancelPayment


def test_openCancelPayment__returns_payment_to_escrow(
    payment, relay, payer, loyalty_type, shop_id, shop_owner, completed_payment, sign_cancel, state
):
    payment_id = completed_payment(payer, amount=1_000 * UNIT)
    paid = paid_for(loyalty_type, 1_000 * UNIT)
    deadline = payment.paymentOf(payment_id).deadline
    nonce = payment.nonces(shop_owner)
    dl, sig = sign_cancel(shop_owner, payment_id)
    before = state(user=payer, shop=shop_id)

    receipt = payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=relay)

    expected = {
        ESCROW[loyalty_type]: paid + fee_of(paid),
        FEES[loyalty_type]: -fee_of(paid),
        "shop.usedPoint": -1_000 * UNIT,
        "shop.settledPoint": -1_000 * UNIT,
    }
    if loyalty_type == TOKEN:
        expected["reserve"] = -paid
    assert changes(before, state(user=payer, shop=shop_id)) == expected
    info = payment.paymentOf(payment_id)
    assert (info.status, info.deadline) == (CANCEL_OPEN, deadline)
    assert payment.nonces(shop_owner) == nonce + 1
    assert_event(receipt, payment.CancelOpened, paymentId=payment_id, account=shop_owner)


def test_openCancelPayment__last_second_of_cancel_period__opens(
    payment, relay, user, give_points, completed_payment, open_cancel, chain
):
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    chain.pending_timestamp = payment.paymentOf(payment_id).deadline
    open_cancel(payment_id)
    assert payment.paymentOf(payment_id).status == CANCEL_OPEN


def test_openCancelPayment__after_cancel_period__reverts(
    payment, relay, user, shop_owner, give_points, completed_payment, sign_cancel, chain
):
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    cancel_deadline = payment.paymentOf(payment_id).deadline
    dl, sig = sign_cancel(shop_owner, payment_id, deadline=cancel_deadline + 3600)
    chain.pending_timestamp = cancel_deadline + 1
    with reverts(payment.CancelPeriodOver, paymentId=payment_id, cancelDeadline=cancel_deadline):
        payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=relay)


def test_openCancelPayment__not_relay__reverts(payment, user, shop_owner, give_points, completed_payment, sign_cancel):
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    dl, sig = sign_cancel(shop_owner, payment_id)
    with reverts(payment.AccessControlUnauthorizedAccount, account=shop_owner, neededRole=payment.RELAY_ROLE()):
        payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=shop_owner)


def test_openCancelPayment__token_fees_withdrawn__reverts(
    payment, ledger, admin, user, make_token_user, completed_payment, open_cancel
):
    make_token_user(user, tokens=100 * UNIT)
    payment_id = completed_payment(user, amount=1_000 * UNIT)  # 10 THE9, fee 0.5 THE9
    ledger.withdrawFees(admin, UNIT // 2, sender=admin)
    with reverts(ledger.InsufficientFees, fees=0, required=UNIT // 2):
        open_cancel(payment_id)


def test_openCancelPayment__token_reserve_too_small__reverts(
    payment, ledger, admin, user, make_token_user, completed_payment, open_cancel
):
    make_token_user(user, tokens=100 * UNIT)
    payment_id = completed_payment(user, amount=1_000 * UNIT)
    ledger.withdrawReserve(admin, ledger.reserve() - UNIT, sender=admin)
    with reverts(ledger.InsufficientReserve, reserve=UNIT, required=10 * UNIT):
        open_cancel(payment_id)


# ---------------------------------------------------------------- closeCancelPayment


def test_closeCancelPayment__confirm__refunds_user(
    payment, relay, payer, loyalty_type, shop_id, completed_payment, open_cancel, state
):
    payment_id = completed_payment(payer, amount=1_000 * UNIT)
    open_cancel(payment_id)
    paid = paid_for(loyalty_type, 1_000 * UNIT)
    before = state(user=payer, shop=shop_id)

    receipt = payment.closeCancelPayment(payment_id, True, sender=relay)

    total = paid + fee_of(paid)
    assert changes(before, state(user=payer, shop=shop_id)) == {"user": total, ESCROW[loyalty_type]: -total}
    assert payment.paymentOf(payment_id).status == CANCELLED
    assert_event(receipt, payment.PaymentCancelled, paymentId=payment_id, total=total)


def test_closeCancelPayment__refuse__completes_payment_again(
    payment, relay, payer, loyalty_type, shop_id, completed_payment, open_cancel, state
):
    payment_id = completed_payment(payer, amount=1_000 * UNIT)
    completed = state(user=payer, shop=shop_id)
    deadline = payment.paymentOf(payment_id).deadline
    open_cancel(payment_id)

    receipt = payment.closeCancelPayment(payment_id, False, sender=relay)

    assert state(user=payer, shop=shop_id) == completed
    info = payment.paymentOf(payment_id)
    # Back to Closed; the cancel period still ends when it did.
    assert (info.status, info.deadline) == (CLOSED, deadline)
    paid = paid_for(loyalty_type, 1_000 * UNIT)
    assert event_names(receipt, payment) == ["CancelReverted", "PaymentClosed"]
    assert_event(receipt, payment.CancelReverted, paymentId=payment_id)
    assert_event(receipt, payment.PaymentClosed, paymentId=payment_id, paid=paid, fee=fee_of(paid))


@pytest.mark.parametrize("offset", [0, 1])
def test_closeCancelPayment__refuse_around_escrow_expiry__only_until_it(
    payment, relay, user, give_points, completed_payment, open_cancel, chain, offset
):
    # An opened cancel expires escrowTimeout after the end of the cancel period; after that the
    # relay cannot reverse the cancel the owner approved, only complete it (refund the user).
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    open_cancel(payment_id)
    expires_at = payment.paymentOf(payment_id).deadline + payment.escrowTimeout()
    chain.pending_timestamp = expires_at + offset
    if offset:
        with reverts(payment.EscrowExpired, paymentId=payment_id, expiresAt=expires_at):
            payment.closeCancelPayment(payment_id, False, sender=relay)
        payment.closeCancelPayment(payment_id, True, sender=relay)
        assert payment.paymentOf(payment_id).status == CANCELLED
    else:
        payment.closeCancelPayment(payment_id, False, sender=relay)
        assert payment.paymentOf(payment_id).status == CLOSED


@pytest.mark.parametrize("confirm", [True, False])
def test_closeCancelPayment__not_relay__reverts(
    payment, user, shop_owner, give_points, completed_payment, open_cancel, confirm
):
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    open_cancel(payment_id)
    with reverts(payment.AccessControlUnauthorizedAccount, account=shop_owner, neededRole=payment.RELAY_ROLE()):
        payment.closeCancelPayment(payment_id, confirm, sender=shop_owner)


# ---------------------------------------------------------------- refundExpired


def test_refundExpired__open_before_timeout__reverts(payment, stranger, user, give_points, open_payment, chain):
    give_points(user, 100 * UNIT)
    payment_id = open_payment(user)
    expires_at = payment.paymentOf(payment_id).deadline
    chain.pending_timestamp = expires_at
    with reverts(payment.EscrowNotExpired, paymentId=payment_id, expiresAt=expires_at):
        payment.refundExpired(payment_id, sender=stranger)


def test_refundExpired__open_after_timeout__refunds_user(
    payment, stranger, payer, loyalty_type, open_payment, chain, state
):
    payment_id = open_payment(payer, amount=1_000 * UNIT)
    chain.pending_timestamp = payment.paymentOf(payment_id).deadline + 1
    before = state(user=payer)

    # Anyone may do it: loyalty cannot be stuck if the relay disappears.
    receipt = payment.refundExpired(payment_id, sender=stranger)

    total = paid_for(loyalty_type, 1_000 * UNIT) * 105 // 100
    assert changes(before, state(user=payer)) == {"user": total, ESCROW[loyalty_type]: -total}
    assert payment.paymentOf(payment_id).status == REFUNDED
    assert_event(receipt, payment.PaymentRefunded, paymentId=payment_id, total=total)


def test_refundExpired__open_with_timeout_changed_since__keeps_its_own(
    payment, admin, stranger, user, give_points, open_payment, chain
):
    give_points(user, 100 * UNIT)
    payment_id = open_payment(user)
    payment.setEscrowTimeout(30 * DAY, sender=admin)
    chain.pending_timestamp = payment.paymentOf(payment_id).deadline + 1
    payment.refundExpired(payment_id, sender=stranger)
    assert payment.paymentOf(payment_id).status == REFUNDED


def test_refundExpired__cancel_open_before_timeout__reverts(
    payment, stranger, user, give_points, completed_payment, open_cancel, chain
):
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    open_cancel(payment_id)
    # Counted from the end of the cancel period.
    expires_at = payment.paymentOf(payment_id).deadline + DAY
    chain.pending_timestamp = expires_at
    with reverts(payment.EscrowNotExpired, paymentId=payment_id, expiresAt=expires_at):
        payment.refundExpired(payment_id, sender=stranger)


def test_refundExpired__cancel_open_after_timeout__cancels(
    payment, stranger, payer, loyalty_type, completed_payment, open_cancel, chain, state
):
    payment_id = completed_payment(payer, amount=1_000 * UNIT)
    open_cancel(payment_id)
    chain.pending_timestamp = payment.paymentOf(payment_id).deadline + DAY + 1
    before = state(user=payer)

    receipt = payment.refundExpired(payment_id, sender=stranger)

    total = paid_for(loyalty_type, 1_000 * UNIT) * 105 // 100
    assert changes(before, state(user=payer)) == {"user": total, ESCROW[loyalty_type]: -total}
    assert payment.paymentOf(payment_id).status == CANCELLED
    assert_event(receipt, payment.PaymentCancelled, paymentId=payment_id, total=total)


def test_refundExpired__cancel_open__uses_the_current_escrow_timeout(
    payment, admin, stranger, user, give_points, completed_payment, open_cancel, chain
):
    # Unlike an open payment's, an opened cancel's expiry is not fixed: it reads the setting.
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    open_cancel(payment_id)
    payment.setEscrowTimeout(2 * DAY, sender=admin)
    expires_at = payment.paymentOf(payment_id).deadline + 2 * DAY
    chain.pending_timestamp = expires_at - DAY + 1
    with reverts(payment.EscrowNotExpired, paymentId=payment_id, expiresAt=expires_at):
        payment.refundExpired(payment_id, sender=stranger)
