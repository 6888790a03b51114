"""Whole payment flows for both loyalty types, every wrong-state transition, and refunds to accounts
that switched to tokens while their point payment was held in escrow."""

import ape
import pytest

from tests.utils.checks import assert_event, changes, ledger_tokens_balance, reverts
from tests.utils.constants import (
    CANCEL_OPEN,
    CANCELLED,
    CLOSED,
    DAY,
    NONE,
    OPEN,
    POINT,
    REFUNDED,
    STATUS_NAMES,
    TOKEN,
    UNIT,
)

ESCROW = {POINT: "escrow.point", TOKEN: "escrow.token"}
FEES = {POINT: "fees.point", TOKEN: "fees.token"}
AMOUNT = 2_000 * UNIT  # KRW: 2,000 points or 20 THE9, fee 5 %


@pytest.fixture(params=[POINT, TOKEN], ids=["point", "token"])
def loyalty_type(request):
    return request.param


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def payers(point_payer, token_payer, fund):
    """Funded once for the module: 10,000 points, and 10,000 THE9 in a token account."""
    fund(point_payer, POINT, 10_000 * UNIT)
    fund(token_payer, TOKEN, 10_000 * UNIT)
    return [point_payer, token_payer]


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def by_status(payers, payment_in_state):
    """One payment of the point payer in each status (a fresh id for None)."""
    return {status: payment_in_state(payers[POINT], status) for status in STATUS_NAMES}


@pytest.fixture
def payer(payers, loyalty_type):
    return payers[loyalty_type]


def paid_and_fee(loyalty_type):
    paid = AMOUNT if loyalty_type == POINT else AMOUNT // 100
    return paid, paid * 500 // 10_000


def completion(loyalty_type):
    """What completing the payment changes: escrow -> fee account and shop (and reserve for tokens)."""
    paid, fee = paid_and_fee(loyalty_type)
    moved = {
        ESCROW[loyalty_type]: -(paid + fee),
        FEES[loyalty_type]: fee,
        "shop.usedPoint": AMOUNT,
        "shop.settledPoint": AMOUNT,
    }
    if loyalty_type == TOKEN:
        moved["reserve"] = paid
    return moved


def reversed_(moved):
    return {key: -value for key, value in moved.items()}


# ---------------------------------------------------------------- flows


def test_flow__open_then_confirm(
    payment, relay, payer, payers, loyalty_type, shop_id, open_payment, state, token, ledger
):
    start = state(user=payer, shop=shop_id)
    payment_id = open_payment(payer, amount=AMOUNT)
    opened = state(user=payer, shop=shop_id)
    paid, fee = paid_and_fee(loyalty_type)
    assert changes(start, opened) == {"user": -(paid + fee), ESCROW[loyalty_type]: paid + fee}
    assert payment.paymentOf(payment_id).status == OPEN

    payment.closeNewPayment(payment_id, True, sender=relay)

    assert changes(opened, state(user=payer, shop=shop_id)) == completion(loyalty_type)
    assert payment.paymentOf(payment_id).status == CLOSED
    ledger_tokens_balance(token, ledger, payers)


def test_flow__open_then_refuse(payment, relay, payer, shop_id, open_payment, state):
    start = state(user=payer, shop=shop_id)
    payment_id = open_payment(payer, amount=AMOUNT)
    payment.closeNewPayment(payment_id, False, sender=relay)
    # Everything is back where it was.
    assert state(user=payer, shop=shop_id) == start
    assert payment.paymentOf(payment_id).status == REFUNDED


def test_flow__cancel_confirmed(payment, relay, payer, loyalty_type, shop_id, completed_payment, open_cancel, state):
    start = state(user=payer, shop=shop_id)
    payment_id = completed_payment(payer, amount=AMOUNT)
    completed = state(user=payer, shop=shop_id)
    paid, fee = paid_and_fee(loyalty_type)

    open_cancel(payment_id)
    cancel_open = state(user=payer, shop=shop_id)
    # The shop's used total and the fee go back into escrow (tokens from the reserve).
    back_in_escrow = reversed_(completion(loyalty_type))
    back_in_escrow[ESCROW[loyalty_type]] = paid + fee
    assert changes(completed, cancel_open) == back_in_escrow
    assert payment.paymentOf(payment_id).status == CANCEL_OPEN

    payment.closeCancelPayment(payment_id, True, sender=relay)

    assert changes(cancel_open, state(user=payer, shop=shop_id)) == {
        "user": paid + fee,
        ESCROW[loyalty_type]: -(paid + fee),
    }
    assert state(user=payer, shop=shop_id) == start
    assert payment.paymentOf(payment_id).status == CANCELLED


def test_flow__cancel_refused__back_to_closed_and_cancellable_again(
    payment, relay, payer, shop_id, completed_payment, open_cancel, state
):
    start = state(user=payer, shop=shop_id)
    payment_id = completed_payment(payer, amount=AMOUNT)
    completed = state(user=payer, shop=shop_id)

    open_cancel(payment_id)
    payment.closeCancelPayment(payment_id, False, sender=relay)
    assert payment.paymentOf(payment_id).status == CLOSED
    assert state(user=payer, shop=shop_id) == completed

    open_cancel(payment_id)
    payment.closeCancelPayment(payment_id, True, sender=relay)
    assert payment.paymentOf(payment_id).status == CANCELLED
    assert state(user=payer, shop=shop_id) == start


def test_flow__refused_cancel_keeps_original_cancel_period(
    payment, relay, user, give_points, completed_payment, open_cancel, sign_cancel, shop_owner, chain
):
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    cancel_deadline = payment.paymentOf(payment_id).deadline
    open_cancel(payment_id)
    payment.closeCancelPayment(payment_id, False, sender=relay)
    assert payment.paymentOf(payment_id).deadline == cancel_deadline

    dl, sig = sign_cancel(shop_owner, payment_id, deadline=cancel_deadline + 3600)
    chain.pending_timestamp = cancel_deadline + 1
    with reverts(payment.CancelPeriodOver, paymentId=payment_id, cancelDeadline=cancel_deadline):
        payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=relay)


def test_flow__cancel_after_cancel_period__reverts(
    payment, relay, payer, completed_payment, sign_cancel, shop_owner, chain
):
    payment_id = completed_payment(payer, amount=AMOUNT)
    cancel_deadline = payment.paymentOf(payment_id).deadline
    assert cancel_deadline == chain.blocks.head.timestamp + 7 * DAY
    chain.pending_timestamp = cancel_deadline + 1
    dl, sig = sign_cancel(shop_owner, payment_id)
    with reverts(payment.CancelPeriodOver, paymentId=payment_id, cancelDeadline=cancel_deadline):
        payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=relay)


def test_flow__cancel_period_fixed_when_payment_completes(
    payment, admin, user, give_points, completed_payment, open_cancel, chain
):
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    payment.setCancelPeriod(DAY, sender=admin)
    chain.pending_timestamp += 3 * DAY  # past the new period, within the payment's own
    open_cancel(payment_id)
    assert payment.paymentOf(payment_id).status == CANCEL_OPEN


def test_flow__zero_cancel_period__cancel_window_closes_with_the_block(
    payment, admin, relay, user, give_points, completed_payment, sign_cancel, shop_owner, chain
):
    payment.setCancelPeriod(0, sender=admin)
    give_points(user, 100 * UNIT)
    payment_id = completed_payment(user)
    cancel_deadline = payment.paymentOf(payment_id).deadline
    assert cancel_deadline == chain.blocks.head.timestamp
    dl, sig = sign_cancel(shop_owner, payment_id)
    chain.pending_timestamp = cancel_deadline + 1
    with reverts(payment.CancelPeriodOver, paymentId=payment_id, cancelDeadline=cancel_deadline):
        payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=relay)


@pytest.mark.parametrize("status", [OPEN, CANCEL_OPEN], ids=["open", "cancel_open"])
def test_flow__refundExpired__returns_escrow(payment, stranger, payer, shop_id, payment_in_state, state, status, chain):
    start = state(user=payer, shop=shop_id)
    payment_id = payment_in_state(payer, status, amount=AMOUNT)
    info = payment.paymentOf(payment_id)
    expires_at = info.deadline if status == OPEN else info.deadline + DAY
    chain.pending_timestamp = expires_at
    with reverts(payment.EscrowNotExpired, paymentId=payment_id, expiresAt=expires_at):
        payment.refundExpired(payment_id, sender=stranger)

    chain.pending_timestamp = expires_at + 1
    payment.refundExpired(payment_id, sender=stranger)

    assert payment.paymentOf(payment_id).status == (REFUNDED if status == OPEN else CANCELLED)
    assert state(user=payer, shop=shop_id) == start


def test_flow__escrow_equals_sum_of_payments_held(
    payment, relay, user, other_user, give_points, make_token_user, open_payment, open_cancel, ledger, by_status
):
    give_points(user, 100_000 * UNIT)
    make_token_user(other_user, tokens=1_000 * UNIT)
    ids = [
        open_payment(account, amount=amount) for account in (user, other_user) for amount in (1_000 * UNIT, 333 * UNIT)
    ]
    payment.closeNewPayment(ids[0], True, sender=relay)
    payment.closeNewPayment(ids[2], True, sender=relay)
    payment.closeNewPayment(ids[3], False, sender=relay)
    open_cancel(ids[2])

    held = {POINT: 0, TOKEN: 0}
    for payment_id in ids + list(by_status.values()):
        info = payment.paymentOf(payment_id)
        if info.status in (OPEN, CANCEL_OPEN):
            held[info.loyaltyType] += info.paid + info.fee
    assert held[POINT] > 0 and held[TOKEN] > 0
    assert ledger.escrowOf(POINT) == held[POINT]
    assert ledger.escrowOf(TOKEN) == held[TOKEN]


# ---------------------------------------------------------------- wrong states

WRONG_STATES = (
    [("closeNewPayment", status) for status in (NONE, CLOSED, REFUNDED, CANCEL_OPEN, CANCELLED)]
    + [("openCancelPayment", status) for status in (NONE, OPEN, REFUNDED, CANCEL_OPEN, CANCELLED)]
    + [("closeCancelPayment", status) for status in (NONE, OPEN, CLOSED, REFUNDED, CANCELLED)]
    + [("refundExpired", status) for status in (NONE, CLOSED, REFUNDED, CANCELLED)]
)


@pytest.mark.parametrize(
    "action, status", WRONG_STATES, ids=[f"{action}-{STATUS_NAMES[status]}" for action, status in WRONG_STATES]
)
def test_transition__from_wrong_status__reverts(
    payment, relay, shop_owner, by_status, sign_cancel, shop_id, action, status, chain
):
    payment_id = by_status[status]
    chain.pending_timestamp += 40 * DAY  # even when every timeout has passed
    if action == "openCancelPayment":
        dl, sig = sign_cancel(shop_owner, payment_id, shop=shop_id)
        with reverts(payment.InvalidPaymentStatus, paymentId=payment_id, status=status):
            payment.openCancelPayment(payment_id, "P000001", dl, sig, sender=relay)
    elif action == "refundExpired":
        with reverts(payment.InvalidPaymentStatus, paymentId=payment_id, status=status):
            payment.refundExpired(payment_id, sender=relay)
    else:
        # Both the confirm and the refuse branch check the status.
        for confirm in (True, False):
            with reverts(payment.InvalidPaymentStatus, paymentId=payment_id, status=status):
                getattr(payment, action)(payment_id, confirm, sender=relay)
    assert payment.paymentOf(payment_id).status == status


@pytest.mark.parametrize("status", [OPEN, CLOSED, REFUNDED, CANCEL_OPEN, CANCELLED], ids=lambda s: STATUS_NAMES[s])
def test_openNewPayment__id_of_payment_in_any_status__reverts(
    payment, relay, payers, shop_id, by_status, sign_new_payment, status
):
    payment_id = by_status[status]
    data, sig = sign_new_payment(payers[POINT], payment_id, shop_id, 10 * UNIT)
    with reverts(payment.PaymentAlreadyExists, paymentId=payment_id):
        payment.openNewPayment(data, sig, sender=relay)


# ---------------------------------------------------------------- switched to tokens while in escrow


def _switch_with_points_held(user, give_points, ledger, open_payment, payment_in_state, status):
    give_points(user, 10_000 * UNIT)
    payment_id = payment_in_state(user, status, amount=AMOUNT)  # 2,100 points held
    ledger.switchToToken(0, sender=user)  # the other 7,900 points become 79 THE9
    assert ledger.accountOf(user) == (TOKEN, 79 * UNIT)
    return payment_id


@pytest.mark.parametrize(
    "status, finish",
    [(OPEN, "refuse"), (OPEN, "expire"), (CANCEL_OPEN, "confirm"), (CANCEL_OPEN, "expire")],
    ids=["open-refused", "open-expired", "cancel_open-confirmed", "cancel_open-expired"],
)
def test_refund__account_switched_to_tokens_meanwhile__paid_in_tokens(
    payment,
    relay,
    ledger,
    token,
    user,
    payers,
    give_points,
    open_payment,
    payment_in_state,
    state,
    chain,
    status,
    finish,
):
    payment_id = _switch_with_points_held(user, give_points, ledger, open_payment, payment_in_state, status)
    info = payment.paymentOf(payment_id)
    assert (info.loyaltyType, info.paid + info.fee) == (POINT, 2_100 * UNIT)
    before = state(user=user)

    if finish == "expire":
        chain.pending_timestamp = (info.deadline if status == OPEN else info.deadline + DAY) + 1
        receipt = payment.refundExpired(payment_id, sender=relay)
    elif status == OPEN:
        receipt = payment.closeNewPayment(payment_id, False, sender=relay)
    else:
        receipt = payment.closeCancelPayment(payment_id, True, sender=relay)

    # 2,100 points leave the point escrow; the account gets 21 THE9 from the reserve.
    assert_event(receipt, ledger.RefundConverted, account=user, point=2_100 * UNIT, token=21 * UNIT)
    assert changes(before, state(user=user)) == {
        "user": 21 * UNIT,
        "escrow.point": -2_100 * UNIT,
        "reserve": -21 * UNIT,
    }
    assert payment.paymentOf(payment_id).status == (REFUNDED if status == OPEN else CANCELLED)
    ledger_tokens_balance(token, ledger, [user, *payers])


def test_refund__account_switched_and_reserve_empty__reverts_until_funded(
    payment, relay, ledger, admin, user, give_points, open_payment, payment_in_state
):
    payment_id = _switch_with_points_held(user, give_points, ledger, open_payment, payment_in_state, OPEN)
    ledger.withdrawReserve(admin, ledger.reserve(), sender=admin)
    with reverts(ledger.InsufficientReserve, reserve=0, required=21 * UNIT):
        payment.closeNewPayment(payment_id, False, sender=relay)
    # Completing it is still possible, and refunding works once the reserve is funded again.
    ledger.fundReserve(21 * UNIT, sender=admin)
    payment.closeNewPayment(payment_id, False, sender=relay)
    assert ledger.accountOf(user) == (TOKEN, 100 * UNIT)
