"""The assertion helpers fail when they should: a wrong error, a wrong or unknown input, no revert,
a missing or wrong event argument. (Every test in this suite leans on them.)"""

import pytest

from tests.utils.checks import assert_event, assert_no_event, changes, panics, reverts
from tests.utils.constants import UNIT


def test_reverts__matching_error_and_inputs__passes(payment, relay):
    payment_id = "0x" + "11" * 32
    with reverts(payment.InvalidPaymentStatus, paymentId=payment_id, status=0):
        payment.closeNewPayment(payment_id, True, sender=relay)


@pytest.mark.parametrize(
    "inputs",
    [{"paymentId": "0x" + "22" * 32}, {"status": 1}, {"paymentID": "0x" + "11" * 32}],
    ids=["wrong id", "wrong status", "unknown input name"],
)
def test_reverts__wrong_or_unknown_input__fails(payment, relay, inputs):
    with pytest.raises(AssertionError), reverts(payment.InvalidPaymentStatus, **inputs):
        payment.closeNewPayment("0x" + "11" * 32, True, sender=relay)


def test_reverts__other_error__fails(payment, relay):
    with pytest.raises(AssertionError), reverts(payment.PaymentAlreadyExists):
        payment.closeNewPayment("0x" + "11" * 32, True, sender=relay)


def test_reverts__no_revert__fails(payment, admin):
    with pytest.raises(AssertionError), reverts(payment.InvalidSetting):
        payment.setFeeRate(100, sender=admin)


def test_reverts__undecoded_view_error__fails(rates):
    # Ape cannot decode a custom error of an eth_call; the helper refuses to guess.
    with pytest.raises(AssertionError), reverts(rates.UnknownCurrency, currency="eur"):
        rates.rateOf("eur")


def test_panics__other_code__fails(shops):
    with pytest.raises(AssertionError), panics(0x11):
        shops.shopAt(shops.shopCount())


def test_assert_event__wrong_or_missing_argument__fails(ledger, admin, user):
    receipt = ledger.grant(user, UNIT, sender=admin)
    assert_event(receipt, ledger.LoyaltyGranted, account=user, loyaltyType=0, amount=UNIT, point=UNIT)
    with pytest.raises(AssertionError):
        assert_event(receipt, ledger.LoyaltyGranted, account=user, loyaltyType=0, amount=UNIT, point=UNIT + 1)
    with pytest.raises(AssertionError):
        assert_event(receipt, ledger.LoyaltyGranted, account=user, loyaltyType=0, amount=UNIT)
    with pytest.raises(AssertionError):
        assert_no_event(receipt, ledger.LoyaltyGranted)


def test_changes__lists_only_what_moved():
    assert changes({"a": 1, "b": 2}, {"a": 1, "b": 5}) == {"b": 3}
