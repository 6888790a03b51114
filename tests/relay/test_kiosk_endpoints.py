"""KIOSK endpoints (spec §3) over plain HTTP: each one's answer against the spec's result table,
and each documented error. Tests that depend on the database run on both backends; the others
on the SQLite relay."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import update

from relay import chain as onchain
from relay.cli import revoke_kiosk
from relay.models import Payment, Purchase, TemporaryAccount
from relay.models import PaymentStatus as S
from tests.relay.checks import (
    AMOUNTS,
    assert_spec_fields,
    balance_of,
    call,
    contract,
    count_payments,
    fails,
    is_bytes32,
    item,
    kiosk_post,
    ok,
    open_new,
    payment_on_chain,
    session_of,
    shop_on_chain,
    sqlite_only,
)
from tests.relay.conftest import TOKEN_USER, UNIT, address

TEN_KRW = 10 * UNIT
FEE = UNIT // 2  # 5 % of 10 KRW
UNKNOWN_SHOP = "0x" + "ee" * 32
POST_ENDPOINTS = ["openNew", "closeNew", "openCancel", "closeCancel"]


def _post(relay, endpoint, access_key, payment_id, shop_id, account, headers=None):
    """Any of the four authenticated KIOSK endpoints, with a valid body."""
    if endpoint == "openNew":
        return open_new(relay.url, access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, account, headers=headers)
    body = {"paymentId": payment_id} | ({"accessKey": access_key} if access_key is not None else {})
    return call(relay.url, "POST", f"/v1/payment/{endpoint}", json=body, headers=headers)


def _opened(relay, kiosk, user, shop_id, purchase_id=None, amount=TEN_KRW):
    purchase_id = purchase_id or f"P-{secrets.token_hex(6)}"
    return ok(open_new(relay.url, kiosk.access_key, purchase_id, amount, shop_id, user.address))


def _completed(relay, kiosk, user, shop_id, amount=TEN_KRW):
    payment = _opened(relay, kiosk, user, shop_id, amount=amount)
    user.approve(payment["paymentId"])
    return ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment["paymentId"]))


# ----------------------------------------------------------------------------- 3.1 / 3.2 reads


@sqlite_only
def test_user_balance__spec_fields_and_the_ledger_balance(relay, user, anvil, deployment):
    ledger = contract(anvil, deployment, "Ledger")
    for account, loyalty_type in ((user.address, 0), (address(TOKEN_USER), 1)):
        data = ok(call(relay.url, "GET", "/v1/payment/user/balance", params={"account": account}))

        assert_spec_fields(data, "3.1 user/balance")
        on_chain_type, on_chain_balance = ledger.functions.accountOf(account).call()
        assert (data["account"], data["loyaltyType"]) == (account, loyalty_type) == (account, on_chain_type)
        assert data["balance"] == str(on_chain_balance) and on_chain_balance > 0


@sqlite_only
def test_info__spec_fields_and_the_contract_estimate(relay, user, token_user):
    params = {"account": user.address, "amount": str(TEN_KRW), "currency": "krw"}
    data = ok(call(relay.url, "GET", "/v1/payment/info", params=params))

    assert_spec_fields(data, "3.2 info")
    assert (data["account"], data["loyaltyType"], data["amount"], data["currency"]) == (
        user.address,
        0,
        str(TEN_KRW),
        "krw",
    )
    assert data["balance"] == str(balance_of(relay.url, user.address))
    # The spec's example: 10 KRW costs 10 points plus a 0.5 point fee.
    assert (data["paidPoint"], data["feePoint"], data["totalPoint"]) == (str(TEN_KRW), str(FEE), str(TEN_KRW + FEE))
    assert (data["paidValue"], data["feeValue"], data["totalValue"]) == (str(TEN_KRW), str(FEE), str(TEN_KRW + FEE))
    assert (data["paidToken"], data["feeToken"], data["totalToken"]) == ("0", "0", "0")

    # A token holder pays 1 USD = 1,350 points = 13.5 THE9 plus 5 %.
    params = {"account": token_user.address, "amount": str(UNIT), "currency": "usd"}
    tokens = ok(call(relay.url, "GET", "/v1/payment/info", params=params))
    assert tokens["loyaltyType"] == 1
    assert (tokens["paidToken"], tokens["feeToken"], tokens["totalToken"]) == (
        str(27 * UNIT // 2),
        str(675 * UNIT // 1000),
        str(27 * UNIT // 2 + 675 * UNIT // 1000),
    )
    assert (tokens["paidValue"], tokens["totalValue"]) == (str(UNIT), str(UNIT + UNIT // 20))
    assert tokens["paidPoint"] == "0"


@sqlite_only
def test_info__unknown_currency__400_2004(relay, user):
    params = {"account": user.address, "amount": str(TEN_KRW), "currency": "xyz"}
    fails(call(relay.url, "GET", "/v1/payment/info", params=params), 400, 2004)


# ----------------------------------------------------------------------------- 3.3 openNew


@sqlite_only
def test_open_new__spec_fields_status_1_and_the_estimate(relay, kiosk, user, shop_id, purchase_id):
    before = count_payments(relay)
    params = {"account": user.address, "amount": str(TEN_KRW), "currency": "krw"}
    estimate = ok(call(relay.url, "GET", "/v1/payment/info", params=params))
    started = int(time.time())

    data = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, user.address))

    assert_spec_fields(data, "3.3 openNew")
    assert is_bytes32(data["paymentId"])
    assert (data["purchaseId"], data["amount"], data["currency"], data["shopId"], data["account"]) == (
        purchase_id,
        str(TEN_KRW),
        "krw",
        shop_id,
        user.address,
    )
    assert (data["paymentStatus"], data["loyaltyType"]) == (S.NEW, 0)
    assert {k: data[k] for k in AMOUNTS} == {k: estimate[k] for k in AMOUNTS}  # what 3.2 estimated
    assert started - 1 <= data["openNewTimestamp"] <= time.time() + 1
    assert count_payments(relay) == before + 1
    assert item(relay.url, data["paymentId"])["paymentStatus"] == S.NEW


def test_open_new__same_request_twice__same_payment(relay, kiosk, user, shop_id, purchase_id):
    before = count_payments(relay)
    first = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, user.address))
    again = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, user.address))

    assert again == first
    assert count_payments(relay) == before + 1


def test_open_new__same_purchase_with_another_amount__409_3005(relay, kiosk, user, shop_id, purchase_id):
    first = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, user.address))
    before = count_payments(relay)

    message = fails(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW + 1, shop_id, user.address), 409, 3005)

    assert first["paymentId"] in message
    assert count_payments(relay) == before
    assert item(relay.url, first["paymentId"])["amount"] == str(TEN_KRW)


def test_open_new__same_request_concurrently__one_payment(relay, kiosk, user, shop_id, purchase_id):
    before = count_payments(relay)
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(
            pool.map(
                lambda _: open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, user.address), range(6)
            )
        )

    assert len({ok(response)["paymentId"] for response in responses}) == 1
    assert count_payments(relay) == before + 1


def test_open_new__one_temporary_account_concurrently__exactly_one_payment(relay, kiosk, user, shop_id, purchase_id):
    temporary = user.temporary_account().temporaryAccount
    before = count_payments(relay)
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(
            pool.map(
                lambda i: open_new(relay.url, kiosk.access_key, f"{purchase_id}-{i}", TEN_KRW, shop_id, temporary),
                range(6),
            )
        )

    [opened] = [ok(r) for r in responses if r.status_code == 200]
    for response in responses:
        if response.status_code != 200:
            fails(response, 404, 2003)
    assert count_payments(relay) == before + 1
    assert item(relay.url, opened["paymentId"])["account"] == temporary  # the wallet only to its own session
    assert user.item(opened["paymentId"]).account == user.address
    # The KIOSK retrying the request that won gets its payment back.
    assert ok(open_new(relay.url, kiosk.access_key, opened["purchaseId"], TEN_KRW, shop_id, temporary)) == opened


@sqlite_only
def test_open_new__unknown_currency__400_2004_and_nothing_written(relay, kiosk, user, shop_id, purchase_id):
    before = count_payments(relay)
    fails(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, user.address, currency="xyz"), 400, 2004)
    assert count_payments(relay) == before


@sqlite_only
def test_open_new__more_than_the_balance__422_3004_and_nothing_written(relay, kiosk, shop_id, purchase_id, new_wallet):
    wallet = new_wallet(relay, 100 * UNIT)
    before = count_payments(relay)

    # 96 KRW + 5 % = 100.8 points > 100.
    fails(open_new(relay.url, kiosk.access_key, purchase_id, 96 * UNIT, shop_id, wallet.address), 422, 3004)

    assert count_payments(relay) == before
    # 95 KRW + 5 % = 99.75 points is covered.
    ok(open_new(relay.url, kiosk.access_key, purchase_id, 95 * UNIT, shop_id, wallet.address))


@sqlite_only
def test_open_new__unknown_shop__404_2002(relay, make_kiosk, user, shop_id, purchase_id):
    kiosk = make_kiosk(relay, [shop_id, UNKNOWN_SHOP])
    before = count_payments(relay)
    fails(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, UNKNOWN_SHOP, user.address), 404, 2002)
    assert count_payments(relay) == before


# ----------------------------------------------------------------------------- access keys


@sqlite_only
@pytest.mark.parametrize("endpoint", POST_ENDPOINTS)
@pytest.mark.parametrize("key", ["missing", "unknown", "revoked", "unknown-bearer"])
def test_access_key__missing_unknown_or_revoked__401_1001(relay, make_kiosk, user, shop_id, endpoint, key):
    payment_id = "0x" + secrets.token_hex(32)
    headers = None
    if key == "missing":
        access_key = None
    elif key == "unknown":
        access_key = "kk_" + secrets.token_urlsafe(16)
    elif key == "unknown-bearer":
        access_key, headers = None, {"Authorization": f"Bearer kk_{secrets.token_urlsafe(16)}"}
    else:
        revoked = make_kiosk(relay, [shop_id])
        with session_of(relay) as session:
            assert revoke_kiosk(session, revoked.id)
        access_key = revoked.access_key
    before = count_payments(relay)

    fails(_post(relay, endpoint, access_key, payment_id, shop_id, user.address, headers), 401, 1001)

    assert count_payments(relay) == before


@sqlite_only
def test_access_key__as_bearer_token__accepted_by_every_endpoint(
    relay, kiosk, user, owner, shop_id, purchase_id, callbacks
):
    bearer = {"Authorization": f"Bearer {kiosk.access_key}"}
    opened = ok(open_new(relay.url, None, purchase_id, TEN_KRW, shop_id, user.address, headers=bearer))
    payment_id = opened["paymentId"]
    user.approve(payment_id)

    def post(endpoint):
        return ok(call(relay.url, "POST", f"/v1/payment/{endpoint}", json={"paymentId": payment_id}, headers=bearer))

    assert post("closeNew")["paymentStatus"] == S.COMPLETED
    assert post("openCancel")["paymentStatus"] == S.CANCEL_RECEIVED
    owner.approve(payment_id)
    assert post("closeCancel")["paymentStatus"] == S.CANCEL_COMPLETED
    # Both callbacks went to this KIOSK, signed with its secret, shaped as spec §4.1.
    create, cancel = callbacks.wait_for(payment_id, count=2)
    for callback, type_ in ((create, "create"), (cancel, "cancel")):
        body = callback.json
        assert callback.verified and callback.path == kiosk.name
        assert_spec_fields(body, "4.1 callback")
        assert_spec_fields(body["data"], "4.1 callback data", extra={"balance"})
        assert (body["type"], body["code"], body["data"]["paymentId"]) == (type_, 0, payment_id)


@sqlite_only
def test_access_key__not_allowed_for_the_shop__403_1002_and_nothing_changes(
    relay, kiosk, make_kiosk, user, shop_id, purchase_id
):
    stranger = make_kiosk(relay, ["0x" + "ab" * 32])
    before = count_payments(relay)
    fails(open_new(relay.url, stranger.access_key, purchase_id, TEN_KRW, shop_id, user.address), 403, 1002)
    assert count_payments(relay) == before

    opened = _opened(relay, kiosk, user, shop_id)
    user.approve(opened["paymentId"])
    for endpoint in ("closeNew", "openCancel", "closeCancel"):
        fails(kiosk_post(relay.url, endpoint, stranger.access_key, opened["paymentId"]), 403, 1002)
    assert item(relay.url, opened["paymentId"])["paymentStatus"] == S.APPROVED
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, opened["paymentId"]))


@sqlite_only
@pytest.mark.parametrize("endpoint", ["closeNew", "openCancel", "closeCancel"])
def test_unknown_payment__404_2001(relay, kiosk, endpoint):
    fails(kiosk_post(relay.url, endpoint, kiosk.access_key, "0x" + secrets.token_hex(32)), 404, 2001)


# ----------------------------------------------------------------------------- temporary accounts


@sqlite_only
def test_temporary_account__used_by_open_new__404_2003_afterwards(relay, kiosk, user, shop_id, purchase_id):
    temporary = user.temporary_account().temporaryAccount
    ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, temporary))
    before = count_payments(relay)

    params = {"account": temporary, "amount": str(TEN_KRW), "currency": "krw"}
    fails(call(relay.url, "GET", "/v1/payment/user/balance", params={"account": temporary}), 404, 2003)
    fails(call(relay.url, "GET", "/v1/payment/info", params=params), 404, 2003)
    fails(open_new(relay.url, kiosk.access_key, purchase_id + "-2", TEN_KRW, shop_id, temporary), 404, 2003)
    assert count_payments(relay) == before


@sqlite_only
def test_temporary_account__expired__404_2003_and_nothing_written(relay, kiosk, user, shop_id, purchase_id):
    temporary = user.temporary_account().temporaryAccount
    assert balance_of(relay.url, temporary) == balance_of(relay.url, user.address)
    with session_of(relay) as session:  # as if its 60 s had passed
        session.execute(
            update(TemporaryAccount).where(TemporaryAccount.address == temporary).values(expires_at=time.time() - 1)
        )
    before = count_payments(relay)

    fails(call(relay.url, "GET", "/v1/payment/user/balance", params={"account": temporary}), 404, 2003)
    fails(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, temporary), 404, 2003)
    assert count_payments(relay) == before


# ----------------------------------------------------------------------------- 3.4 closeNew


@sqlite_only
def test_close_new__spec_fields_status_4_and_a_retry_returns_the_same(relay, kiosk, user, shop_id, anvil, deployment):
    used_before = shop_on_chain(anvil, deployment, shop_id)["usedPoint"]
    opened = _opened(relay, kiosk, user, shop_id)
    user.approve(opened["paymentId"])

    closed = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, opened["paymentId"]))
    again = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, opened["paymentId"]))

    assert_spec_fields(closed, "3.4 closeNew")
    assert closed["paymentStatus"] == S.COMPLETED
    assert closed["openNewTimestamp"] <= closed["closeNewTimestamp"] <= time.time() + 1
    assert (closed["paidPoint"], closed["feePoint"], closed["totalPoint"]) == (
        str(TEN_KRW),
        str(FEE),
        str(TEN_KRW + FEE),
    )
    assert again == closed
    assert shop_on_chain(anvil, deployment, shop_id)["usedPoint"] == used_before + TEN_KRW  # once, not twice


@sqlite_only
def test_close_new__confirm_false__refunded_status_11_and_balance_restored(
    relay, kiosk, shop_id, purchase_id, new_wallet, anvil, deployment
):
    wallet = new_wallet(relay, 100 * UNIT)
    opened = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, wallet.address))
    wallet.approve(opened["paymentId"])

    refunded = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, opened["paymentId"], confirm=False))

    assert_spec_fields(refunded, "3.4 closeNew")
    assert refunded["paymentStatus"] == S.REFUNDED and refunded["closeNewTimestamp"]
    assert balance_of(relay.url, wallet.address) == 100 * UNIT
    assert payment_on_chain(anvil, deployment, opened["paymentId"])["status"] == onchain.REFUNDED
    # A retry answers the same; completing it now is refused.
    assert ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, opened["paymentId"], confirm=False)) == refunded
    fails(kiosk_post(relay.url, "closeNew", kiosk.access_key, opened["paymentId"]), 409, 3001)
    fails(kiosk_post(relay.url, "openCancel", kiosk.access_key, opened["paymentId"]), 409, 3001)


@sqlite_only
def test_wrong_status__409_3001_and_nothing_changes(relay, kiosk, user, shop_id):
    new = _opened(relay, kiosk, user, shop_id)
    for endpoint in ("closeNew", "openCancel", "closeCancel"):
        fails(kiosk_post(relay.url, endpoint, kiosk.access_key, new["paymentId"]), 409, 3001)
    assert item(relay.url, new["paymentId"])["paymentStatus"] == S.NEW

    completed = _completed(relay, kiosk, user, shop_id)
    fails(kiosk_post(relay.url, "closeCancel", kiosk.access_key, completed["paymentId"]), 409, 3001)
    fails(kiosk_post(relay.url, "closeNew", kiosk.access_key, completed["paymentId"], confirm=False), 409, 3001)
    assert item(relay.url, completed["paymentId"])["paymentStatus"] == S.COMPLETED

    denied = _opened(relay, kiosk, user, shop_id)
    user.deny(denied["paymentId"])
    fails(kiosk_post(relay.url, "closeNew", kiosk.access_key, denied["paymentId"]), 409, 3001)
    assert item(relay.url, denied["paymentId"])["paymentStatus"] == S.DENIED


# ----------------------------------------------------------------------------- 3.5 / 3.6 cancel


@sqlite_only
def test_open_cancel_and_close_cancel__spec_fields_and_user_refunded(relay, kiosk, user, owner, shop_id):
    before = balance_of(relay.url, user.address)
    completed = _completed(relay, kiosk, user, shop_id)
    assert balance_of(relay.url, user.address) == before - TEN_KRW - FEE

    cancel = ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, completed["paymentId"]))
    assert_spec_fields(cancel, "3.5 openCancel")
    assert cancel["paymentStatus"] == S.CANCEL_RECEIVED
    assert completed["closeNewTimestamp"] <= cancel["openCancelTimestamp"] <= time.time() + 1
    # A retry of openCancel answers the same.
    assert ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, completed["paymentId"])) == cancel
    owner.approve(completed["paymentId"])

    done = ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, completed["paymentId"]))

    assert_spec_fields(done, "3.6 closeCancel")
    assert done["paymentStatus"] == S.CANCEL_COMPLETED and done["closeCancelTimestamp"]
    assert balance_of(relay.url, user.address) == before
    assert ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, completed["paymentId"])) == done


@sqlite_only
def test_close_cancel__confirm_false__reverted_to_completed(relay, kiosk, user, owner, shop_id, anvil, deployment):
    completed = _completed(relay, kiosk, user, shop_id)
    after_payment = balance_of(relay.url, user.address)
    used = shop_on_chain(anvil, deployment, shop_id)["usedPoint"]
    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, completed["paymentId"]))
    owner.approve(completed["paymentId"])

    reverted = ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, completed["paymentId"], confirm=False))

    assert_spec_fields(reverted, "3.6 closeCancel")
    assert reverted["paymentStatus"] == S.COMPLETED and reverted["closeCancelTimestamp"]
    assert balance_of(relay.url, user.address) == after_payment
    assert shop_on_chain(anvil, deployment, shop_id)["usedPoint"] == used
    assert payment_on_chain(anvil, deployment, completed["paymentId"])["status"] == onchain.CLOSED
    assert item(relay.url, completed["paymentId"])["paymentStatus"] == S.COMPLETED


# ----------------------------------------------------------------------------- 3.7 / 3.8 shop


@sqlite_only
def test_shop_info_and_withdrawal__spec_fields_and_the_registry_values(relay, shop_id, anvil, deployment):
    on_chain = shop_on_chain(anvil, deployment, shop_id)

    info = ok(call(relay.url, "GET", "/v1/payment/shop/info", params={"shopId": shop_id}))
    withdrawal = ok(call(relay.url, "GET", "/v1/payment/shop/withdrawal", params={"shopId": shop_id}))

    assert_spec_fields(info, "3.7 shop/info")
    # The spec's names, with the registry's values; amounts as decimal strings.
    assert info == {
        "shopId": shop_id,
        "name": on_chain["name"],
        "provideWaitTime": on_chain["provideWaitTime"],
        "providePercent": on_chain["providePercent"],
        "account": on_chain["account"],
        "providedPoint": str(on_chain["providedPoint"]),
        "usedPoint": str(on_chain["usedPoint"]),
        "settledPoint": str(on_chain["settledPoint"]),
        "withdrawnPoint": str(on_chain["withdrawnPoint"]),
    }
    # The demo shop (DESIGN.md §8): 1 % = 100, owned by anvil account 1.
    assert (info["name"], info["account"], info["providePercent"]) == ("Demo Shop", address(1), 100)
    assert_spec_fields(withdrawal, "3.8 shop/withdrawal")
    assert withdrawal == {
        "shopId": shop_id,
        "withdrawAmount": str(on_chain["withdrawAmount"]),
        "withdrawStatus": int(on_chain["withdrawOpen"]),
    }


@sqlite_only
@pytest.mark.parametrize("path", ["/v1/payment/shop/info", "/v1/payment/shop/withdrawal"])
def test_shop__unknown__404_2002(relay, path):
    fails(call(relay.url, "GET", path, params={"shopId": UNKNOWN_SHOP}), 404, 2002)


def _report(relay, kiosk, user, shop_id, purchase_id) -> httpx.Response:
    body = {"accessKey": kiosk.access_key, "purchaseId": purchase_id, "amount": str(100 * UNIT), "currency": "krw"}
    return call(relay.url, "POST", "/v1/payment/purchase", json=body | {"shopId": shop_id, "account": user.address})


def test_purchase__reported_while_its_loyalty_payment_awaits_the_user__409_3001_nothing_stored(
    relay, kiosk, user, shop_id, purchase_id
):
    ok(open_new(relay.url, kiosk.access_key, purchase_id, 10 * UNIT, shop_id, user.address))

    assert "loyalty payment" in fails(_report(relay, kiosk, user, shop_id, purchase_id), 409, 3001)
    with session_of(relay) as session:
        assert session.get(Purchase, (shop_id, purchase_id)) is None


def test_open_new__for_a_purchase_reported_as_paid_otherwise__409_3005(relay, kiosk, user, shop_id, purchase_id):
    ok(_report(relay, kiosk, user, shop_id, purchase_id))

    response = open_new(relay.url, kiosk.access_key, purchase_id, 10 * UNIT, shop_id, user.address)

    assert "paid otherwise" in fails(response, 409, 3005)
    with session_of(relay) as session:
        assert session.query(Payment).filter_by(shop_id=shop_id, purchase_id=purchase_id).count() == 0


def test_purchase_read__only_with_a_kiosk_key_allowed_for_its_shop(
    relay, kiosk, make_kiosk, user, shop_id, purchase_id
):
    ok(_report(relay, kiosk, user, shop_id, purchase_id))
    query = {"shopId": shop_id, "purchaseId": purchase_id}
    other = make_kiosk(relay, ["0x" + "ab" * 32])

    def read(key: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return call(relay.url, "GET", "/v1/payment/purchase", params=query, headers=headers)

    fails(read(None), 401, 1001)
    fails(read(other.access_key), 403, 1002)
    assert ok(read(kiosk.access_key))["account"] == user.address
    assert kiosk.client.purchase(shop_id, purchase_id).purchaseId == purchase_id
