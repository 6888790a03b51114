"""CurrencyRate: the rate table every conversion goes through (point fixed at 1, lower-case codes)."""

import ape
import pytest
from ape import project
from eth_utils import keccak

from tests.utils.checks import assert_event, logs_of, reverts
from tests.utils.constants import DEFAULT_RATES, UNIT


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def bare_rates(admin):
    """A rate table without any rate, not even the token's."""
    return admin.deploy(project.CurrencyRate, admin, "the9")


# ---------------------------------------------------------------- constructor and views


def test_constructor__grants_admin_and_rate_setter_roles(bare_rates, admin, stranger):
    assert bare_rates.hasRole(bare_rates.DEFAULT_ADMIN_ROLE(), admin)
    assert bare_rates.hasRole(bare_rates.RATE_SETTER_ROLE(), admin)
    assert not bare_rates.hasRole(bare_rates.RATE_SETTER_ROLE(), stranger)
    assert bare_rates.RATE_SETTER_ROLE() == keccak(text="RATE_SETTER_ROLE")


def test_constants__point_code_and_unit(rates):
    assert rates.POINT() == "point"
    assert rates.ONE() == UNIT
    assert rates.tokenCurrency() == "the9"


@pytest.mark.parametrize("currency", sorted(DEFAULT_RATES))
def test_rateOf__deployed_rates(rates, currency):
    assert rates.rateOf(currency) == DEFAULT_RATES[currency] * UNIT


def test_rateOf__point__is_fixed_at_one(rates, bare_rates):
    assert rates.rateOf("point") == UNIT
    assert bare_rates.rateOf("point") == UNIT


@pytest.mark.parametrize("currency", ["eur", "KRW", "", "krw "])
def test_rateOf__unknown_currency__reverts(rates, admin, currency):
    # Codes are exact lower-case strings: the relay lower-cases what it is given.
    with reverts(rates.UnknownCurrency, currency=currency):
        rates.rateOf.transact(currency, sender=admin)


def test_convert__between_currencies(rates):
    assert rates.convert(2 * UNIT, "usd", "krw") == 2_700 * UNIT
    assert rates.convert(2 * UNIT, "usd", "the9") == 27 * UNIT
    assert rates.convert(1_350 * UNIT, "krw", "usd") == UNIT
    assert rates.convert(5 * UNIT, "point", "krw") == 5 * UNIT
    assert rates.convert(5 * UNIT, "the9", "point") == 500 * UNIT


def test_convert__rounds_down(rates):
    # 1,349 wei of KRW is worth 0.999... wei of USD.
    assert rates.convert(1_349, "krw", "usd") == 0
    assert rates.convert(1_351, "krw", "usd") == 1


@pytest.mark.parametrize("side", ["from", "to"])
def test_convert__unknown_currency__reverts(rates, admin, side):
    args = ("eur", "krw") if side == "from" else ("krw", "eur")
    with reverts(rates.UnknownCurrency, currency="eur"):
        rates.convert.transact(UNIT, *args, sender=admin)


def test_toPoint__uses_the_currency_rate(rates):
    assert rates.toPoint(10 * UNIT, "krw") == 10 * UNIT
    assert rates.toPoint(10 * UNIT, "usd") == 13_500 * UNIT
    assert rates.toPoint(10 * UNIT, "the9") == 1_000 * UNIT
    assert rates.toPoint(10 * UNIT, "point") == 10 * UNIT


def test_toPoint__unknown_currency__reverts(rates, admin):
    with reverts(rates.UnknownCurrency, currency="eur"):
        rates.toPoint.transact(UNIT, "eur", sender=admin)


def test_toToken__converts_at_the_token_rate_rounding_down(rates):
    assert rates.toToken(10 * UNIT, "krw") == UNIT // 10
    assert rates.toToken(10 * UNIT, "usd") == 135 * UNIT
    assert rates.toToken(10 * UNIT, "point") == UNIT // 10
    assert rates.toToken(99, "krw") == 0


def test_toToken__token_currency__is_identity(rates, bare_rates):
    assert rates.toToken(12_345, "the9") == 12_345
    # Even without a token rate: the token's own currency needs no conversion.
    assert bare_rates.toToken(12_345, "the9") == 12_345


def test_toToken__unknown_currency__reverts(rates, admin):
    with reverts(rates.UnknownCurrency, currency="eur"):
        rates.toToken.transact(UNIT, "eur", sender=admin)


def test_toToken__without_token_rate__reverts(bare_rates, admin):
    bare_rates.setRates(["krw"], [UNIT], sender=admin)
    with reverts(bare_rates.UnknownCurrency, currency="the9"):
        bare_rates.toToken.transact(UNIT, "krw", sender=admin)


def test_pointToToken__converts_points_at_the_token_rate(rates):
    assert rates.pointToToken(1_000 * UNIT) == 10 * UNIT
    assert rates.pointToToken(150) == 1
    assert rates.pointToToken(99) == 0


def test_pointToToken__without_token_rate__reverts(bare_rates, admin):
    with reverts(bare_rates.UnknownCurrency, currency="the9"):
        bare_rates.pointToToken.transact(UNIT, sender=admin)


# ---------------------------------------------------------------- setRates


def test_setRates__sets_each_rate_and_emits_RateSet(rates, admin):
    receipt = rates.setRates(["eur", "usd"], [1_500 * UNIT, 1_400 * UNIT], sender=admin)
    assert rates.rateOf("eur") == 1_500 * UNIT
    assert rates.rateOf("usd") == 1_400 * UNIT
    logs = logs_of(receipt, rates.RateSet)
    assert [(log.currency, log.rate) for log in logs] == [("eur", 1_500 * UNIT), ("usd", 1_400 * UNIT)]
    assert [bytes(log.currencyHash) for log in logs] == [keccak(text="eur"), keccak(text="usd")]


def test_setRates__token_rate__changes_token_conversions(rates, admin):
    receipt = rates.setRates(["the9"], [200 * UNIT], sender=admin)
    assert_event(receipt, rates.RateSet, currencyHash=keccak(text="the9"), currency="the9", rate=200 * UNIT)
    assert rates.pointToToken(1_000 * UNIT) == 5 * UNIT
    assert rates.toToken(10 * UNIT, "usd") == 135 * UNIT // 2


def test_setRates__by_granted_rate_setter(rates, admin, stranger):
    rates.grantRole(rates.RATE_SETTER_ROLE(), stranger, sender=admin)
    rates.setRates(["eur"], [1_500 * UNIT], sender=stranger)
    assert rates.rateOf("eur") == 1_500 * UNIT


def test_setRates__not_rate_setter__reverts(rates, stranger):
    with reverts(rates.AccessControlUnauthorizedAccount, account=stranger, neededRole=rates.RATE_SETTER_ROLE()):
        rates.setRates(["eur"], [1_500 * UNIT], sender=stranger)


def test_setRates__length_mismatch__reverts(rates, admin):
    with reverts(rates.InvalidRate, currency=""):
        rates.setRates(["eur", "gbp"], [1_500 * UNIT], sender=admin)


def test_setRates__zero_rate__reverts_and_sets_nothing(rates, admin):
    # A missing rate is an error, never a zero: zero cannot be set, and the batch is atomic.
    with reverts(rates.InvalidRate, currency="gbp"):
        rates.setRates(["eur", "gbp"], [1_500 * UNIT, 0], sender=admin)
    with reverts(rates.UnknownCurrency, currency="eur"):
        rates.rateOf.transact("eur", sender=admin)


def test_setRates__point__reverts(rates, admin):
    with reverts(rates.InvalidRate, currency="point"):
        rates.setRates(["point"], [2 * UNIT], sender=admin)
    assert rates.rateOf("point") == UNIT
