"""Mobile app endpoints (spec §5 and DESIGN.md §4-§6): the payment item and the typed data it hands
out, signed decisions and every way a signature can be wrong, temporary addresses, push tokens and
the live notification stream. All on the SQLite relay (none of it depends on the database)."""

from __future__ import annotations

import json
import secrets
import time

import httpx
import pytest
from eth_utils import is_checksum_address
from sqlalchemy import select

from loyalty_sdk import AppClient
from relay import typed_data
from relay.devnet import anvil_key
from relay.models import Notification, TemporaryAccount
from relay.models import PaymentStatus as S
from tests.relay.checks import (
    ITEM_EXTRA,
    assert_spec_fields,
    balance_of,
    call,
    contract,
    count_rows,
    decide,
    fails,
    item,
    kiosk_post,
    ok,
    open_new,
    session_of,
    sqlite_only,
)
from tests.relay.conftest import OTHER_USER, UNIT, wait_until

pytestmark = sqlite_only

TEN_KRW = 10 * UNIT


@pytest.fixture
def other(relay):
    """A wallet that is neither the paying user nor the shop owner."""
    return AppClient(relay.url, anvil_key(OTHER_USER))


@pytest.fixture
def chain_info(relay):
    return ok(call(relay.url, "GET", "/v1/payment/chain"))


def _open(relay, kiosk, wallet, shop_id, amount=TEN_KRW):
    return ok(open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", amount, shop_id, wallet.address))


def _completed(relay, kiosk, user, shop_id):
    payment = _open(relay, kiosk, user, shop_id)
    user.approve(payment["paymentId"])
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment["paymentId"]))
    return payment


def _typed(relay, payment_id):
    typed = item(relay.url, payment_id)["typedData"]
    assert typed is not None
    return typed


def _signed(wallet, chain_info, primary_type, **message):
    typed = typed_data.build(primary_type, chain_info["domains"]["payment"], message)
    return wallet.sign(typed)


# ----------------------------------------------------------------------------- 5.1 item


def test_item__typed_data_only_while_a_decision_is_pending(
    relay, kiosk, user, owner, shop_id, chain_info, anvil, deployment
):
    payments = contract(anvil, deployment, "LoyaltyPayment")
    opened = _open(relay, kiosk, user, shop_id)
    payment_id = opened["paymentId"]

    pending = item(relay.url, payment_id)
    assert_spec_fields(pending, "5.1 item", extra=ITEM_EXTRA)
    assert (pending["paymentStatus"], pending["createTimestamp"], pending["cancelTimestamp"]) == (
        S.NEW,
        opened["openNewTimestamp"],
        None,
    )
    confirm, deny = pending["typedData"]["confirm"], pending["typedData"]["deny"]
    assert confirm["domain"] == deny["domain"] == chain_info["domains"]["payment"]
    assert chain_info["domains"]["payment"]["verifyingContract"] == deployment["contracts"]["LoyaltyPayment"]
    assert (confirm["primaryType"], deny["primaryType"]) == ("NewPayment", "DenyPayment")
    # Every integer as a decimal string (JSON.parse keeps it exact); maxTotal is the estimate's
    # total in the account's loyalty type (no tolerance configured).
    assert confirm["message"] == {
        "paymentId": payment_id,
        "purchaseId": opened["purchaseId"],
        "amount": str(TEN_KRW),
        "currency": "krw",
        "shopId": shop_id,
        "account": user.address,
        "loyaltyType": "0",
        "maxTotal": opened["totalPoint"],
        "nonce": str(payments.functions.nonces(user.address).call()),
        "deadline": confirm["message"]["deadline"],
    }
    assert opened["totalPoint"] == str(TEN_KRW + TEN_KRW // 20)
    assert isinstance(confirm["message"]["deadline"], str) and int(confirm["message"]["deadline"]) > time.time()
    assert deny["message"] == {
        "paymentId": payment_id,
        "account": user.address,
        "deadline": confirm["message"]["deadline"],
    }

    user.approve(payment_id)
    assert item(relay.url, payment_id)["typedData"] is None
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
    assert item(relay.url, payment_id)["typedData"] is None

    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
    cancel = item(relay.url, payment_id)
    assert cancel["paymentStatus"] == S.CANCEL_RECEIVED and cancel["cancelTimestamp"]
    confirm, deny = cancel["typedData"]["confirm"], cancel["typedData"]["deny"]
    assert confirm["domain"] == deny["domain"] == chain_info["domains"]["payment"]
    assert (confirm["primaryType"], deny["primaryType"]) == ("CancelPayment", "DenyCancel")
    assert confirm["message"]["account"] == deny["message"]["account"] == owner.address
    assert confirm["message"]["nonce"] == str(payments.functions.nonces(owner.address).call())
    assert isinstance(confirm["message"]["deadline"], str)
    assert confirm["message"]["deadline"] == deny["message"]["deadline"]

    owner.approve(payment_id)
    assert item(relay.url, payment_id)["typedData"] is None
    ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, payment_id))
    assert item(relay.url, payment_id)["typedData"] is None


def test_item__unknown_payment__404_2001(relay):
    fails(call(relay.url, "GET", "/v1/payment/item", params={"paymentId": "0x" + secrets.token_hex(32)}), 404, 2001)


# ----------------------------------------------------------------------------- 5.2 / 5.3 new payment


def test_create_confirm__spec_fields__and_twice_with_the_same_signature_is_idempotent(
    relay, kiosk, user, shop_id, callbacks
):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    signature = user.sign(_typed(relay, payment_id)["confirm"])

    first = ok(decide(relay.url, "create/confirm", payment_id, signature))
    again = ok(decide(relay.url, "create/confirm", payment_id, signature))
    callbacks.wait_for(payment_id)  # the opening is mined and recorded
    later = ok(decide(relay.url, "create/confirm", payment_id, signature))

    assert_spec_fields(first, "5.2 create/confirm")
    assert first["paymentStatus"] == S.APPROVED and first["account"] == user.address
    assert first["txHash"].startswith("0x") and len(first["txHash"]) == 66
    assert again == first
    assert later == first
    closed = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
    assert closed["paymentStatus"] == S.COMPLETED


def test_create_deny__spec_fields_then_confirm__409_3001(relay, kiosk, user, shop_id, callbacks):
    before = balance_of(relay.url, user.address)
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    typed = _typed(relay, payment_id)

    denied = ok(decide(relay.url, "create/deny", payment_id, user.sign(typed["deny"])))

    assert_spec_fields(denied, "5.3 create/deny")
    assert denied["paymentStatus"] == S.DENIED
    fails(decide(relay.url, "create/confirm", payment_id, user.sign(typed["confirm"])), 409, 3001)
    fails(decide(relay.url, "create/deny", payment_id, user.sign(typed["deny"])), 409, 3001)
    assert item(relay.url, payment_id)["paymentStatus"] == S.DENIED
    assert [c.json["code"] for c in callbacks.wait_for(payment_id)] == [1001]
    assert balance_of(relay.url, user.address) == before


def test_create__signature_by_another_key__403_3002(relay, kiosk, user, other, shop_id):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    typed = _typed(relay, payment_id)

    fails(decide(relay.url, "create/confirm", payment_id, other.sign(typed["confirm"])), 403, 3002)
    fails(decide(relay.url, "create/deny", payment_id, other.sign(typed["deny"])), 403, 3002)

    assert item(relay.url, payment_id)["paymentStatus"] == S.NEW


def test_create__deny_signature_to_confirm_and_confirm_signature_to_deny__403(relay, kiosk, user, shop_id):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    typed = _typed(relay, payment_id)

    fails(decide(relay.url, "create/confirm", payment_id, user.sign(typed["deny"])), 403, 3002)
    fails(decide(relay.url, "create/deny", payment_id, user.sign(typed["confirm"])), 403, 3002)

    assert item(relay.url, payment_id)["paymentStatus"] == S.NEW
    assert ok(decide(relay.url, "create/deny", payment_id, user.sign(typed["deny"])))["paymentStatus"] == S.DENIED


def test_create_confirm__signature_of_another_payment__403(relay, kiosk, user, shop_id):
    first = _open(relay, kiosk, user, shop_id)["paymentId"]
    second = _open(relay, kiosk, user, shop_id)["paymentId"]
    first_typed = _typed(relay, first)

    fails(decide(relay.url, "create/confirm", second, user.sign(first_typed["confirm"])), 403, 3002)
    fails(decide(relay.url, "create/deny", second, user.sign(first_typed["deny"])), 403, 3002)

    assert item(relay.url, second)["paymentStatus"] == S.NEW
    for payment_id in (first, second):
        user.deny(payment_id)


def test_create_confirm__two_payments_approved_back_to_back__both_open(relay, kiosk, shop_id, callbacks, new_wallet):
    """The second approval comes before the relay has processed the first one's receipt: its
    nonce must still be the one the contract expects."""
    wallet = new_wallet(relay, 100 * UNIT)
    first = _open(relay, kiosk, wallet, shop_id)["paymentId"]
    second = _open(relay, kiosk, wallet, shop_id)["paymentId"]

    assert wallet.approve(first).paymentStatus == S.APPROVED
    assert wallet.approve(second).paymentStatus == S.APPROVED

    assert [c.json["code"] for c in callbacks.wait_for(first)] == [0]
    assert [c.json["code"] for c in callbacks.wait_for(second)] == [0]
    for payment_id in (first, second):
        assert ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))["paymentStatus"] == S.COMPLETED
    assert balance_of(relay.url, wallet.address) == 100 * UNIT - 2 * (TEN_KRW + UNIT // 2)


@pytest.mark.parametrize(
    "signature",
    [
        "0x1234",  # too short
        "0x" + "zz" * 65,  # not hex
        "11" * 65,  # no 0x
        "0x" + "11" * 65,  # v = 17
        "0x" + "00" * 65,  # r = s = 0
        "0x" + "ff" * 65,  # s out of range
    ],
    ids=["short", "non-hex", "no-prefix", "bad-v", "zero", "s-out-of-range"],
)
def test_create_confirm__malformed_signature__400_1000(relay, kiosk, user, shop_id, signature):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    fails(decide(relay.url, "create/confirm", payment_id, signature), 400, 1000)
    fails(decide(relay.url, "create/deny", payment_id, signature), 400, 1000)
    assert item(relay.url, payment_id)["paymentStatus"] == S.NEW
    user.deny(payment_id)


# ----------------------------------------------------------------------------- 5.4 / 5.5 cancel


def test_cancel__wrong_signatures__403_and_the_cancel_stays_pending(relay, kiosk, user, owner, other, shop_id):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    approval = user.sign(_typed(relay, payment_id)["confirm"])
    ok(decide(relay.url, "create/confirm", payment_id, approval))
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
    typed = _typed(relay, payment_id)

    # The paying user, another wallet: not the shop owner.
    fails(decide(relay.url, "cancel/confirm", payment_id, user.sign(typed["confirm"])), 403, 3002)
    fails(decide(relay.url, "cancel/confirm", payment_id, other.sign(typed["confirm"])), 403, 3002)
    fails(decide(relay.url, "cancel/deny", payment_id, user.sign(typed["deny"])), 403, 3002)
    # The owner's deny as an approval and the other way round.
    fails(decide(relay.url, "cancel/confirm", payment_id, owner.sign(typed["deny"])), 403, 3002)
    fails(decide(relay.url, "cancel/deny", payment_id, owner.sign(typed["confirm"])), 403, 3002)
    # The user's NewPayment approval replayed as a cancel approval.
    fails(decide(relay.url, "cancel/confirm", payment_id, approval), 403, 3002)
    fails(decide(relay.url, "cancel/confirm", payment_id, "0x" + "11" * 65), 400, 1000)

    assert item(relay.url, payment_id)["paymentStatus"] == S.CANCEL_RECEIVED
    denied = ok(decide(relay.url, "cancel/deny", payment_id, owner.sign(typed["deny"])))
    assert_spec_fields(denied, "5.5 cancel/deny")
    assert denied["paymentStatus"] == S.CANCEL_DENIED
    fails(decide(relay.url, "cancel/confirm", payment_id, owner.sign(typed["confirm"])), 409, 3001)
    assert item(relay.url, payment_id)["paymentStatus"] == S.CANCEL_DENIED


def test_cancel_confirm__spec_fields__and_twice_with_the_same_signature_is_idempotent(
    relay, kiosk, user, owner, shop_id, callbacks
):
    payment_id = _completed(relay, kiosk, user, shop_id)["paymentId"]
    # Before openCancel there is nothing to decide.
    fails(decide(relay.url, "cancel/confirm", payment_id, "0x" + "11" * 64 + "1b"), 409, 3001)
    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
    signature = owner.sign(_typed(relay, payment_id)["confirm"])

    first = ok(decide(relay.url, "cancel/confirm", payment_id, signature))
    again = ok(decide(relay.url, "cancel/confirm", payment_id, signature))
    wait_until(lambda: [c for c in callbacks.for_payment(payment_id) if c.json["type"] == "cancel"])
    later = ok(decide(relay.url, "cancel/confirm", payment_id, signature))

    assert_spec_fields(first, "5.4 cancel/confirm")
    assert first["paymentStatus"] == S.CANCEL_APPROVED and first["txHash"].startswith("0x")
    assert again == first
    assert later == first
    assert ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, payment_id))["paymentStatus"] == S.CANCEL_COMPLETED


# ----------------------------------------------------------------------------- temporary accounts


def test_temporary_account__valid_60_s__usable_for_reads_until_open_new_uses_it(
    relay, kiosk, user, shop_id, purchase_id, chain_info
):
    deadline = int(time.time()) + 300
    signature = _signed(user, chain_info, "TemporaryAccount", account=user.address, deadline=deadline)
    started = time.time()

    data = ok(
        call(
            relay.url,
            "POST",
            "/v1/payment/account/temporary",
            json={"account": user.address, "deadline": deadline, "signature": signature},
        )
    )

    assert set(data) == {"account", "temporaryAccount", "expiresAt"}
    temporary = data["temporaryAccount"]
    assert data["account"] == user.address and temporary != user.address and is_checksum_address(temporary)
    assert started + 60 - 1 <= data["expiresAt"] <= time.time() + 60 + 1
    # Reads resolve it to the wallet, as often as the KIOSK likes, answering with the address it gave.
    for _ in range(2):
        answer = ok(call(relay.url, "GET", "/v1/payment/user/balance", params={"account": temporary}))
        assert answer["account"] == temporary and int(answer["balance"]) == balance_of(relay.url, user.address)
    params = {"account": temporary, "amount": str(TEN_KRW), "currency": "krw"}
    assert ok(call(relay.url, "GET", "/v1/payment/info", params=params))["totalPoint"] == str(TEN_KRW + UNIT // 2)

    opened = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, temporary))

    assert opened["account"] == temporary
    assert item(relay.url, opened["paymentId"])["account"] == user.address
    fails(open_new(relay.url, kiosk.access_key, purchase_id + "-2", TEN_KRW, shop_id, temporary), 404, 2003)
    fails(call(relay.url, "GET", "/v1/payment/user/balance", params={"account": temporary}), 404, 2003)
    user.deny(opened["paymentId"])


def test_temporary_account__past_deadline__403_3003(relay, user, chain_info):
    before = count_rows(relay, TemporaryAccount)
    deadline = int(time.time()) - 10
    signature = _signed(user, chain_info, "TemporaryAccount", account=user.address, deadline=deadline)
    body = {"account": user.address, "deadline": deadline, "signature": signature}

    fails(call(relay.url, "POST", "/v1/payment/account/temporary", json=body), 403, 3003)

    assert count_rows(relay, TemporaryAccount) == before


def test_temporary_account__signed_by_another_key__403_3002(relay, user, other, chain_info):
    before = count_rows(relay, TemporaryAccount)
    deadline = int(time.time()) + 300
    signature = _signed(other, chain_info, "TemporaryAccount", account=user.address, deadline=deadline)
    body = {"account": user.address, "deadline": deadline, "signature": signature}

    fails(call(relay.url, "POST", "/v1/payment/account/temporary", json=body), 403, 3002)

    assert count_rows(relay, TemporaryAccount) == before


# ----------------------------------------------------------------------------- push and live stream


def _pushed(expo, token, payment_id):
    return _pushed_to(expo.messages, token, payment_id)


def _pushed_to(messages, token, payment_id):
    return [m for m in messages if m.get("to") == token and m.get("data", {}).get("paymentId") == payment_id]


def test_push_token__a_new_payment_is_pushed_to_it(relay, kiosk, shop_id, expo, new_wallet):
    wallet = new_wallet(relay, 100 * UNIT)
    token = f"ExponentPushToken[{secrets.token_hex(11)}]"

    registered = wallet.register_push_token(token)
    assert (registered.account, registered.token) == (wallet.address, token)
    payment = _open(relay, kiosk, wallet, shop_id)

    [message] = wait_until(lambda: _pushed(expo, token, payment["paymentId"]))
    assert message["title"] == "Approve a payment"
    assert message["data"]["kind"] == "payment.new" and message["data"]["account"] == wallet.address
    assert message["data"]["totalPoint"] == payment["totalPoint"]
    wallet.deny(payment["paymentId"])


def test_push_token__signed_by_another_key__403_3002(relay, user, other, chain_info):
    deadline = int(time.time()) + 300
    token = f"ExponentPushToken[{secrets.token_hex(11)}]"
    signature = _signed(other, chain_info, "RegisterPushToken", account=user.address, token=token, deadline=deadline)
    body = {"account": user.address, "token": token, "deadline": deadline, "signature": signature}
    fails(call(relay.url, "POST", "/v1/payment/push/token", json=body), 403, 3002)


def test_push__expo_down__the_payment_still_completes(relay, kiosk, shop_id, expo, new_wallet):
    wallet = new_wallet(relay, 100 * UNIT)
    token = f"ExponentPushToken[{secrets.token_hex(11)}]"
    wallet.register_push_token(token)
    expo.fail = True
    try:
        payment_id = _open(relay, kiosk, wallet, shop_id)["paymentId"]
        assert wallet.approve(payment_id).paymentStatus == S.APPROVED
        closed = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))

        def all_tried():
            with session_of(relay) as session:
                rows = session.execute(select(Notification.pushed).where(Notification.payment_id == payment_id))
                flags = list(rows.scalars())
            # A notification is marked before it is sent: it has been tried once Expo refused it.
            return flags and all(flags) and len(_pushed_to(expo.refused, token, payment_id)) == len(flags)

        wait_until(all_tried)  # the relay tried, and failed, to push every notification
    finally:
        expo.fail = False
    assert closed["paymentStatus"] == S.COMPLETED
    assert balance_of(relay.url, wallet.address) == 100 * UNIT - TEN_KRW - UNIT // 2
    assert _pushed(expo, token, payment_id) == []


def _sse_events(response, until, timeout=15.0):
    """Reads server-sent events until `until(event)` holds; returns them."""
    events, current = [], {}
    deadline = time.monotonic() + timeout
    for line in response.iter_lines():
        if line:
            field, _, value = line.partition(":")
            current[field] = value.removeprefix(" ")
            continue
        if current.get("event"):
            events.append(current)
            if until(current):
                return events
        current = {}
        assert time.monotonic() < deadline, f"no matching event within {timeout} s: {events}"
    raise AssertionError(f"stream ended: {events}")


def test_events__stream_a_notification_for_a_new_payment(relay, kiosk, shop_id, new_wallet):
    wallet = new_wallet(relay, 100 * UNIT)
    params = wallet.stream_params(ttl=60)
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as http,
        http.stream("GET", f"{relay.url}/v1/payment/events", params=params) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        payment = _open(relay, kiosk, wallet, shop_id)

        events = _sse_events(response, lambda e: json.loads(e["data"]).get("paymentId") == payment["paymentId"])

    [event] = events
    data = json.loads(event["data"])
    assert event["event"] == "payment.new" and int(event["id"]) > 0
    assert (data["account"], data["totalPoint"], data["purchaseId"]) == (
        wallet.address,
        payment["totalPoint"],
        payment["purchaseId"],
    )
    wallet.deny(payment["paymentId"])


def test_events__signed_by_another_key__403_3002(relay, user, other):
    params = other.stream_params(ttl=60) | {"account": user.address}
    fails(call(relay.url, "GET", "/v1/payment/events", params=params), 403, 3002)
