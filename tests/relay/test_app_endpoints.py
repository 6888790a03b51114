"""Mobile app endpoints (spec §5 and DESIGN.md §4-§6): the payment item and the typed data it hands
out, signed decisions and every way a signature can be wrong, temporary addresses, push tokens, app
sessions and what a payment opened through a temporary address shows without one, single-use app
signatures, and the live notification stream. All on the SQLite relay (the database's part of single
use is in test_app_signatures.py)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_checksum_address
from sqlalchemy import select, update

from loyalty_sdk import AppClient
from relay import typed_data
from relay.devnet import anvil_key
from relay.models import AppSession, Notification, PushToken, TemporaryAccount
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
OTHER_WALLET = "0x" + "5a" * 20


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


def test_create_confirm__a_document_fetched_before_another_approval__403_says_to_fetch_it_again(
    relay, kiosk, shop_id, new_wallet
):
    wallet = new_wallet(relay, 100 * UNIT)
    first, second = (_open(relay, kiosk, wallet, shop_id)["paymentId"] for _ in range(2))
    stale = _typed(relay, second)["confirm"]
    wallet.approve(first)  # the wallet's payment nonce moves on

    message = fails(decide(relay.url, "create/confirm", second, wallet.sign(stale)), 403, 3002)

    assert "fetch it again" in message
    assert (
        ok(decide(relay.url, "create/confirm", second, wallet.sign(_typed(relay, second)["confirm"])))["paymentStatus"]
        == S.APPROVED
    )
    for payment_id in (first, second):
        ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))


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


CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _v_as_0_or_1(signature: bytes) -> bytes:
    return signature[:64] + bytes([signature[64] - 27])


def _high_s(signature: bytes) -> bytes:
    """The same signature's twin: s mirrored into the upper half, v flipped (valid for ecrecover)."""
    s = CURVE_ORDER - int.from_bytes(signature[32:64])
    return signature[:32] + s.to_bytes(32) + bytes([55 - signature[64]])


@pytest.mark.parametrize("form", [_v_as_0_or_1, _high_s], ids=["v-0-or-1", "high-s"])
def test_create_confirm__the_user_s_signature_in_a_form_the_contract_refuses__400_and_the_payment_waits(
    relay, kiosk, user, shop_id, callbacks, form
):
    """Both forms recover the user's address, but OpenZeppelin's ECDSA refuses them: taken, they
    would fail the payment on chain."""
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    signature = bytes.fromhex(user.sign(_typed(relay, payment_id)["confirm"])[2:])
    variant = "0x" + form(signature).hex()
    assert (
        Account.recover_message(encode_typed_data(full_message=_typed(relay, payment_id)["confirm"]), signature=variant)
        == user.address
    )

    refused = fails(decide(relay.url, "create/confirm", payment_id, variant), 400, 1000)

    assert "v 27 or 28" in refused and user.address not in refused
    assert item(relay.url, payment_id)["paymentStatus"] == S.NEW
    assert ok(decide(relay.url, "create/confirm", payment_id, "0x" + signature.hex()))["paymentStatus"] == S.APPROVED
    assert [c.json["code"] for c in callbacks.wait_for(payment_id)] == [0]
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))


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
    deadline = _deadline(100)
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
    assert item(relay.url, opened["paymentId"])["account"] == temporary  # the wallet only to its session
    assert user.item(opened["paymentId"]).account == user.address
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
    deadline = _deadline(100)
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
    deadline = _deadline(100)
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


def test_events__with_the_session_token__streams_a_notification_for_a_new_payment(relay, kiosk, shop_id, new_wallet):
    wallet = new_wallet(relay, 100 * UNIT)
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as http,
        http.stream("GET", f"{relay.url}/v1/payment/events", headers=wallet.auth_headers()) as response,
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


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def _session(relay, wallet, chain_info):
    """POST account/session with a fresh AppSession signature: the answer."""
    return call(relay.url, "POST", "/v1/payment/account/session", json=_signed_body(wallet, chain_info, "AppSession"))


def _token(relay, wallet, chain_info):
    return ok(_session(relay, wallet, chain_info))["token"]


def _names(response, wallet):
    """Whether an answer's text names the wallet anywhere (any case, with or without 0x)."""
    return wallet.address.lower()[2:] in response.text.lower()


def test_events__without_a_session_token__401_1004(relay, user, kiosk, chain_info):
    deadline = int(time.time()) + 120
    old_form = {"account": user.address, "deadline": deadline, "signature": "0x" + "11" * 65}
    fails(call(relay.url, "GET", "/v1/payment/events", params=old_form), 401, 1004)
    fails(call(relay.url, "GET", "/v1/payment/events", headers=_bearer(kiosk.access_key)), 401, 1004)
    fails(call(relay.url, "GET", "/v1/payment/events", headers=_bearer("as_" + secrets.token_urlsafe(32))), 401, 1004)


# ----------------------------------------------------------------------------- sessions and privacy (DESIGN.md §5)

# Each off-chain app signature: its endpoint, and the rows it adds.
SIGNED = {
    "TemporaryAccount": ("/v1/payment/account/temporary", TemporaryAccount),
    "RegisterPushToken": ("/v1/payment/push/token", PushToken),
    "AppSession": ("/v1/payment/account/session", AppSession),
}


_LAST_DEADLINE: dict[int, int] = {}


def _deadline(ahead):
    """`ahead` seconds from now, and not one signed before: each signed message is accepted once. (The SDK
    signs 120 s ahead: its messages never meet these.)"""
    deadline = _LAST_DEADLINE[ahead] = max(int(time.time()) + ahead, _LAST_DEADLINE.get(ahead, 0) + 1)
    return deadline


def _signed_body(wallet, chain_info, primary_type, ahead=100):
    extra = {"token": f"ExponentPushToken[{secrets.token_hex(11)}]"} if primary_type == "RegisterPushToken" else {}
    message = {"account": wallet.address, "deadline": _deadline(ahead), **extra}
    return message | {"signature": _signed(wallet, chain_info, primary_type, **message)}


def test_session__a_token_for_an_hour_stored_only_as_its_hash(relay, other, chain_info):
    started = time.time()
    data = ok(_session(relay, other, chain_info))

    assert set(data) == {"account", "token", "expiresAt"} and data["account"] == other.address
    assert data["token"].startswith("as_") and len(data["token"]) >= 40
    assert started + 3600 - 1 <= data["expiresAt"] <= time.time() + 3600 + 1
    with session_of(relay) as session:
        [stored] = session.execute(select(AppSession).where(AppSession.account == other.address)).scalars()
    assert stored.token_hash == hashlib.sha256(data["token"].encode()).hexdigest()


@pytest.mark.parametrize("primary_type", list(SIGNED))
def test_app_signature__replayed__403_3002_and_nothing_more_done(relay, other, chain_info, primary_type):
    path, model = SIGNED[primary_type]
    body = _signed_body(other, chain_info, primary_type)
    ok(call(relay.url, "POST", path, json=body))
    before = count_rows(relay, model)

    message = fails(call(relay.url, "POST", path, json=body), 403, 3002)

    assert "already used" in message
    assert count_rows(relay, model) == before


@pytest.mark.parametrize("primary_type", list(SIGNED))
def test_app_signature__deadline_over_5_minutes_ahead__400_1000(relay, other, chain_info, primary_type):
    path, model = SIGNED[primary_type]
    before = count_rows(relay, model)

    message = fails(
        call(relay.url, "POST", path, json=_signed_body(other, chain_info, primary_type, ahead=330)), 400, 1000
    )

    assert "300 seconds" in message
    assert count_rows(relay, model) == before
    ok(call(relay.url, "POST", path, json=_signed_body(other, chain_info, primary_type, ahead=290)))


def test_item__through_a_temporary_address__names_the_wallet_only_to_its_session(
    relay, kiosk, user, other, shop_id, purchase_id, chain_info, callbacks
):
    temporary = user.temporary_account().temporaryAccount
    payment_id = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, temporary))["paymentId"]
    params = {"paymentId": payment_id}

    # Anyone holding the payment id (the KIOSK, whatever it sends as a credential, another wallet).
    for headers in ({}, _bearer(kiosk.access_key), _bearer(_token(relay, other, chain_info))):
        answer = call(relay.url, "GET", "/v1/payment/item", params=params, headers=headers)
        data = ok(answer)
        assert (data["account"], data["typedData"], data["paymentStatus"]) == (temporary, None, S.NEW)
        assert not _names(answer, user), answer.text
    # The wallet's own session: the full view, with the documents to sign.
    own = ok(
        call(relay.url, "GET", "/v1/payment/item", params=params, headers=_bearer(_token(relay, user, chain_info)))
    )
    assert own["account"] == user.address
    assert own["typedData"]["confirm"]["message"]["account"] == user.address

    user.deny(payment_id)
    [callback] = callbacks.wait_for(payment_id)
    assert callback.json["data"]["account"] == temporary and user.address.lower()[2:] not in callback.body.lower()
    assert not _names(call(relay.url, "GET", "/v1/payment/item", params=params), user)


def test_decision_refused__through_a_temporary_address__the_refusal_names_no_wallet(
    relay, kiosk, user, other, shop_id, purchase_id
):
    temporary = user.temporary_account().temporaryAccount
    payment_id = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, temporary))["paymentId"]
    typed = user.item(payment_id).typedData

    refused = [
        decide(relay.url, path, payment_id, signature)
        for path in ("create/confirm", "create/deny")
        for signature in (other.sign(typed.confirm), other.sign(typed.deny), "0x" + "11" * 65)
    ]

    assert [r.status_code for r in refused] == [403, 403, 400] * 2
    assert not [r.text for r in refused if _names(r, user)]
    user.deny(payment_id)


def test_item__session_token_unknown_or_expired__401_1004(relay, user, kiosk, shop_id, chain_info):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]  # readable without a token (spec 5.1)
    params = {"paymentId": payment_id}
    assert ok(call(relay.url, "GET", "/v1/payment/item", params=params))["account"] == user.address
    token = _token(relay, user, chain_info)
    assert ok(call(relay.url, "GET", "/v1/payment/item", params=params, headers=_bearer(token)))["typedData"]

    fails(call(relay.url, "GET", "/v1/payment/item", params=params, headers=_bearer(token + "x")), 401, 1004)
    with session_of(relay) as session:
        hashed = hashlib.sha256(token.encode()).hexdigest()
        session.execute(update(AppSession).where(AppSession.token_hash == hashed).values(expires_at=time.time() - 1))
    fails(call(relay.url, "GET", "/v1/payment/item", params=params, headers=_bearer(token)), 401, 1004)
    fails(call(relay.url, "GET", "/v1/payment/events", headers=_bearer(token)), 401, 1004)
    user.deny(payment_id)


def test_session__ended__its_token_refused_401_1004(relay, user, kiosk, shop_id, chain_info):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    params = {"paymentId": payment_id}
    token = _token(relay, user, chain_info)
    ok(call(relay.url, "GET", "/v1/payment/item", params=params, headers=_bearer(token)))

    ended = ok(call(relay.url, "DELETE", "/v1/payment/account/session", headers=_bearer(token)))

    assert ended == {"account": user.address}
    fails(call(relay.url, "GET", "/v1/payment/item", params=params, headers=_bearer(token)), 401, 1004)
    fails(call(relay.url, "GET", "/v1/payment/events", headers=_bearer(token)), 401, 1004)
    fails(call(relay.url, "DELETE", "/v1/payment/account/session", headers=_bearer(token)), 401, 1004)
    fails(call(relay.url, "DELETE", "/v1/payment/account/session"), 401, 1004)
    user.deny(payment_id)


def test_cancel_through_a_temporary_address__the_owner_decides_without_seeing_the_wallet(
    relay, kiosk, user, owner, shop_id, purchase_id, chain_info, callbacks
):
    temporary = user.temporary_account().temporaryAccount
    payment_id = ok(open_new(relay.url, kiosk.access_key, purchase_id, TEN_KRW, shop_id, temporary))["paymentId"]
    user.approve(payment_id)
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
    params = {"paymentId": payment_id}
    assert item(relay.url, payment_id)["typedData"] is None

    served = call(
        relay.url, "GET", "/v1/payment/item", params=params, headers=_bearer(_token(relay, owner, chain_info))
    )
    typed = ok(served)["typedData"]
    assert (
        typed["confirm"]["primaryType"] == "CancelPayment" and typed["confirm"]["message"]["account"] == owner.address
    )
    assert not _names(served, user), served.text
    approved = decide(relay.url, "cancel/confirm", payment_id, owner.sign(typed["confirm"]))
    assert ok(approved)["account"] == temporary and not _names(approved, user)

    closed = ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, payment_id))
    assert closed["paymentStatus"] == S.CANCEL_COMPLETED
    sent = callbacks.wait_for(payment_id, count=2)
    assert all(user.address.lower()[2:] not in c.body.lower() for c in sent)


def _notifications(relay, account, count):
    with session_of(relay) as session:
        rows = [Notification(account=account, kind="payment.test", payload={"n": i}, pushed=1) for i in range(count)]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def test_events__last_event_id_0__resumes_at_most_the_wallet_s_100_latest(relay, chain_info):
    wallet = AppClient(relay.url, "0x" + secrets.token_hex(32))
    ids = _notifications(relay, wallet.address, 105)
    _notifications(relay, OTHER_WALLET, 3)  # another wallet's, after
    [last] = _notifications(relay, wallet.address, 1)
    headers = wallet.auth_headers() | {"Last-Event-ID": "0"}

    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as http,
        http.stream("GET", f"{relay.url}/v1/payment/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        events = _sse_events(response, lambda e: int(e["id"]) == last)

    assert [int(e["id"]) for e in events] == [*ids[-99:], last]
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as http,
        http.stream(
            "GET", f"{relay.url}/v1/payment/events", headers=headers | {"Last-Event-ID": str(ids[-2])}
        ) as response,
    ):
        events = _sse_events(response, lambda e: int(e["id"]) == last)
    assert [int(e["id"]) for e in events] == [ids[-1], last]


def test_session_token__in_no_log_line_and_no_other_answer(relay, user, kiosk, shop_id, chain_info):
    token = _token(relay, user, chain_info)
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    answers = [
        call(relay.url, "GET", "/v1/payment/item", params={"paymentId": payment_id}, headers=_bearer(token)),
        call(relay.url, "GET", "/v1/payment/item", params={"paymentId": payment_id}, headers=_bearer(token + "x")),
        call(relay.url, "GET", "/v1/payment/events", headers=_bearer(token[:-1])),
    ]
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as http,
        http.stream("GET", f"{relay.url}/v1/payment/events", headers=_bearer(token)) as response,
    ):
        assert response.status_code == 200
    user.deny(payment_id)

    assert [a.status_code for a in answers] == [200, 401, 401]
    assert not any(token[3:-1] in a.text for a in answers)
    assert token[3:-1] not in relay.log.read_text()
