"""Ledger: balances, escrow, fees, reserve; rewards, grants, the switch to tokens, deposits and withdrawals.

The escrow functions are unit-tested here by calling them as the payment controller (an impersonated
sender); test_payment.py and test_payment_flows.py drive them through real payments."""

import pytest
from ape import project

from scripts._system import deploy_system
from tests.utils.checks import assert_event, changes, ledger_tokens_balance, panics, reverts
from tests.utils.constants import DAY, POINT, TOKEN, UNIT, ZERO_ADDRESS
from tests.utils.signing import deadline, sign

RESERVE = 10_000_000 * UNIT  # funded by the `system` fixture
ZERO_ROLE = "0x" + "00" * 32


def drain_reserve(ledger, admin, leave=0):
    ledger.withdrawReserve(admin, ledger.reserve() - leave, sender=admin)


# ---------------------------------------------------------------- deployment and views


def test_constructor__wires_contracts_and_roles(ledger, token, rates, shops, payment, admin, relay):
    assert (ledger.token(), ledger.rates(), ledger.shops()) == (token.address, rates.address, shops.address)
    assert ledger.paymentController() == payment.address
    assert ledger.hasRole(ledger.DEFAULT_ADMIN_ROLE(), admin)
    assert ledger.hasRole(ledger.GRANTER_ROLE(), admin)
    assert ledger.hasRole(ledger.PROVIDER_ROLE(), relay)
    assert ledger.hasRole(ledger.RELAY_ROLE(), relay)
    assert not ledger.hasRole(ledger.GRANTER_ROLE(), relay)


def test_accountOf__unknown_account__is_point_account_with_nothing(ledger, stranger):
    assert ledger.accountOf(stranger) == (POINT, 0)


def test_system_accounts__hold_only_the_funded_reserve(ledger, token):
    assert [ledger.escrowOf(POINT), ledger.escrowOf(TOKEN), ledger.feesOf(POINT), ledger.feesOf(TOKEN)] == [0] * 4
    assert ledger.reserve() == RESERVE
    assert token.balanceOf(ledger) == RESERVE


# ---------------------------------------------------------------- escrow (payment controller only)


@pytest.mark.parametrize("loyalty_type", [POINT, TOKEN], ids=["point", "token"])
def test_holdInEscrow__moves_balance_into_escrow(ledger, as_controller, fund, user, state, loyalty_type):
    fund(user, loyalty_type, 100 * UNIT)
    before = state(user=user)
    ledger.holdInEscrow(user, loyalty_type, 30 * UNIT, sender=as_controller)
    escrow = "escrow.point" if loyalty_type == POINT else "escrow.token"
    assert changes(before, state(user=user)) == {"user": -30 * UNIT, escrow: 30 * UNIT}


def test_holdInEscrow__more_than_balance__reverts(ledger, as_controller, give_points, user):
    give_points(user, 10 * UNIT)
    with reverts(ledger.InsufficientBalance, account=user, balance=10 * UNIT, required=10 * UNIT + 1):
        ledger.holdInEscrow(user, POINT, 10 * UNIT + 1, sender=as_controller)


def test_releaseToShop__point__keeps_fee_and_redeems_paid(ledger, as_controller, give_points, user, state):
    give_points(user, 100 * UNIT)
    ledger.holdInEscrow(user, POINT, 21 * UNIT, sender=as_controller)
    before = state(user=user)
    ledger.releaseToShop(POINT, 20 * UNIT, UNIT, sender=as_controller)
    # Spent points leave circulation (the shop is paid through settlement); the fee stays.
    assert changes(before, state(user=user)) == {"escrow.point": -21 * UNIT, "fees.point": UNIT}


def test_releaseToShop__token__returns_paid_to_reserve(ledger, as_controller, fund, user, state, token):
    fund(user, TOKEN, 100 * UNIT)
    ledger.holdInEscrow(user, TOKEN, 21 * UNIT, sender=as_controller)
    before = state(user=user)
    ledger.releaseToShop(TOKEN, 20 * UNIT, UNIT, sender=as_controller)
    assert changes(before, state(user=user)) == {"escrow.token": -21 * UNIT, "fees.token": UNIT, "reserve": 20 * UNIT}
    ledger_tokens_balance(token, ledger, [user])


def test_releaseToShop__more_than_escrow__reverts(ledger, as_controller, give_points, user):
    give_points(user, 100 * UNIT)
    ledger.holdInEscrow(user, POINT, 21 * UNIT, sender=as_controller)
    with panics(0x11):
        ledger.releaseToShop(POINT, 21 * UNIT, 1, sender=as_controller)


@pytest.mark.parametrize("loyalty_type", [POINT, TOKEN], ids=["point", "token"])
def test_refundFromEscrow__returns_total_to_account(ledger, as_controller, fund, user, state, loyalty_type):
    fund(user, loyalty_type, 100 * UNIT)
    ledger.holdInEscrow(user, loyalty_type, 21 * UNIT, sender=as_controller)
    before = state(user=user)
    ledger.refundFromEscrow(user, loyalty_type, 21 * UNIT, sender=as_controller)
    escrow = "escrow.point" if loyalty_type == POINT else "escrow.token"
    assert changes(before, state(user=user)) == {"user": 21 * UNIT, escrow: -21 * UNIT}


def test_refundFromEscrow__point_escrow_to_switched_account__pays_tokens_from_reserve(
    ledger, as_controller, give_points, user, state, token
):
    give_points(user, 1_000 * UNIT)
    ledger.holdInEscrow(user, POINT, 210 * UNIT, sender=as_controller)
    ledger.switchToToken(0, sender=user)  # the remaining 790 points become 7.9 tokens
    before = state(user=user)
    ledger.refundFromEscrow(user, POINT, 210 * UNIT, sender=as_controller)
    assert changes(before, state(user=user)) == {
        "user": 21 * UNIT // 10,
        "escrow.point": -210 * UNIT,
        "reserve": -21 * UNIT // 10,
    }
    assert ledger.accountOf(user) == (TOKEN, 79 * UNIT // 10 + 21 * UNIT // 10)
    ledger_tokens_balance(token, ledger, [user])


def test_refundFromEscrow__to_switched_account_with_reserve_too_small__reverts(
    ledger, as_controller, give_points, user, admin
):
    give_points(user, 1_000 * UNIT)
    ledger.holdInEscrow(user, POINT, 210 * UNIT, sender=as_controller)
    ledger.switchToToken(0, sender=user)
    drain_reserve(ledger, admin, leave=UNIT)
    with reverts(ledger.InsufficientReserve, reserve=UNIT, required=21 * UNIT // 10):
        ledger.refundFromEscrow(user, POINT, 210 * UNIT, sender=as_controller)


@pytest.mark.parametrize("loyalty_type", [POINT, TOKEN], ids=["point", "token"])
def test_returnToEscrow__reverses_releaseToShop(ledger, as_controller, fund, user, state, loyalty_type):
    fund(user, loyalty_type, 100 * UNIT)
    ledger.holdInEscrow(user, loyalty_type, 21 * UNIT, sender=as_controller)
    before = state(user=user)
    ledger.releaseToShop(loyalty_type, 20 * UNIT, UNIT, sender=as_controller)
    ledger.returnToEscrow(loyalty_type, 20 * UNIT, UNIT, sender=as_controller)
    assert state(user=user) == before


def test_returnToEscrow__fees_already_withdrawn__reverts(ledger, as_controller, fund, user, admin):
    fund(user, TOKEN, 100 * UNIT)
    ledger.holdInEscrow(user, TOKEN, 21 * UNIT, sender=as_controller)
    ledger.releaseToShop(TOKEN, 20 * UNIT, UNIT, sender=as_controller)
    ledger.withdrawFees(admin, UNIT // 2, sender=admin)
    with reverts(ledger.InsufficientFees, fees=UNIT // 2, required=UNIT):
        ledger.returnToEscrow(TOKEN, 20 * UNIT, UNIT, sender=as_controller)


def test_returnToEscrow__token_reserve_too_small__reverts(ledger, as_controller, fund, user, admin):
    fund(user, TOKEN, 100 * UNIT)
    ledger.holdInEscrow(user, TOKEN, 21 * UNIT, sender=as_controller)
    ledger.releaseToShop(TOKEN, 20 * UNIT, UNIT, sender=as_controller)
    drain_reserve(ledger, admin, leave=5 * UNIT)
    with reverts(ledger.InsufficientReserve, reserve=5 * UNIT, required=20 * UNIT):
        ledger.returnToEscrow(TOKEN, 20 * UNIT, UNIT, sender=as_controller)


@pytest.mark.parametrize("function", ["holdInEscrow", "releaseToShop", "refundFromEscrow", "returnToEscrow"])
@pytest.mark.parametrize("caller_name", ["admin", "relay", "user"])
def test_escrow_function__not_payment_controller__reverts(ledger, give_points, user, function, caller_name, request):
    caller = request.getfixturevalue(caller_name)
    give_points(user, 10 * UNIT)
    args = {
        "holdInEscrow": (user, POINT, UNIT),
        "releaseToShop": (POINT, UNIT, 0),
        "refundFromEscrow": (user, POINT, UNIT),
        "returnToEscrow": (POINT, UNIT, 0),
    }[function]
    with reverts(ledger.UnauthorizedCaller, caller=caller):
        getattr(ledger, function)(*args, sender=caller)


# ---------------------------------------------------------------- provide


def test_provide__point_account__credits_reward_and_grows_shop_provided(ledger, shops, relay, user, shop_id, state):
    before = state(user=user, shop=shop_id)
    receipt = ledger.provide(user, shop_id, "R000001", 1_000 * UNIT, "krw", sender=relay)
    # Reward = purchase in points x providePercent (100 = 1 %) / 10000.
    assert changes(before, state(user=user, shop=shop_id)) == {
        "user": 10 * UNIT,
        "shop.providedPoint": 10 * UNIT,
    }
    assert_event(
        receipt,
        ledger.LoyaltyProvided,
        account=user,
        shopId=shop_id,
        purchaseId="R000001",
        loyaltyType=POINT,
        amount=10 * UNIT,
        rewardPoint=10 * UNIT,
    )
    assert_event(receipt, shops.ProvisionRecorded, shopId=shop_id, rewardPoint=10 * UNIT, providedPoint=10 * UNIT)


def test_provide__rewards_accumulate_in_shop_total(ledger, shops, relay, user, other_user, shop_id):
    ledger.provide(user, shop_id, "R1", 1_000 * UNIT, "krw", sender=relay)
    receipt = ledger.provide(other_user, shop_id, "R2", 2 * UNIT, "usd", sender=relay)
    # 2 USD = 2,700 points; 1 % of it is 27 points.
    assert ledger.accountOf(other_user) == (POINT, 27 * UNIT)
    assert shops.shopOf(shop_id).providedPoint == 37 * UNIT
    assert_event(receipt, shops.ProvisionRecorded, shopId=shop_id, rewardPoint=27 * UNIT, providedPoint=37 * UNIT)


def test_provide__shop_percent__sets_reward(ledger, relay, user, create_shop):
    shop = create_shop(percent=2_550)
    ledger.provide(user, shop, "R1", 1_000 * UNIT, "krw", sender=relay)
    assert ledger.accountOf(user) == (POINT, 255 * UNIT)


def test_provide__token_account__credits_tokens_from_reserve(
    ledger, relay, user, shop_id, state, make_token_user, token
):
    make_token_user(user)
    before = state(user=user, shop=shop_id)
    receipt = ledger.provide(user, shop_id, "R000001", 1_000 * UNIT, "krw", sender=relay)
    # 10 points of reward at 100 points per THE9.
    assert changes(before, state(user=user, shop=shop_id)) == {
        "user": UNIT // 10,
        "reserve": -UNIT // 10,
        "shop.providedPoint": 10 * UNIT,
    }
    assert_event(
        receipt,
        ledger.LoyaltyProvided,
        account=user,
        shopId=shop_id,
        purchaseId="R000001",
        loyaltyType=TOKEN,
        amount=UNIT // 10,
        rewardPoint=10 * UNIT,
    )
    ledger_tokens_balance(token, ledger, [user])


def test_provide__token_account_with_reserve_too_small__reverts(ledger, relay, user, shop_id, make_token_user, admin):
    make_token_user(user)
    drain_reserve(ledger, admin, leave=UNIT // 20)
    with reverts(ledger.InsufficientReserve, reserve=UNIT // 20, required=UNIT // 10):
        ledger.provide(user, shop_id, "R1", 1_000 * UNIT, "krw", sender=relay)


def test_provide__zero_account__reverts(ledger, relay, shop_id):
    with reverts(ledger.InvalidAmount, amount=0):
        ledger.provide(ZERO_ADDRESS, shop_id, "R1", 1_000 * UNIT, "krw", sender=relay)


def test_provide__reward_rounds_to_zero__reverts(ledger, relay, user, shop_id):
    with reverts(ledger.InvalidAmount, amount=99):
        ledger.provide(user, shop_id, "R1", 99, "krw", sender=relay)


def test_provide__shop_without_rewards__reverts(ledger, relay, user, create_shop):
    shop = create_shop(percent=0)
    with reverts(ledger.InvalidAmount, amount=1_000 * UNIT):
        ledger.provide(user, shop, "R1", 1_000 * UNIT, "krw", sender=relay)


def test_provide__unknown_shop__reverts(ledger, shops, relay, user):
    shop = "0x" + "ab" * 32
    with reverts(shops.UnknownShop, shopId=shop):
        ledger.provide(user, shop, "R1", 1_000 * UNIT, "krw", sender=relay)


def test_provide__unknown_currency__reverts(ledger, rates, relay, user, shop_id):
    with reverts(rates.UnknownCurrency, currency="eur"):
        ledger.provide(user, shop_id, "R1", 1_000 * UNIT, "eur", sender=relay)


def test_provide__not_provider__reverts(ledger, user, shop_id):
    with reverts(ledger.AccessControlUnauthorizedAccount, account=user, neededRole=ledger.PROVIDER_ROLE()):
        ledger.provide(user, shop_id, "R1", 1_000 * UNIT, "krw", sender=user)


def test_provide__beyond_the_shops_credit_limit__reverts(ledger, shops, relay, user, create_shop, admin):
    # A 25 % shop with a 100-point credit limit: a 400-point purchase earns exactly the limit.
    shop = create_shop(percent=2_500)
    shops.setCreditLimit(shop, 100 * UNIT, sender=admin)
    ledger.provide(user, shop, "R1", 400 * UNIT, "krw", sender=relay)
    with reverts(shops.CreditLimitExceeded, shopId=shop, debt=100 * UNIT + 1, creditLimit=100 * UNIT):
        ledger.provide(user, shop, "R2", 4, "krw", sender=relay)
    assert ledger.accountOf(user) == (POINT, 100 * UNIT)


# ---------------------------------------------------------------- reward and grant caps


@pytest.mark.parametrize("kind", ["reward", "grant"])
def test_cap__exactly_the_limit_in_a_day__allowed_then_one_more__reverts(
    ledger, relay, admin, user, shop_id, kind, chain
):
    chain.pending_timestamp = (chain.pending_timestamp // DAY + 1) * DAY  # start of a UTC day
    if kind == "reward":
        ledger.setRewardCap(10 * UNIT, sender=admin)
        ledger.provide(user, shop_id, "R1", 600 * UNIT, "krw", sender=relay)  # 6 points
        assert ledger.rewardCap() == (10 * UNIT, 4 * UNIT)
        ledger.provide(user, shop_id, "R2", 400 * UNIT, "krw", sender=relay)  # 4 more: the limit
        with reverts(ledger.RewardCapExceeded, rewardPoint=UNIT // 100, remaining=0):
            ledger.provide(user, shop_id, "R3", UNIT, "krw", sender=relay)
    else:
        ledger.setGrantCap(10 * UNIT, sender=admin)
        ledger.grant(user, 6 * UNIT, sender=admin)
        assert ledger.grantCap() == (10 * UNIT, 4 * UNIT)
        ledger.grant(user, 4 * UNIT, sender=admin)
        with reverts(ledger.GrantCapExceeded, point=1, remaining=0):
            ledger.grant(user, 1, sender=admin)
    assert ledger.accountOf(user) == (POINT, 10 * UNIT)


@pytest.mark.parametrize("kind", ["reward", "grant"])
def test_cap__next_day__starts_unused(ledger, relay, admin, user, shop_id, kind, chain):
    day = chain.pending_timestamp // DAY + 1
    chain.pending_timestamp = day * DAY + DAY - 2  # the last seconds of a day
    cap = ledger.rewardCap if kind == "reward" else ledger.grantCap
    (ledger.setRewardCap if kind == "reward" else ledger.setGrantCap)(5 * UNIT, sender=admin)
    if kind == "reward":
        ledger.provide(user, shop_id, "R1", 500 * UNIT, "krw", sender=relay)
    else:
        ledger.grant(user, 5 * UNIT, sender=admin)
    assert cap() == (5 * UNIT, 0)
    chain.pending_timestamp = (day + 1) * DAY
    chain.mine()
    assert cap() == (5 * UNIT, 5 * UNIT)
    if kind == "reward":
        ledger.provide(user, shop_id, "R2", 500 * UNIT, "krw", sender=relay)
    else:
        ledger.grant(user, 5 * UNIT, sender=admin)
    assert ledger.accountOf(user) == (POINT, 10 * UNIT)


def test_cap__lowered_below_this_days_use__allows_nothing_more(ledger, admin, user):
    ledger.setGrantCap(10 * UNIT, sender=admin)
    ledger.grant(user, 8 * UNIT, sender=admin)
    ledger.setGrantCap(5 * UNIT, sender=admin)
    assert ledger.grantCap() == (5 * UNIT, 0)
    with reverts(ledger.GrantCapExceeded, point=1, remaining=0):
        ledger.grant(user, 1, sender=admin)


@pytest.mark.parametrize("kind", ["reward", "grant"])
def test_setCap__sets_and_emits(ledger, admin, kind):
    setter, event, view = {
        "reward": (ledger.setRewardCap, ledger.RewardCapSet, ledger.rewardCap),
        "grant": (ledger.setGrantCap, ledger.GrantCapSet, ledger.grantCap),
    }[kind]
    receipt = setter(2**96 - 1, sender=admin)
    assert_event(receipt, event, limit=2**96 - 1)
    assert view()[0] == 2**96 - 1
    with reverts(ledger.InvalidCap, limit=2**96):
        setter(2**96, sender=admin)


@pytest.mark.parametrize("setter", ["setRewardCap", "setGrantCap"])
def test_setCap__not_admin__reverts(ledger, relay, setter):
    with reverts(ledger.AccessControlUnauthorizedAccount, account=relay, neededRole=ZERO_ROLE):
        getattr(ledger, setter)(1, sender=relay)


# ---------------------------------------------------------------- grant


def test_grant__point_account__credits_points(ledger, admin, user, state):
    before = state(user=user)
    receipt = ledger.grant(user, 25 * UNIT, sender=admin)
    assert changes(before, state(user=user)) == {"user": 25 * UNIT}
    assert_event(receipt, ledger.LoyaltyGranted, account=user, loyaltyType=POINT, amount=25 * UNIT, point=25 * UNIT)


def test_grant__token_account__credits_tokens_from_reserve(ledger, admin, user, state, make_token_user):
    make_token_user(user)
    before = state(user=user)
    receipt = ledger.grant(user, 250 * UNIT, sender=admin)
    assert changes(before, state(user=user)) == {"user": 25 * UNIT // 10, "reserve": -25 * UNIT // 10}
    assert_event(
        receipt, ledger.LoyaltyGranted, account=user, loyaltyType=TOKEN, amount=25 * UNIT // 10, point=250 * UNIT
    )


def test_grant__token_account_with_reserve_too_small__reverts(ledger, user, make_token_user, admin):
    make_token_user(user)
    drain_reserve(ledger, admin)
    with reverts(ledger.InsufficientReserve, reserve=0, required=25 * UNIT // 10):
        ledger.grant(user, 250 * UNIT, sender=admin)


def test_grant__zero_points__reverts(ledger, admin, user):
    with reverts(ledger.InvalidAmount, amount=0):
        ledger.grant(user, 0, sender=admin)


def test_grant__zero_address__reverts(ledger, admin):
    with reverts(ledger.InvalidAmount, amount=5 * UNIT):
        ledger.grant(ZERO_ADDRESS, 5 * UNIT, sender=admin)


def test_grant__not_granter__reverts(ledger, relay, user):
    # Not the relay: rewards (provider) and grants (granter) are separate roles.
    with reverts(ledger.AccessControlUnauthorizedAccount, account=relay, neededRole=ledger.GRANTER_ROLE()):
        ledger.grant(user, UNIT, sender=relay)


# ---------------------------------------------------------------- switch to tokens


def test_switchToToken__converts_points_at_the_token_rate(ledger, give_points, user, state, token):
    give_points(user, 1_000 * UNIT)
    before = state(user=user)
    receipt = ledger.switchToToken(0, sender=user)
    assert changes(before, state(user=user)) == {
        "user": 10 * UNIT - 1_000 * UNIT,
        "user.type": TOKEN,
        "reserve": -10 * UNIT,
    }
    assert ledger.accountOf(user) == (TOKEN, 10 * UNIT)
    assert_event(receipt, ledger.SwitchedToToken, account=user, point=1_000 * UNIT, token=10 * UNIT)
    ledger_tokens_balance(token, ledger, [user])


def test_switchToToken__rounds_down(ledger, give_points, user):
    give_points(user, 199)
    ledger.switchToToken(0, sender=user)
    assert ledger.accountOf(user) == (TOKEN, 1)


def test_switchToToken__without_points__switches(ledger, user):
    receipt = ledger.switchToToken(0, sender=user)
    assert ledger.accountOf(user) == (TOKEN, 0)
    assert_event(receipt, ledger.SwitchedToToken, account=user, point=0, token=0)


def test_switchToToken__without_points__switches_before_the_token_has_a_rate(admin, relay, user):
    # An empty account converts nothing: its switch must not depend on the token's rate being set.
    system = deploy_system(admin, [relay], rates={"krw": 1})
    with reverts(system.rates.UnknownCurrency, currency="the9"):
        system.rates.pointToToken.transact(UNIT, sender=user)
    system.ledger.switchToToken(0, sender=user)
    assert system.ledger.accountOf(user) == (TOKEN, 0)


def test_switchToToken__twice__reverts(ledger, user):
    ledger.switchToToken(0, sender=user)
    with reverts(ledger.WrongLoyaltyType, account=user, loyaltyType=TOKEN):
        ledger.switchToToken(0, sender=user)


@pytest.mark.parametrize("min_token", [10 * UNIT, 10 * UNIT + 1])
def test_switchToToken__minimum__switches_at_it_and_reverts_above(ledger, give_points, user, min_token):
    give_points(user, 1_000 * UNIT)  # 10 THE9 at the deployed rate
    if min_token > 10 * UNIT:
        with reverts(ledger.SwitchBelowMinimum, account=user, token=10 * UNIT, minToken=min_token):
            ledger.switchToToken(min_token, sender=user)
        assert ledger.accountOf(user) == (POINT, 1_000 * UNIT)
    else:
        ledger.switchToToken(min_token, sender=user)
        assert ledger.accountOf(user) == (TOKEN, 10 * UNIT)


def test_switchToToken__reserve_too_small__reverts(ledger, give_points, user, admin):
    give_points(user, 1_000 * UNIT)
    drain_reserve(ledger, admin, leave=9 * UNIT)
    with reverts(ledger.InsufficientReserve, reserve=9 * UNIT, required=10 * UNIT):
        ledger.switchToToken(0, sender=user)
    assert ledger.accountOf(user) == (POINT, 1_000 * UNIT)


def sign_switch(ledger, signer, account, **overrides):
    fields = dict(account=account.address, minToken=0, nonce=ledger.nonces(account), deadline=deadline())
    fields.update(overrides)
    return fields["deadline"], sign(signer, ledger, "SwitchToToken", **fields)


def test_switchToTokenFor__with_user_signature__switches(ledger, relay, give_points, user):
    give_points(user, 500 * UNIT)
    dl, sig = sign_switch(ledger, user, user, minToken=5 * UNIT)
    receipt = ledger.switchToTokenFor(user, 5 * UNIT, dl, sig, sender=relay)
    assert ledger.accountOf(user) == (TOKEN, 5 * UNIT)
    assert ledger.nonces(user) == 1
    assert_event(receipt, ledger.SwitchedToToken, account=user, point=500 * UNIT, token=5 * UNIT)


def test_switchToTokenFor__already_switched__reverts(ledger, relay, user):
    ledger.switchToToken(0, sender=user)
    dl, sig = sign_switch(ledger, user, user)
    with reverts(ledger.WrongLoyaltyType, account=user, loyaltyType=TOKEN):
        ledger.switchToTokenFor(user, 0, dl, sig, sender=relay)


def test_switchToTokenFor__rate_moved_below_the_signed_minimum__reverts(
    ledger, rates, relay, admin, give_points, user, chain
):
    # The user signed for at least 10 THE9; the token rate rises 10 % before the relay submits.
    give_points(user, 1_000 * UNIT)
    dl, sig = sign_switch(ledger, user, user, minToken=10 * UNIT)
    chain.pending_timestamp += 3_600
    rates.setRates(["the9"], [110 * UNIT], sender=admin)
    now = 1_000 * UNIT * UNIT // (110 * UNIT)
    with reverts(ledger.SwitchBelowMinimum, account=user, token=now, minToken=10 * UNIT):
        ledger.switchToTokenFor(user, 10 * UNIT, dl, sig, sender=relay)
    assert ledger.nonces(user) == 0


def test_switchToTokenFor__not_relay__reverts(ledger, user, stranger):
    dl, sig = sign_switch(ledger, user, user)
    with reverts(ledger.AccessControlUnauthorizedAccount, account=stranger, neededRole=ledger.RELAY_ROLE()):
        ledger.switchToTokenFor(user, 0, dl, sig, sender=stranger)


# ---------------------------------------------------------------- deposit and withdraw


def test_deposit__credits_token_account(ledger, token, user, admin, state, make_token_user):
    make_token_user(user)
    before = state(user=user, admin=admin)
    receipt = ledger.deposit(user, 40 * UNIT, sender=admin)
    assert changes(before, state(user=user, admin=admin)) == {
        "user": 40 * UNIT,
        "admin.wallet": -40 * UNIT,
        "ledger.tokens": 40 * UNIT,
    }
    assert_event(receipt, ledger.Deposited, account=user, **{"from": admin}, amount=40 * UNIT)
    ledger_tokens_balance(token, ledger, [user])


def test_deposit__by_the_account_itself(ledger, token, user, admin, make_token_user):
    make_token_user(user)
    token.transfer(user, 10 * UNIT, sender=admin)
    token.approve(ledger, 10 * UNIT, sender=user)
    ledger.deposit(user, 10 * UNIT, sender=user)
    assert ledger.accountOf(user) == (TOKEN, 10 * UNIT)
    assert token.balanceOf(user) == 0


def test_deposit__point_account__reverts(ledger, user, admin):
    with reverts(ledger.WrongLoyaltyType, account=user, loyaltyType=POINT):
        ledger.deposit(user, UNIT, sender=admin)


def test_deposit__zero__reverts(ledger, user, admin, make_token_user):
    make_token_user(user)
    with reverts(ledger.InvalidAmount, amount=0):
        ledger.deposit(user, 0, sender=admin)


def test_deposit__without_allowance__reverts(ledger, token, user, stranger, admin, make_token_user):
    make_token_user(user)
    token.transfer(stranger, 10 * UNIT, sender=admin)
    with reverts(token.ERC20InsufficientAllowance, spender=ledger, allowance=0, needed=10 * UNIT):
        ledger.deposit(user, 10 * UNIT, sender=stranger)


def test_deposit__more_than_wallet__reverts(ledger, token, user, stranger, make_token_user):
    make_token_user(user)
    token.approve(ledger, 10 * UNIT, sender=stranger)
    with reverts(token.ERC20InsufficientBalance, sender=stranger, balance=0, needed=10 * UNIT):
        ledger.deposit(user, 10 * UNIT, sender=stranger)


def test_withdraw__sends_tokens_to_wallet(ledger, token, user, state, make_token_user):
    make_token_user(user, tokens=50 * UNIT)
    before = state(user=user)
    receipt = ledger.withdraw(20 * UNIT, sender=user)
    assert changes(before, state(user=user)) == {
        "user": -20 * UNIT,
        "user.wallet": 20 * UNIT,
        "ledger.tokens": -20 * UNIT,
    }
    assert_event(receipt, ledger.Withdrawn, account=user, amount=20 * UNIT)
    ledger_tokens_balance(token, ledger, [user])


def test_withdraw__more_than_balance__reverts(ledger, user, make_token_user):
    make_token_user(user, tokens=50 * UNIT)
    with reverts(ledger.InsufficientBalance, account=user, balance=50 * UNIT, required=50 * UNIT + 1):
        ledger.withdraw(50 * UNIT + 1, sender=user)


def test_withdraw__point_account__reverts(ledger, give_points, user):
    give_points(user, 50 * UNIT)
    with reverts(ledger.WrongLoyaltyType, account=user, loyaltyType=POINT):
        ledger.withdraw(UNIT, sender=user)


def test_withdraw__zero__reverts(ledger, user, make_token_user):
    make_token_user(user, tokens=50 * UNIT)
    with reverts(ledger.InvalidAmount, amount=0):
        ledger.withdraw(0, sender=user)


# ---------------------------------------------------------------- a contract as the caller


@pytest.fixture
def wallet(admin, user):
    """A contract wallet that makes calls for `user`: the ledger must act on the contract, not on the
    EOA behind it (`tx.origin`)."""
    return admin.deploy(project.MockERC1271Wallet, user)


def test_contract_wallet__switches_deposits_and_withdraws_its_own_account(ledger, token, admin, user, wallet, state):
    token.transfer(wallet, 50 * UNIT, sender=admin)
    wallet.execute(token, token.approve.encode_input(ledger, 50 * UNIT), sender=user)
    wallet.execute(ledger, ledger.switchToToken.encode_input(0), sender=user)
    before = state(user=user, wallet=wallet)
    receipt = wallet.execute(ledger, ledger.deposit.encode_input(wallet, 50 * UNIT), sender=user)
    assert_event(receipt, ledger.Deposited, account=wallet, **{"from": wallet}, amount=50 * UNIT)
    receipt = wallet.execute(ledger, ledger.withdraw.encode_input(20 * UNIT), sender=user)
    assert_event(receipt, ledger.Withdrawn, account=wallet, amount=20 * UNIT)
    assert changes(before, state(user=user, wallet=wallet)) == {
        "wallet": 30 * UNIT,
        "wallet.wallet": -30 * UNIT,
        "ledger.tokens": 30 * UNIT,
    }
    assert ledger.accountOf(user) == (POINT, 0)


def test_contract_wallet__withdraw_errors_name_the_wallet(ledger, user, wallet):
    withdraw = ledger.withdraw.encode_input(UNIT)
    with reverts(ledger.WrongLoyaltyType, account=wallet, loyaltyType=POINT):
        wallet.execute(ledger, withdraw, sender=user)
    wallet.execute(ledger, ledger.switchToToken.encode_input(0), sender=user)
    with reverts(ledger.InsufficientBalance, account=wallet, balance=0, required=UNIT):
        wallet.execute(ledger, withdraw, sender=user)


def test_contract_wallet__funds_the_reserve_from_its_own_tokens(ledger, token, admin, user, wallet, state):
    token.transfer(wallet, 30 * UNIT, sender=admin)
    wallet.execute(token, token.approve.encode_input(ledger, 30 * UNIT), sender=user)
    before = state(user=user, wallet=wallet)
    receipt = wallet.execute(ledger, ledger.fundReserve.encode_input(30 * UNIT), sender=user)
    assert_event(receipt, ledger.ReserveFunded, **{"from": wallet}, amount=30 * UNIT)
    assert changes(before, state(user=user, wallet=wallet)) == {
        "reserve": 30 * UNIT,
        "wallet.wallet": -30 * UNIT,
        "ledger.tokens": 30 * UNIT,
    }


def test_escrow_function__called_by_a_contract__names_the_contract(ledger, give_points, user, wallet):
    give_points(user, 10 * UNIT)
    with reverts(ledger.UnauthorizedCaller, caller=wallet):
        wallet.execute(ledger, ledger.holdInEscrow.encode_input(user, POINT, UNIT), sender=user)


# ---------------------------------------------------------------- reserve and fees


def test_fundReserve__adds_callers_tokens(ledger, token, stranger, admin, state):
    token.transfer(stranger, 30 * UNIT, sender=admin)
    token.approve(ledger, 30 * UNIT, sender=stranger)
    before = state(stranger=stranger)
    receipt = ledger.fundReserve(30 * UNIT, sender=stranger)
    assert changes(before, state(stranger=stranger)) == {
        "reserve": 30 * UNIT,
        "stranger.wallet": -30 * UNIT,
        "ledger.tokens": 30 * UNIT,
    }
    assert_event(receipt, ledger.ReserveFunded, **{"from": stranger}, amount=30 * UNIT)


def test_fundReserve__zero__reverts(ledger, admin):
    with reverts(ledger.InvalidAmount, amount=0):
        ledger.fundReserve(0, sender=admin)


def test_fundReserve__without_allowance__reverts(ledger, token, stranger, admin):
    token.transfer(stranger, 30 * UNIT, sender=admin)
    with reverts(token.ERC20InsufficientAllowance, spender=ledger, allowance=0, needed=30 * UNIT):
        ledger.fundReserve(30 * UNIT, sender=stranger)


def test_withdrawReserve__sends_reserve_tokens(ledger, admin, other_user, state):
    before = state(other_user=other_user)
    receipt = ledger.withdrawReserve(other_user, 1_000 * UNIT, sender=admin)
    assert changes(before, state(other_user=other_user)) == {
        "reserve": -1_000 * UNIT,
        "other_user.wallet": 1_000 * UNIT,
        "ledger.tokens": -1_000 * UNIT,
    }
    assert_event(receipt, ledger.ReserveWithdrawn, to=other_user, amount=1_000 * UNIT)


def test_withdrawReserve__more_than_reserve__reverts(ledger, admin):
    with reverts(ledger.InsufficientReserve, reserve=RESERVE, required=RESERVE + 1):
        ledger.withdrawReserve(admin, RESERVE + 1, sender=admin)


def test_withdrawReserve__zero_amount__reverts(ledger, admin):
    with reverts(ledger.InvalidAmount, amount=0):
        ledger.withdrawReserve(admin, 0, sender=admin)


def test_withdrawReserve__zero_address__reverts(ledger, admin):
    with reverts(ledger.InvalidAmount, amount=UNIT):
        ledger.withdrawReserve(ZERO_ADDRESS, UNIT, sender=admin)


def test_withdrawReserve__not_admin__reverts(ledger, relay):
    with reverts(ledger.AccessControlUnauthorizedAccount, account=relay, neededRole=ledger.DEFAULT_ADMIN_ROLE()):
        ledger.withdrawReserve(relay, UNIT, sender=relay)


@pytest.fixture
def token_fees(ledger, relay, user, payment, make_token_user, open_payment):
    """A token payment of 1,000 KRW (10 THE9, fee 0.5 THE9) completed: 0.5 THE9 in the fee account."""
    make_token_user(user, tokens=100 * UNIT)
    payment.closeNewPayment(open_payment(user, amount=1_000 * UNIT), True, sender=relay)
    assert ledger.feesOf(TOKEN) == UNIT // 2
    return UNIT // 2


def test_withdrawFees__sends_token_fees(ledger, token, admin, other_user, state, token_fees, user):
    before = state(other_user=other_user)
    receipt = ledger.withdrawFees(other_user, token_fees, sender=admin)
    assert changes(before, state(other_user=other_user)) == {
        "fees.token": -token_fees,
        "other_user.wallet": token_fees,
        "ledger.tokens": -token_fees,
    }
    assert_event(receipt, ledger.FeesWithdrawn, to=other_user, amount=token_fees)
    ledger_tokens_balance(token, ledger, [user])


def test_withdrawFees__part_of_large_fees__leaves_the_rest(
    ledger, relay, admin, user, payment, make_token_user, open_payment
):
    """Token fees are kept whole beyond 2^64 wei (18.4 THE9): 50 THE9 of fees, 1 wei taken."""
    make_token_user(user, tokens=2_000 * UNIT)
    payment.closeNewPayment(open_payment(user, amount=100_000 * UNIT), True, sender=relay)
    fees = ledger.feesOf(TOKEN)
    assert fees == 50 * UNIT
    ledger.withdrawFees(admin, 1, sender=admin)
    assert ledger.feesOf(TOKEN) == fees - 1


def test_withdrawFees__more_than_fees__reverts(ledger, admin, token_fees):
    with reverts(ledger.InsufficientFees, fees=token_fees, required=token_fees + 1):
        ledger.withdrawFees(admin, token_fees + 1, sender=admin)


def test_withdrawFees__zero_amount__reverts(ledger, admin, token_fees):
    with reverts(ledger.InvalidAmount, amount=0):
        ledger.withdrawFees(admin, 0, sender=admin)


def test_withdrawFees__zero_address__reverts(ledger, admin, token_fees):
    with reverts(ledger.InvalidAmount, amount=token_fees):
        ledger.withdrawFees(ZERO_ADDRESS, token_fees, sender=admin)


def test_withdrawFees__not_admin__reverts(ledger, relay, token_fees):
    with reverts(ledger.AccessControlUnauthorizedAccount, account=relay, neededRole=ledger.DEFAULT_ADMIN_ROLE()):
        ledger.withdrawFees(relay, token_fees, sender=relay)


def test_withdrawFees__point_fees_stay(ledger, admin, relay, payment, give_points, user, open_payment):
    # Point fees are ledger entries, not tokens: withdrawFees only moves token fees.
    give_points(user, 100 * UNIT)
    payment.closeNewPayment(open_payment(user), True, sender=relay)
    assert ledger.feesOf(POINT) == UNIT // 2
    with reverts(ledger.InsufficientFees, fees=0, required=1):
        ledger.withdrawFees(admin, 1, sender=admin)
