"""No input and no concurrency gets a 5xx (each case was found by trying the relay as a client
would): concurrent identical approvals, concurrent cancel approvals, amounts the contracts cannot
add up, concurrent identical purchase reports, concurrent identical payments on one temporary
address."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from relay.models import Payment, Purchase
from relay.models import PaymentStatus as S
from tests.relay.checks import call, decide, fails, item, kiosk_post, ok, open_new, session_of
from tests.relay.conftest import UNIT

MAX_UINT256 = 2**256 - 1


def _all(requests: int, send):
    with ThreadPoolExecutor(requests) as pool:
        return list(pool.map(lambda _: send(), range(requests)))


def _no_server_error(responses: list[httpx.Response]) -> None:
    assert all(r.status_code < 500 for r in responses), [r.text for r in responses if r.status_code >= 500]


def test_confirm__twenty_identical_at_once__one_approval_each_answered_with_its_transaction(
    relay, kiosk, user, shop_id
):
    payment_id = ok(
        open_new(relay.url, kiosk.access_key, f"C-{secrets.token_hex(4)}", 10 * UNIT, shop_id, user.address)
    )["paymentId"]
    signature = user.sign(item(relay.url, payment_id)["typedData"]["confirm"])

    answers = _all(20, lambda: decide(relay.url, "create/confirm", payment_id, signature))

    _no_server_error(answers)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    assert len({r.json()["data"]["txHash"] for r in answers}) == 1  # one transaction
    assert ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))["paymentStatus"] == S.COMPLETED


def test_cancel_confirm__ten_identical_at_once__all_answered_none_refused(relay, kiosk, user, owner, shop_id):
    payment_id = ok(
        open_new(relay.url, kiosk.access_key, f"K-{secrets.token_hex(4)}", 10 * UNIT, shop_id, user.address)
    )["paymentId"]
    user.approve(payment_id)
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
    signature = owner.sign(item(relay.url, payment_id)["typedData"]["confirm"])

    answers = _all(10, lambda: decide(relay.url, "cancel/confirm", payment_id, signature))

    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert len({r.json()["data"]["txHash"] for r in answers}) == 1
    closed = ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, payment_id))
    assert closed["paymentStatus"] == S.CANCEL_COMPLETED


@pytest.mark.parametrize("request_kind", ["info", "openNew", "purchase"])
def test_amount_the_contracts_cannot_add_up__400_not_500(relay, kiosk, user, shop_id, request_kind):
    if request_kind == "info":
        params = {"account": user.address, "amount": str(MAX_UINT256), "currency": "usd"}
        response = call(relay.url, "GET", "/v1/payment/info", params=params)
    elif request_kind == "openNew":
        response = open_new(
            relay.url, kiosk.access_key, f"O-{secrets.token_hex(4)}", MAX_UINT256, shop_id, user.address, "usd"
        )
    else:
        body = {"accessKey": kiosk.access_key, "purchaseId": f"U-{secrets.token_hex(4)}", "amount": str(MAX_UINT256)}
        body |= {"currency": "usd", "shopId": shop_id, "account": user.address}
        response = call(relay.url, "POST", "/v1/payment/purchase", json=body)
    assert "out of range" in fails(response, 400, 1000)


def test_purchase__thirty_identical_reports_at_once__one_purchase_all_answered(relay, kiosk, user, shop_id):
    purchase_id = f"R-{secrets.token_hex(4)}"
    body = {"accessKey": kiosk.access_key, "purchaseId": purchase_id, "amount": str(100 * UNIT), "currency": "krw"}
    body |= {"shopId": shop_id, "account": user.address}

    answers = _all(30, lambda: call(relay.url, "POST", "/v1/payment/purchase", json=body))

    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    with session_of(relay) as session:
        assert session.query(Purchase).filter_by(shop_id=shop_id, purchase_id=purchase_id).count() == 1


def test_open_new__thirty_identical_on_one_temporary_address__one_payment_all_answered(relay, kiosk, user, shop_id):
    temporary = user.temporary_account().temporaryAccount
    purchase_id = f"T-{secrets.token_hex(4)}"

    answers = _all(30, lambda: open_new(relay.url, kiosk.access_key, purchase_id, 10 * UNIT, shop_id, temporary))

    assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    assert len({r.json()["data"]["paymentId"] for r in answers}) == 1
    with session_of(relay) as session:
        assert session.query(Payment).filter_by(shop_id=shop_id, purchase_id=purchase_id).count() == 1
