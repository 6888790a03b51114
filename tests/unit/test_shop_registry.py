"""ShopRegistry: shops, their settings and totals; who may move the totals. Withdrawals: test_withdrawals.py."""

import secrets

import pytest
from ape import project

from tests.utils.checks import assert_event, panics, reverts
from tests.utils.constants import UNIT, ZERO_ADDRESS, ZERO_BYTES32
from tests.utils.signing import deadline, sign, sign_next


def new_id():
    return "0x" + secrets.token_hex(32)


def sign_add(owner, shops, shop_id, name="Shop", wait=0, percent=100, **overrides):
    fields = dict(
        shopId=shop_id,
        name=name,
        provideWaitTime=wait,
        providePercent=percent,
        account=owner.address,
        nonce=shops.nonces(owner),
        deadline=deadline(),
    )
    fields.update(overrides)
    return fields["deadline"], sign(owner, shops, "AddShop", **fields)


def sign_update(owner, shops, shop_id, name, wait, percent):
    dl = deadline()
    fields = dict(shopId=shop_id, name=name, provideWaitTime=wait, providePercent=percent)
    return dl, sign_next(owner, shops, "UpdateShop", dl, **fields)


# ---------------------------------------------------------------- deployment


def test_constructor__fixes_ledger_and_payment_controller(shops, ledger, payment, admin, relay):
    assert shops.ledger() == ledger.address
    assert shops.paymentController() == payment.address
    assert shops.hasRole(shops.DEFAULT_ADMIN_ROLE(), admin)
    assert shops.hasRole(shops.RELAY_ROLE(), relay)
    assert shops.PERCENT_DENOMINATOR() == 10_000
    assert shops.CREDIT_UNIT() == UNIT


# ---------------------------------------------------------------- addShop


def test_addShop__registers_shop(shops, relay, shop_owner):
    count = shops.shopCount()
    nonce = shops.nonces(shop_owner)
    shop = new_id()
    dl, sig = sign_add(shop_owner, shops, shop, name="Cafe", wait=3600, percent=250)

    receipt = shops.addShop(shop, "Cafe", 3600, 250, shop_owner, dl, sig, sender=relay)

    assert shops.shopCount() == count + 1
    assert shops.indexOf(shop) == count
    assert shops.shopAt(count) == (bytes.fromhex(shop[2:]), shop_owner.address)
    assert shops.nonces(shop_owner) == nonce + 1
    info = shops.shopOf(shop)
    assert (info.shopId, info.name, info.provideWaitTime, info.providePercent, info.account) == (
        bytes.fromhex(shop[2:]),
        "Cafe",
        3600,
        250,
        shop_owner.address,
    )
    assert (info.providedPoint, info.usedPoint, info.settledPoint, info.withdrawnPoint) == (0, 0, 0, 0)
    assert (info.withdrawAmount, info.withdrawOpen) == (0, False)
    assert_event(
        receipt,
        shops.ShopAdded,
        shopId=shop,
        account=shop_owner,
        name="Cafe",
        provideWaitTime=3600,
        providePercent=250,
    )


def test_addShop__owner_need_not_be_the_relay_or_an_existing_owner(shops, relay, other_user):
    shop = new_id()
    dl, sig = sign_add(other_user, shops, shop)
    shops.addShop(shop, "Shop", 0, 100, other_user, dl, sig, sender=relay)
    assert shops.shopOf(shop).account == other_user.address


def test_addShop__percent_at_maximum__accepted(shops, relay, shop_owner):
    shop = new_id()
    dl, sig = sign_add(shop_owner, shops, shop, percent=10_000)
    shops.addShop(shop, "Shop", 0, 10_000, shop_owner, dl, sig, sender=relay)
    assert shops.shopOf(shop).providePercent == 10_000


def test_addShop__percent_over_maximum__reverts(shops, relay, shop_owner):
    shop = new_id()
    dl, sig = sign_add(shop_owner, shops, shop, percent=10_001)
    with reverts(shops.InvalidShopSettings, providePercent=10_001):
        shops.addShop(shop, "Shop", 0, 10_001, shop_owner, dl, sig, sender=relay)


def test_addShop__existing_id__reverts(shops, relay, shop_owner, shop_id):
    dl, sig = sign_add(shop_owner, shops, shop_id)
    with reverts(shops.ShopAlreadyExists, shopId=shop_id):
        shops.addShop(shop_id, "Shop", 0, 100, shop_owner, dl, sig, sender=relay)


def test_addShop__zero_id__reverts(shops, relay, shop_owner):
    dl, sig = sign_add(shop_owner, shops, ZERO_BYTES32)
    with reverts(shops.ShopAlreadyExists, shopId=ZERO_BYTES32):
        shops.addShop(ZERO_BYTES32, "Shop", 0, 100, shop_owner, dl, sig, sender=relay)


def test_addShop__not_relay__reverts(shops, shop_owner):
    shop = new_id()
    dl, sig = sign_add(shop_owner, shops, shop)
    with reverts(shops.AccessControlUnauthorizedAccount, account=shop_owner, neededRole=shops.RELAY_ROLE()):
        shops.addShop(shop, "Shop", 0, 100, shop_owner, dl, sig, sender=shop_owner)


def test_addShop__signed_by_another_account__reverts(shops, relay, shop_owner, stranger):
    # The relay cannot register a shop in someone's name: the named owner must sign.
    shop = new_id()
    dl, sig = sign_add(stranger, shops, shop, account=shop_owner.address, nonce=shops.nonces(shop_owner))
    with reverts(shops.InvalidSignature, signer=shop_owner):
        shops.addShop(shop, "Shop", 0, 100, shop_owner, dl, sig, sender=relay)


# ---------------------------------------------------------------- updateShop


def test_updateShop__changes_settings_not_totals(shops, relay, shop_owner, shop_id, settle, ledger, user):
    settle(shop_id, 50 * UNIT)
    ledger.provide(user, shop_id, "R1", 100 * UNIT, "krw", sender=relay)
    before = shops.shopOf(shop_id)
    nonce = shops.nonces(shop_owner)
    dl, sig = sign_update(shop_owner, shops, shop_id, "Renamed", 7200, 300)

    receipt = shops.updateShop(shop_id, "Renamed", 7200, 300, dl, sig, sender=relay)

    after = shops.shopOf(shop_id)
    assert (after.name, after.provideWaitTime, after.providePercent) == ("Renamed", 7200, 300)
    assert after.account == before.account
    assert (after.providedPoint, after.usedPoint, after.settledPoint) == (UNIT, 50 * UNIT, 49 * UNIT)
    assert (after.providedPoint, after.usedPoint) == (before.providedPoint, before.usedPoint)
    assert shops.nonces(shop_owner) == nonce + 1
    assert_event(receipt, shops.ShopUpdated, shopId=shop_id, name="Renamed", provideWaitTime=7200, providePercent=300)


def test_updateShop__new_percent__applies_to_later_rewards(shops, relay, shop_owner, shop_id, ledger, user):
    dl, sig = sign_update(shop_owner, shops, shop_id, "Shop", 0, 1_000)
    shops.updateShop(shop_id, "Shop", 0, 1_000, dl, sig, sender=relay)
    ledger.provide(user, shop_id, "R1", 100 * UNIT, "krw", sender=relay)
    assert ledger.accountOf(user) == (0, 10 * UNIT)


def test_updateShop__unknown_shop__reverts(shops, relay, shop_owner):
    shop = new_id()
    dl, sig = sign_update(shop_owner, shops, shop, "Shop", 0, 100)
    with reverts(shops.UnknownShop, shopId=shop):
        shops.updateShop(shop, "Shop", 0, 100, dl, sig, sender=relay)


def test_updateShop__percent_over_maximum__reverts(shops, relay, shop_owner, shop_id):
    dl, sig = sign_update(shop_owner, shops, shop_id, "Shop", 0, 10_001)
    with reverts(shops.InvalidShopSettings, providePercent=10_001):
        shops.updateShop(shop_id, "Shop", 0, 10_001, dl, sig, sender=relay)


def test_updateShop__signed_by_non_owner__reverts(shops, relay, shop_owner, shop_id, stranger):
    dl = deadline()
    sig = sign(
        stranger,
        shops,
        "UpdateShop",
        shopId=shop_id,
        name="Mine",
        provideWaitTime=0,
        providePercent=10_000,
        account=stranger.address,
        nonce=shops.nonces(stranger),
        deadline=dl,
    )
    with reverts(shops.InvalidSignature, signer=shop_owner):
        shops.updateShop(shop_id, "Mine", 0, 10_000, dl, sig, sender=relay)


def test_updateShop__not_relay__reverts(shops, shop_owner, shop_id):
    dl, sig = sign_update(shop_owner, shops, shop_id, "Shop", 0, 100)
    with reverts(shops.AccessControlUnauthorizedAccount, account=shop_owner, neededRole=shops.RELAY_ROLE()):
        shops.updateShop(shop_id, "Shop", 0, 100, dl, sig, sender=shop_owner)


# ---------------------------------------------------------------- views


def test_shopOf__unknown_shop__reverts(shops, relay):
    shop = new_id()
    with reverts(shops.UnknownShop, shopId=shop):
        shops.shopOf.transact(shop, sender=relay)


def test_indexOf__unknown_shop__reverts(shops, relay):
    shop = new_id()
    with reverts(shops.UnknownShop, shopId=shop):
        shops.indexOf.transact(shop, sender=relay)


def test_indexOf_and_shopAt__follow_registration_order(shops, create_shop, shop_owner, other_user):
    first = create_shop()
    second = create_shop(owner=other_user)
    assert shops.indexOf(second) == shops.indexOf(first) + 1
    assert shops.shopAt(shops.indexOf(first)) == (bytes.fromhex(first[2:]), shop_owner.address)
    assert shops.shopAt(shops.indexOf(second)) == (bytes.fromhex(second[2:]), other_user.address)


def test_shopAt__past_the_last_shop__reverts(shops):
    with panics(0x32):
        shops.shopAt(shops.shopCount())


# ---------------------------------------------------------------- accounting callers


def test_recordProvision__from_ledger__adds_reward(shops, as_ledger, shop_id):
    receipt = shops.recordProvision(shop_id, 1_000 * UNIT, sender=as_ledger)
    receipt2 = shops.recordProvision(shop_id, 500 * UNIT, sender=as_ledger)
    # The shop's providePercent is 100 (1 %).
    assert shops.shopOf(shop_id).providedPoint == 15 * UNIT
    assert_event(receipt, shops.ProvisionRecorded, shopId=shop_id, rewardPoint=10 * UNIT, providedPoint=10 * UNIT)
    assert_event(receipt2, shops.ProvisionRecorded, shopId=shop_id, rewardPoint=5 * UNIT, providedPoint=15 * UNIT)


def test_recordProvision__unknown_shop__reverts(shops, as_ledger):
    shop = new_id()
    with reverts(shops.UnknownShop, shopId=shop):
        shops.recordProvision(shop, UNIT, sender=as_ledger)


def test_recordProvision__beyond_credit_limit__reverts(shops, as_ledger, create_shop, admin):
    shop = create_shop(percent=10_000)
    shops.setCreditLimit(shop, 5 * UNIT, sender=admin)
    with reverts(shops.CreditLimitExceeded, shopId=shop, debt=5 * UNIT + 1, creditLimit=5 * UNIT):
        shops.recordProvision(shop, 5 * UNIT + 1, sender=as_ledger)
    shops.recordProvision(shop, 5 * UNIT, sender=as_ledger)
    assert shops.shopOf(shop).providedPoint == 5 * UNIT


def test_recordPayment_and_recordCancellation__from_controller__move_used_total(shops, as_controller, shop_id):
    index = shops.indexOf(shop_id)
    shops.recordPayment(index, 30 * UNIT, sender=as_controller)
    assert shops.shopOf(shop_id).usedPoint == 30 * UNIT
    shops.recordCancellation(index, 10 * UNIT, sender=as_controller)
    info = shops.shopOf(shop_id)
    assert (info.usedPoint, info.settledPoint) == (20 * UNIT, 20 * UNIT)


def test_recordPayment__overflowing_used_total__reverts(shops, as_controller, shop_id):
    index = shops.indexOf(shop_id)
    shops.recordPayment(index, 2**127, sender=as_controller)
    with reverts(shops.SafeCastOverflowedUintDowncast, bits=128, value=2**128):
        shops.recordPayment(index, 2**127, sender=as_controller)


def test_recordCancellation__more_than_used__reverts(shops, as_controller, shop_id):
    index = shops.indexOf(shop_id)
    shops.recordPayment(index, 30 * UNIT, sender=as_controller)
    with panics(0x11):
        shops.recordCancellation(index, 30 * UNIT + 1, sender=as_controller)


@pytest.mark.parametrize("caller_name", ["relay", "admin", "as_controller"])
def test_recordProvision__not_ledger__reverts(shops, shop_id, caller_name, request):
    caller = request.getfixturevalue(caller_name)
    with reverts(shops.UnauthorizedCaller, caller=caller):
        shops.recordProvision(shop_id, UNIT, sender=caller)


@pytest.mark.parametrize("function", ["recordPayment", "recordCancellation"])
@pytest.mark.parametrize("caller_name", ["relay", "admin", "as_ledger"])
def test_record__not_payment_controller__reverts(shops, shop_id, function, caller_name, request):
    caller = request.getfixturevalue(caller_name)
    with reverts(shops.UnauthorizedCaller, caller=caller):
        getattr(shops, function)(shops.indexOf(shop_id), UNIT, sender=caller)


def test_record__called_by_a_contract__names_the_contract(shops, shop_id, admin, user):
    """The error names the contract that called (`msg.sender`), not the EOA behind it."""
    wallet = admin.deploy(project.MockERC1271Wallet, user)
    with reverts(shops.UnauthorizedCaller, caller=wallet):
        wallet.execute(shops, shops.recordProvision.encode_input(shop_id, UNIT), sender=user)


# ---------------------------------------------------------------- credit limits


def test_addShop__starts_with_the_default_credit_limit(shops, admin, create_shop):
    shops.setDefaultCreditLimit(42 * UNIT, sender=admin)
    assert shops.defaultCreditLimit() == 42 * UNIT
    assert shops.shopOf(create_shop()).creditLimit == 42 * UNIT


def test_setCreditLimit__sets_and_emits(shops, admin, shop_id):
    receipt = shops.setCreditLimit(shop_id, 7 * UNIT, sender=admin)
    assert shops.shopOf(shop_id).creditLimit == 7 * UNIT
    assert_event(receipt, shops.CreditLimitSet, shopId=shop_id, creditLimit=7 * UNIT)
    receipt = shops.setDefaultCreditLimit(0, sender=admin)
    assert_event(receipt, shops.DefaultCreditLimitSet, creditLimit=0)


@pytest.mark.parametrize("limit", [UNIT + 1, UNIT // 2, 2**48 * UNIT])
def test_setCreditLimit__not_whole_points_or_too_large__reverts(shops, admin, shop_id, limit):
    with reverts(shops.InvalidCreditLimit, creditLimit=limit):
        shops.setCreditLimit(shop_id, limit, sender=admin)
    with reverts(shops.InvalidCreditLimit, creditLimit=limit):
        shops.setDefaultCreditLimit(limit, sender=admin)


def test_setCreditLimit__largest__accepted(shops, admin, shop_id):
    shops.setCreditLimit(shop_id, (2**48 - 1) * UNIT, sender=admin)
    assert shops.shopOf(shop_id).creditLimit == (2**48 - 1) * UNIT


@pytest.mark.parametrize("call", ["setCreditLimit", "setDefaultCreditLimit", "correctShopTotals"])
def test_admin_functions__not_admin__reverts(shops, relay, shop_id, call):
    args = {"setCreditLimit": (shop_id, 0), "setDefaultCreditLimit": (0,), "correctShopTotals": (shop_id, 0, 0)}[call]
    with reverts(shops.AccessControlUnauthorizedAccount, account=relay, neededRole="0x" + "00" * 32):
        getattr(shops, call)(*args, sender=relay)


def test_setCreditLimit__unknown_shop__reverts(shops, admin):
    shop = new_id()
    with reverts(shops.UnknownShop, shopId=shop):
        shops.setCreditLimit(shop, 0, sender=admin)


def test_credit__debt_counts_withdrawn_and_open_withdrawals(
    shops, as_ledger, as_controller, shop_id, admin, open_withdrawal
):
    # used 100, withdrawn 60 and 30 open: the shop has 10 points of room before its 5-point limit.
    index = shops.indexOf(shop_id)
    shops.recordPayment(index, 100 * UNIT, sender=as_controller)
    shops.correctShopTotals(shop_id, 0, 60 * UNIT, sender=admin)
    open_withdrawal(shop_id, 30 * UNIT)
    shops.setCreditLimit(shop_id, 5 * UNIT, sender=admin)
    shops.recordProvision(shop_id, 1_500 * UNIT, sender=as_ledger)  # 15 points at 1 %: debt 0 -> 5
    with reverts(shops.CreditLimitExceeded, shopId=shop_id, debt=5 * UNIT + UNIT // 100, creditLimit=5 * UNIT):
        shops.recordProvision(shop_id, UNIT, sender=as_ledger)
    # A cancel raises the debt the same way.
    with reverts(shops.CreditLimitExceeded, shopId=shop_id, debt=6 * UNIT, creditLimit=5 * UNIT):
        shops.recordCancellation(index, UNIT, sender=as_controller)


# ---------------------------------------------------------------- corrections


def test_correctShopTotals__sets_both_and_emits_previous_values(shops, as_ledger, admin, shop_id):
    shops.recordProvision(shop_id, 1_000 * UNIT, sender=as_ledger)  # 10 points provided
    receipt = shops.correctShopTotals(shop_id, 4 * UNIT, 3 * UNIT, sender=admin)
    info = shops.shopOf(shop_id)
    assert (info.providedPoint, info.withdrawnPoint) == (4 * UNIT, 3 * UNIT)
    assert_event(
        receipt,
        shops.ShopTotalsCorrected,
        shopId=shop_id,
        providedPoint=4 * UNIT,
        withdrawnPoint=3 * UNIT,
        previousProvidedPoint=10 * UNIT,
        previousWithdrawnPoint=0,
    )


def test_correctShopTotals__emits_the_withdrawn_total_it_replaces(shops, admin, shop_id):
    shops.correctShopTotals(shop_id, 0, 3 * UNIT, sender=admin)
    receipt = shops.correctShopTotals(shop_id, 0, 1 * UNIT, sender=admin)
    assert_event(
        receipt,
        shops.ShopTotalsCorrected,
        shopId=shop_id,
        providedPoint=0,
        withdrawnPoint=1 * UNIT,
        previousProvidedPoint=0,
        previousWithdrawnPoint=3 * UNIT,
    )


def test_correctShopTotals__unknown_shop__reverts(shops, admin):
    shop = new_id()
    with reverts(shops.UnknownShop, shopId=shop):
        shops.correctShopTotals(shop, 0, 0, sender=admin)


# ---------------------------------------------------------------- two-step shop transfer


def sign_transfer(shops, owner, shop_id, new_owner, **overrides):
    dl = deadline()
    fields = dict(shopId=shop_id, newOwner=new_owner, account=owner.address, nonce=shops.nonces(owner), deadline=dl)
    fields.update(overrides)
    return dl, sign(owner, shops, "TransferShop", **fields)


def sign_accept(shops, new_owner, shop_id):
    dl = deadline()
    return dl, sign_next(new_owner, shops, "AcceptShop", dl, shopId=shop_id)


def test_transferShop_then_acceptShop__moves_ownership(shops, relay, shop_owner, other_user, shop_id):
    dl, sig = sign_transfer(shops, shop_owner, shop_id, other_user.address)
    receipt = shops.transferShop(shop_id, other_user, dl, sig, sender=relay)
    assert_event(receipt, shops.ShopTransferStarted, shopId=shop_id, account=shop_owner, newOwner=other_user)
    info = shops.shopOf(shop_id)
    assert (info.account, info.pendingOwner) == (shop_owner.address, other_user.address)

    dl, sig = sign_accept(shops, other_user, shop_id)
    receipt = shops.acceptShop(shop_id, dl, sig, sender=relay)
    assert_event(receipt, shops.ShopTransferred, shopId=shop_id, previousOwner=shop_owner, newOwner=other_user)
    info = shops.shopOf(shop_id)
    assert (info.account, info.pendingOwner) == (other_user.address, ZERO_ADDRESS)
    assert shops.shopAt(shops.indexOf(shop_id))[1] == other_user.address


def test_transferShop__to_zero__withdraws_a_pending_transfer(shops, relay, shop_owner, other_user, shop_id):
    dl, sig = sign_transfer(shops, shop_owner, shop_id, other_user.address)
    shops.transferShop(shop_id, other_user, dl, sig, sender=relay)
    dl, sig = sign_transfer(shops, shop_owner, shop_id, ZERO_ADDRESS)
    shops.transferShop(shop_id, ZERO_ADDRESS, dl, sig, sender=relay)
    dl, sig = sign_accept(shops, other_user, shop_id)
    with reverts(shops.NoPendingTransfer, shopId=shop_id):
        shops.acceptShop(shop_id, dl, sig, sender=relay)


def test_transferShop__signed_by_the_new_owner__reverts(shops, relay, shop_owner, other_user, shop_id):
    # Only the current owner can name a successor.
    dl, sig = sign_transfer(shops, other_user, shop_id, other_user.address, account=shop_owner.address)
    with reverts(shops.InvalidSignature, signer=shop_owner):
        shops.transferShop(shop_id, other_user, dl, sig, sender=relay)


def test_acceptShop__signed_by_someone_else__reverts(shops, relay, shop_owner, other_user, stranger, shop_id):
    dl, sig = sign_transfer(shops, shop_owner, shop_id, other_user.address)
    shops.transferShop(shop_id, other_user, dl, sig, sender=relay)
    dl, sig = sign_accept(shops, stranger, shop_id)
    with reverts(shops.InvalidSignature, signer=other_user):
        shops.acceptShop(shop_id, dl, sig, sender=relay)


def test_new_owner__signs_withdrawals_and_cancels__old_owner_no_longer(
    shops, payment, relay, shop_owner, other_user, shop_id, settle, open_withdrawal
):
    dl, sig = sign_transfer(shops, shop_owner, shop_id, other_user.address)
    shops.transferShop(shop_id, other_user, dl, sig, sender=relay)
    dl, sig = sign_accept(shops, other_user, shop_id)
    shops.acceptShop(shop_id, dl, sig, sender=relay)
    settle(shop_id, 100 * UNIT)
    with reverts(shops.InvalidSignature, signer=other_user):
        open_withdrawal(shop_id, UNIT, owner=shop_owner)
    open_withdrawal(shop_id, UNIT, owner=other_user)
    assert shops.shopOf(shop_id).withdrawAmount == UNIT


@pytest.mark.parametrize("call", ["transferShop", "acceptShop"])
def test_transfer__not_relay__reverts(shops, shop_owner, shop_id, call):
    args = (shop_id, shop_owner, deadline(), b"") if call == "transferShop" else (shop_id, deadline(), b"")
    with reverts(shops.AccessControlUnauthorizedAccount, account=shop_owner, neededRole=shops.RELAY_ROLE()):
        getattr(shops, call)(*args, sender=shop_owner)
