"""CurrencyRate: the rate table every conversion goes through (point fixed at 1, lower-case codes)."""

import ape
import pytest
from ape import project
from eth_utils import keccak

from tests.utils.checks import assert_event, logs_of, reverts
from tests.utils.constants import DEFAULT_RATES, UNIT

HOUR = 3_600


@ape.fixture(scope="module", autouse=True, chain_isolation=True)
def bare_rates(admin):
    """A rate table without any rate, not even the token's."""
    return admin.deploy(project.CurrencyRate, admin, 86_400, admin, "the9")


@pytest.fixture
def an_hour_later(chain):
    """Moves the clock past the rate update interval since the deployment's rates were set."""
    chain.pending_timestamp += HOUR


# ---------------------------------------------------------------- constructor and views


def test_constructor__grants_admin_and_rate_setter_roles(admin, other_user, stranger):
    rates = admin.deploy(project.CurrencyRate, admin, 86_400, other_user, "the9")
    assert rates.hasRole(rates.DEFAULT_ADMIN_ROLE(), admin)
    assert rates.defaultAdmin() == admin.address
    assert rates.defaultAdminDelay() == 86_400
    assert rates.hasRole(rates.RATE_SETTER_ROLE(), other_user)
    assert not rates.hasRole(rates.RATE_SETTER_ROLE(), admin)
    assert not rates.hasRole(rates.RATE_SETTER_ROLE(), stranger)
    assert rates.RATE_SETTER_ROLE() == keccak(text="RATE_SETTER_ROLE")


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


@pytest.mark.parametrize("currency", ["sgd", "aud"])
def test_toToken__only_the_token_currency_itself__is_identity(rates, admin, currency):
    # Codes are matched by their exact hash: "sgd" hashes above "the9", "aud" below.
    rates.setRates([currency], [1_000 * UNIT], sender=admin)
    assert rates.toToken(10 * UNIT, currency) == 100 * UNIT


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


def test_setRates__sets_each_rate_and_emits_RateSet(rates, admin, an_hour_later):
    receipt = rates.setRates(["eur", "usd"], [1_500 * UNIT, 1_400 * UNIT], sender=admin)
    assert rates.rateOf("eur") == 1_500 * UNIT
    assert rates.rateOf("usd") == 1_400 * UNIT
    logs = logs_of(receipt, rates.RateSet)
    assert [(log.currency, log.rate) for log in logs] == [("eur", 1_500 * UNIT), ("usd", 1_400 * UNIT)]
    assert [bytes(log.currencyHash) for log in logs] == [keccak(text="eur"), keccak(text="usd")]


def test_setRates__token_rate__changes_token_conversions(rates, admin, an_hour_later):
    receipt = rates.setRates(["the9"], [110 * UNIT], sender=admin)
    assert_event(receipt, rates.RateSet, currencyHash=keccak(text="the9"), currency="the9", rate=110 * UNIT)
    assert rates.pointToToken(1_000 * UNIT) == 1_000 * UNIT * UNIT // (110 * UNIT)
    assert rates.toToken(10 * UNIT, "usd") == 13_500 * UNIT * UNIT // (110 * UNIT)


def test_setRates__by_granted_rate_setter(rates, admin, stranger):
    rates.grantRole(rates.RATE_SETTER_ROLE(), stranger, sender=admin)
    rates.setRates(["eur"], [1_500 * UNIT], sender=stranger)
    assert rates.rateOf("eur") == 1_500 * UNIT


def test_setRates__not_rate_setter__reverts(rates, stranger):
    with reverts(rates.AccessControlUnauthorizedAccount, account=stranger, neededRole=rates.RATE_SETTER_ROLE()):
        rates.setRates(["eur"], [1_500 * UNIT], sender=stranger)


@pytest.mark.parametrize("counts", [(2, 1), (1, 2)], ids=["more currencies", "more rates"])
def test_setRates__length_mismatch__reverts(rates, admin, counts):
    currencies, values = ["eur", "gbp"][: counts[0]], [1_500 * UNIT, 1_600 * UNIT][: counts[1]]
    with reverts(rates.InvalidRate, currency=""):
        rates.setRates(currencies, values, sender=admin)


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


def test_setRates__above_192_bits__reverts(bare_rates, admin):
    with reverts(bare_rates.InvalidRate, currency="eur"):
        bare_rates.setRates(["eur"], [2**192], sender=admin)
    bare_rates.setRates(["eur"], [2**192 - 1], sender=admin)
    assert bare_rates.rateOf("eur") == 2**192 - 1


# ---------------------------------------------------------------- bounded updates


def test_setRates__first_rate_of_a_currency__is_free(bare_rates, admin, chain):
    bare_rates.setRates(["eur"], [1], sender=admin)
    assert bare_rates.rateOf("eur") == 1
    assert bare_rates.rateUpdatedAt("eur") == chain.blocks.head.timestamp
    assert bare_rates.rateUpdatedAt("gbp") == 0


@pytest.mark.parametrize("new_rate", [1_215 * UNIT, 1_485 * UNIT, 1_350 * UNIT])
def test_setRates__within_ten_percent_an_hour_later__sets(rates, admin, an_hour_later, new_rate):
    rates.setRates(["usd"], [new_rate], sender=admin)
    assert rates.rateOf("usd") == new_rate


@pytest.mark.parametrize("new_rate", [1_215 * UNIT - 1, 1_485 * UNIT + 1, 1, 10**40])
def test_setRates__more_than_ten_percent__reverts(rates, admin, an_hour_later, new_rate):
    with reverts(rates.RateChangeTooLarge, currency="usd", rate=1_350 * UNIT, newRate=new_rate):
        rates.setRates(["usd"], [new_rate], sender=admin)
    assert rates.rateOf("usd") == 1_350 * UNIT


def test_setRates__sooner_than_an_hour__reverts_then_accepted_at_the_hour(rates, admin, chain):
    updated = rates.rateUpdatedAt("usd")
    chain.pending_timestamp = updated + HOUR - 1
    with reverts(rates.RateUpdateTooSoon, currency="usd", nextUpdateAt=updated + HOUR):
        rates.setRates(["usd"], [1_400 * UNIT], sender=admin)
    chain.pending_timestamp = updated + HOUR
    rates.setRates(["usd"], [1_400 * UNIT], sender=admin)
    assert (rates.rateOf("usd"), rates.rateUpdatedAt("usd")) == (1_400 * UNIT, updated + HOUR)


def test_setRates__same_currency_twice_in_one_call__reverts(rates, admin, an_hour_later, chain):
    with reverts(rates.RateUpdateTooSoon, currency="usd", nextUpdateAt=chain.pending_timestamp + HOUR):
        rates.setRates(["usd", "usd"], [1_400 * UNIT, 1_450 * UNIT], sender=admin)


def test_setRates__hourly_updates__each_moves_at_most_ten_percent(rates, admin, chain):
    # The bound compounds: a stolen rate-setter key moves a rate by at most 1.1x per hour.
    rate = 1_350 * UNIT
    for _ in range(3):
        chain.pending_timestamp += HOUR
        rate = rate * 11 // 10
        rates.setRates(["usd"], [rate], sender=admin)
    assert rates.rateOf("usd") == rate
