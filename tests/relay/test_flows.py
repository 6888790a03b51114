"""Flows 1.1-1.4 end to end: KIOSK and app over HTTP, the relay on anvil, signed callbacks."""

from __future__ import annotations

import time

from relay.models import PaymentStatus as S
from tests.relay.conftest import UNIT, wait_until

TEN_KRW = 10 * UNIT


def test_flow_1_1__user_approves__payment_completes_and_kiosk_gets_signed_callback(
    kiosk, user, shop_id, callbacks, purchase_id
):
    before = int(kiosk.client.balance(user.address).balance)
    qr = user.temporary_account()

    info = kiosk.client.info(qr.temporaryAccount, TEN_KRW, "krw")
    assert (info.paidPoint, info.feePoint, info.totalPoint) == (str(10 * UNIT), str(UNIT // 2), str(21 * UNIT // 2))
    assert (info.paidToken, info.feeToken, info.totalToken) == ("0", "0", "0")

    opened = kiosk.client.open_new(purchase_id, TEN_KRW, "krw", shop_id, qr.temporaryAccount)
    assert opened.paymentStatus == S.NEW
    assert opened.account == qr.temporaryAccount  # the KIOSK never sees the wallet

    item = user.item(opened.paymentId)
    assert item.account == user.address
    assert item.typedData is not None and item.typedData.confirm["primaryType"] == "NewPayment"

    approved = user.approve(opened.paymentId)
    assert approved.paymentStatus == S.APPROVED and approved.txHash.startswith("0x")

    [callback] = callbacks.wait_for(opened.paymentId)
    body = callback.json
    assert callback.verified
    assert (body["type"], body["code"]) == ("create", 0)
    assert body["data"]["totalPoint"] == str(21 * UNIT // 2)
    assert body["data"]["balance"] == str(before - 21 * UNIT // 2)
    assert body["data"]["account"] == qr.temporaryAccount

    closed = kiosk.client.close_new(opened.paymentId)
    assert closed.paymentStatus == S.COMPLETED and closed.closeNewTimestamp
    assert int(kiosk.client.balance(user.address).balance) == before - 21 * UNIT // 2


def test_flow_1_2__user_denies__nothing_moves_and_kiosk_gets_1001(kiosk, user, shop_id, callbacks, purchase_id):
    before = kiosk.client.balance(user.address).balance
    opened = kiosk.client.open_new(purchase_id, TEN_KRW, "krw", shop_id, user.address)

    denied = user.deny(opened.paymentId)

    assert denied.paymentStatus == S.DENIED
    [callback] = callbacks.wait_for(opened.paymentId)
    assert callback.verified and (callback.json["type"], callback.json["code"]) == ("create", 1001)
    assert kiosk.client.balance(user.address).balance == before


def _completed_payment(kiosk, user, shop_id, purchase_id, currency="krw", amount=TEN_KRW):
    opened = kiosk.client.open_new(purchase_id, amount, currency, shop_id, user.address)
    user.approve(opened.paymentId)
    return kiosk.client.close_new(opened.paymentId)


def test_flow_1_3__owner_approves_cancel__user_refunded(kiosk, user, owner, shop_id, callbacks, purchase_id):
    before = int(kiosk.client.balance(user.address).balance)
    used_before = int(kiosk.client.shop_info(shop_id).usedPoint)
    payment = _completed_payment(kiosk, user, shop_id, purchase_id)
    assert int(kiosk.client.shop_info(shop_id).usedPoint) == used_before + TEN_KRW

    cancel = kiosk.client.open_cancel(payment.paymentId)
    assert cancel.paymentStatus == S.CANCEL_RECEIVED
    assert owner.item(payment.paymentId).typedData.confirm["primaryType"] == "CancelPayment"

    approved = owner.approve(payment.paymentId)
    assert approved.paymentStatus == S.CANCEL_APPROVED
    cancel_callbacks = wait_until(
        lambda: [c for c in callbacks.for_payment(payment.paymentId) if c.json["type"] == "cancel"]
    )
    assert [(c.json["code"], c.verified) for c in cancel_callbacks] == [(0, True)]

    done = kiosk.client.close_cancel(payment.paymentId)
    assert done.paymentStatus == S.CANCEL_COMPLETED and done.closeCancelTimestamp
    assert int(kiosk.client.balance(user.address).balance) == before
    assert int(kiosk.client.shop_info(shop_id).usedPoint) == used_before


def test_flow_1_4__owner_denies_cancel__payment_stands_and_can_be_cancelled_later(
    kiosk, user, owner, shop_id, callbacks, purchase_id
):
    payment = _completed_payment(kiosk, user, shop_id, purchase_id)
    after_payment = kiosk.client.balance(user.address).balance
    kiosk.client.open_cancel(payment.paymentId)

    denied = owner.deny(payment.paymentId)

    assert denied.paymentStatus == S.CANCEL_DENIED
    cancel_callbacks = wait_until(
        lambda: [c for c in callbacks.for_payment(payment.paymentId) if c.json["type"] == "cancel"]
    )
    assert [(c.json["code"], c.verified) for c in cancel_callbacks] == [(1001, True)]
    assert kiosk.client.balance(user.address).balance == after_payment
    # Later the owner accepts a second request.
    assert kiosk.client.open_cancel(payment.paymentId).paymentStatus == S.CANCEL_RECEIVED
    owner.approve(payment.paymentId)
    assert kiosk.client.close_cancel(payment.paymentId).paymentStatus == S.CANCEL_COMPLETED


def test_token_user__pays_in_tokens_at_the_token_rate(kiosk, token_user, shop_id, callbacks, purchase_id):
    before = int(kiosk.client.balance(token_user.address).balance)
    # 1 USD = 1,350 points = 13.5 THE9 at 100 points per THE9; the fee is 5 %.
    opened = kiosk.client.open_new(purchase_id, UNIT, "usd", shop_id, token_user.address)
    assert opened.loyaltyType == 1
    assert (opened.paidToken, opened.feeToken, opened.paidPoint) == (str(27 * UNIT // 2), str(675 * UNIT // 1000), "0")

    token_user.approve(opened.paymentId)
    [callback] = callbacks.wait_for(opened.paymentId)
    assert callback.json["data"]["totalToken"] == str(27 * UNIT // 2 + 675 * UNIT // 1000)
    kiosk.client.close_new(opened.paymentId)

    assert int(kiosk.client.balance(token_user.address).balance) == before - (27 * UNIT // 2 + 675 * UNIT // 1000)


def test_approvals__kiosk_called_back_as_soon_as_the_chain_has_executed_them(
    kiosk, user, owner, shop_id, callbacks, purchase_id
):
    """The KIOSK waits for the approval's callback before it closes: it must come once the
    transaction is mined (milliseconds on this chain), not when a background sweep finds it."""
    opened = kiosk.client.open_new(purchase_id, TEN_KRW, "krw", shop_id, user.address)
    user.approve(opened.paymentId)
    approved_at = time.time()
    [callback] = callbacks.wait_for(opened.paymentId)
    assert (callback.json["type"], callback.json["code"]) == ("create", 0)
    assert callback.at - approved_at < 1.0

    kiosk.client.close_new(opened.paymentId)
    kiosk.client.open_cancel(opened.paymentId)
    owner.approve(opened.paymentId)
    approved_at = time.time()
    [cancel] = wait_until(lambda: [c for c in callbacks.for_payment(opened.paymentId) if c.json["type"] == "cancel"])
    assert cancel.json["code"] == 0
    assert cancel.at - approved_at < 1.0
