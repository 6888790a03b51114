"""What the relay says when a contract refuses what it submits: the charge the user signed (the fee
moved past maxTotal, the account switched loyalty type), a shop's credit limit, the day's reward
cap, and closes after the escrow expired (on a chain of its own, whose clock the test moves).
Every refusal is a clear 409 with its own code, or for what runs in the background a failed status
and a callback or purchase error that says why."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from eth_account import Account

from loyalty_sdk import AppClient, LoyaltyError
from relay import chain as onchain
from relay import typed_data
from relay.devnet import anvil_key, deploy, start_anvil, stop
from relay.models import PaymentStatus as S
from tests.relay.approval import add_approved_shop
from tests.relay.checks import (
    balance_of,
    call,
    contract,
    decide,
    fails,
    item,
    kiosk_post,
    ok,
    open_new,
    payment_on_chain,
    sqlite_only,
)
from tests.relay.conftest import OWNER, POINT_USER, SIGNERS, UNIT, address, free_port, wait_until

TEN_KRW = 10 * UNIT
DAY = 24 * 3600


def _open(relay, kiosk, wallet, shop_id, amount=TEN_KRW) -> dict[str, Any]:
    return ok(open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", amount, shop_id, wallet.address))


def _as_admin(fn: Any) -> None:
    """Sends a contract call from anvil account 0, the deployment's admin (and granter, rate setter)."""
    tx = fn.transact({"from": address(0)})
    assert fn.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


@contextlib.contextmanager
def _fee_rate(anvil: str, deployment: dict[str, Any], rate: int) -> Iterator[None]:
    payments = contract(anvil, deployment, "LoyaltyPayment")
    before = payments.functions.feeRate().call()
    _as_admin(payments.functions.setFeeRate(rate))
    try:
        yield
    finally:
        _as_admin(payments.functions.setFeeRate(before))


# ----------------------------------------------------------------------------- the signed charge


@sqlite_only
def test_fee_raised_after_open__confirm_409_3007_status_10_and_callback_1002_with_both_totals(
    relay, kiosk, shop_id, callbacks, new_wallet, anvil, deployment
):
    wallet = new_wallet(relay, 100 * UNIT)
    payment_id = _open(relay, kiosk, wallet, shop_id)["paymentId"]
    confirm = item(relay.url, payment_id)["typedData"]["confirm"]
    max_total = confirm["message"]["maxTotal"]
    assert max_total == str(TEN_KRW * 105 // 100)

    with _fee_rate(anvil, deployment, 600):
        message = fails(decide(relay.url, "create/confirm", payment_id, wallet.sign(confirm)), 409, 3007)

    charged = str(TEN_KRW * 106 // 100)
    assert "Rates or the fee moved past what the user signed" in message and charged in message and max_total in message
    assert item(relay.url, payment_id)["paymentStatus"] == S.FAILED
    [callback] = callbacks.wait_for(payment_id)
    assert callback.verified and (callback.json["type"], callback.json["code"]) == ("create", 1002)
    assert "Rates or the fee moved" in callback.json["message"] and max_total in callback.json["message"]
    assert balance_of(relay.url, wallet.address) == 100 * UNIT
    assert payment_on_chain(anvil, deployment, payment_id)["status"] == onchain.NONE


@pytest.fixture(scope="module")
def tolerant_relay(start_relay):
    relay = start_relay("tolerance", signer=SIGNERS["spare"], charge_tolerance_bps=100)
    yield relay
    relay.stop()


def test_tolerance__max_total_raised_by_it__a_fee_move_within_it_is_charged(
    tolerant_relay, make_kiosk, shop_id, new_wallet, anvil, deployment
):
    kiosk = make_kiosk(tolerant_relay, [shop_id])
    wallet = new_wallet(tolerant_relay, 100 * UNIT)
    opened = _open(tolerant_relay, kiosk, wallet, shop_id)
    confirm = item(tolerant_relay.url, opened["paymentId"])["typedData"]["confirm"]
    assert confirm["message"]["maxTotal"] == str(int(opened["totalPoint"]) * 10_100 // 10_000)

    with _fee_rate(anvil, deployment, 550):  # 10.55 points, within 1 % of 10.5
        wallet.approve(opened["paymentId"])
        closed = ok(kiosk_post(tolerant_relay.url, "closeNew", kiosk.access_key, opened["paymentId"]))

    assert (closed["paymentStatus"], closed["totalPoint"]) == (S.COMPLETED, str(TEN_KRW * 1055 // 1000))
    assert balance_of(tolerant_relay.url, wallet.address) == 100 * UNIT - TEN_KRW * 1055 // 1000


@sqlite_only
@pytest.mark.parametrize("opened_with", ["wallet", "temporary address"])
def test_account_switched_to_tokens_after_open__confirm_409_3008_and_status_10(
    relay, kiosk, shop_id, callbacks, new_wallet, anvil, deployment, opened_with
):
    wallet = new_wallet(relay, 100 * UNIT)
    given = wallet.address if opened_with == "wallet" else wallet.temporary_account().temporaryAccount
    payment_id = ok(open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, given))[
        "paymentId"
    ]
    signature = wallet.sign(wallet.item(payment_id).typedData.confirm)
    ledger = contract(anvil, deployment, "Ledger")
    deadline = int(time.time()) + 600
    switch = typed_data.build(
        "SwitchToToken",
        typed_data.domain("Ledger", deployment["chainId"], ledger.address),
        {
            "account": wallet.address,
            "minToken": 0,
            "nonce": ledger.functions.nonces(wallet.address).call(),
            "deadline": deadline,
        },
    )
    _as_admin(ledger.functions.switchToTokenFor(wallet.address, 0, deadline, wallet.sign(switch)))

    message = fails(decide(relay.url, "create/confirm", payment_id, signature), 409, 3008)

    assert "now pays in loyalty type 1" in message and "switched" in message
    assert item(relay.url, payment_id)["paymentStatus"] == S.FAILED
    [callback] = callbacks.wait_for(payment_id)
    assert (callback.json["code"], callback.json["type"]) == (1002, "create") and "switched" in callback.json["message"]
    if opened_with == "temporary address":  # the KIOSK learns nothing of the wallet behind it
        assert wallet.address.lower() not in callback.body.lower() and given in callback.json["message"] + str(
            callback.json["data"]
        )


# ----------------------------------------------------------------------------- shop credit limit, reward cap


@sqlite_only
def test_credit_limit__reward_fails_and_cancel_409_3010_with_the_limit(
    relay, make_kiosk, callbacks, new_wallet, anvil, deployment
):
    """A shop with a credit limit of 0 may hand out only what its customers spent there: the reward
    that takes its debt above 0 fails, and so does the cancel that would (the payment stands)."""
    owner = AppClient(relay.url, Account.create().key)
    shop_id = "0x" + secrets.token_hex(32)
    add_approved_shop(relay, owner, shop_id, "Credit Shop", 0, 100)  # 1 % rewards, at once
    _as_admin(contract(anvil, deployment, "ShopRegistry").functions.setCreditLimit(shop_id, 0))
    kiosk = make_kiosk(relay, [shop_id])
    wallet = new_wallet(relay, 100 * UNIT)
    payment_id = _open(relay, kiosk, wallet, shop_id)["paymentId"]  # the shop's used total: 10
    wallet.approve(payment_id)
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))

    kiosk.client.report_purchase("CASH-1", 1_000 * UNIT, "krw", shop_id, wallet.address)  # provides 10: debt 0
    assert wait_until(lambda: kiosk.client.purchase(shop_id, "CASH-1").provideStatus == 1)
    kiosk.client.report_purchase("CASH-2", 100 * UNIT, "krw", shop_id, wallet.address)  # 1 more: debt 1
    refused = wait_until(lambda: (p := kiosk.client.purchase(shop_id, "CASH-2")).provideStatus == 2 and p)
    assert f"Shop {shop_id} would owe {UNIT} points, beyond its credit limit of 0" in (refused.error or "")

    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
    signature = owner.sign(item(relay.url, payment_id)["typedData"]["confirm"])
    message = fails(decide(relay.url, "cancel/confirm", payment_id, signature), 409, 3010)

    assert f"would owe {TEN_KRW} points, beyond its credit limit of 0" in message
    assert item(relay.url, payment_id)["paymentStatus"] == S.COMPLETED
    callback = wait_until(lambda: [c for c in callbacks.for_payment(payment_id) if c.json["type"] == "cancel"])[0]
    assert callback.json["code"] == 1002 and "credit limit" in callback.json["message"]
    assert payment_on_chain(anvil, deployment, payment_id)["status"] == onchain.CLOSED


@sqlite_only
def test_reward_cap_reached__the_purchase_waits_for_the_next_utc_day_and_says_why(
    relay, kiosk, shop_id, user, anvil, deployment
):
    ledger = contract(anvil, deployment, "Ledger")
    limit, remaining = ledger.functions.rewardCap().call()
    _as_admin(ledger.functions.setRewardCap(limit - remaining))  # nothing left today
    try:
        kiosk.client.report_purchase("CAPPED", 1_000 * UNIT, "krw", shop_id, user.address)
        waiting = wait_until(lambda: (p := kiosk.client.purchase(shop_id, "CAPPED")).error and p)
    finally:
        _as_admin(ledger.functions.setRewardCap(limit))

    assert waiting.provideStatus == 0 and "cap of purchase rewards is reached" in (waiting.error or "")
    assert "resets at 00:00 UTC" in (waiting.error or "")
    assert waiting.provideTimestamp == (int(time.time()) // DAY + 1) * DAY


# ----------------------------------------------------------------------------- expired escrow


@pytest.fixture(scope="module")
def own_chain(tmp_path_factory) -> Iterator[tuple[str, dict[str, Any]]]:
    """A chain of its own with the contracts and the demo fixture (its clock is moved ahead)."""
    work = tmp_path_factory.mktemp("own-chain")
    port = free_port()
    anvil = start_anvil(port, work / "anvil.log")
    try:
        url = f"http://127.0.0.1:{port}"
        path = work / "deployment.json"
        data = deploy(url, path, [address(0), address(SIGNERS["spare"])], work / "deploy.log")
        yield url, data | {"path": str(path)}
    finally:
        stop([anvil])


@pytest.fixture(scope="module")
def expiry_relay(start_relay, own_chain):
    url, deployment = own_chain
    relay = start_relay(
        "expiry", signer=SIGNERS["spare"], rpc_url=url, deployment_file=deployment["path"], close_timeout=15
    )
    yield relay
    relay.stop()


def test_escrow_expired__kiosk_close_409_3009_refund_only__and_the_relay_refunds_what_stays_unclosed(
    expiry_relay, own_chain, make_kiosk, callbacks
):
    url, deployment = own_chain
    relay, shop_id = expiry_relay, deployment["demo"]["shopId"]
    kiosk = make_kiosk(relay, [shop_id])
    user, owner = AppClient(relay.url, anvil_key(POINT_USER)), AppClient(relay.url, anvil_key(OWNER))
    balance = balance_of(relay.url, user.address)
    closed_by_kiosk, left_open, cancelled = (_open(relay, kiosk, user, shop_id)["paymentId"] for _ in range(3))
    for payment_id in (closed_by_kiosk, left_open, cancelled):
        user.approve(payment_id)
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, cancelled))
    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, cancelled))
    owner.approve(cancelled)

    # Past every escrow: an open payment's (1 day) and an opened cancel's (7-day cancel period + 1 day).
    w3 = contract(url, deployment, "Ledger").w3
    w3.provider.make_request("evm_increaseTime", [9 * DAY])
    w3.provider.make_request("evm_mine", [])

    message = fails(kiosk_post(relay.url, "closeNew", kiosk.access_key, closed_by_kiosk), 409, 3009)
    assert "only a refund to the user is possible" in message
    assert item(relay.url, closed_by_kiosk)["paymentStatus"] == S.APPROVED
    refunded = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, closed_by_kiosk, confirm=False))
    assert refunded["paymentStatus"] == S.REFUNDED

    fails(kiosk_post(relay.url, "closeCancel", kiosk.access_key, cancelled, confirm=False), 409, 3009)
    assert ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, cancelled))["paymentStatus"] == S.CANCEL_COMPLETED

    # The approved payment no one closed: the relay's timeout refunds it (a confirm could not pass).
    wait_until(lambda: item(relay.url, left_open)["paymentStatus"] == S.REFUNDED, timeout=40)
    assert payment_on_chain(url, deployment, left_open)["status"] == onchain.REFUNDED
    assert [c.json["code"] for c in callbacks.wait_for(left_open, count=2)] == [0, 2000]
    assert balance_of(relay.url, user.address) == balance


@sqlite_only
def test_shop_action_mined_after_another_took_the_owner_s_nonce__reverted__409_not_200(relay, anvil, deployment):
    """The relay's transaction passed its simulation, but another one carrying the owner's same
    registry nonce (sent straight to the contract, with a higher tip) is mined before it in the
    same block: it reverts, and its sender must hear so, not get a transaction hash. (Account 0
    holds the submitter role and signs for no relay of these tests.)"""
    owner_key = "0x" + secrets.token_hex(32)
    owner = AppClient(relay.url, owner_key)
    shop_id = "0x" + secrets.token_hex(32)
    add_approved_shop(relay, owner, shop_id, "Nonce Shop", 0, 100)
    fields = {"shopId": shop_id, "name": "Direct", "provideWaitTime": "0", "providePercent": "300"}
    typed = ok(call(relay.url, "GET", "/v1/payment/shop/typedData", params={"action": "UpdateShop", **fields}))
    registry = contract(anvil, deployment, "ShopRegistry")
    node = registry.w3.provider
    node.make_request("evm_setAutomine", [False])
    try:
        with ThreadPoolExecutor(1) as pool:
            update = pool.submit(owner.update_shop, shop_id, "Through the relay", 0, 200)
            wait_until(lambda: node.make_request("txpool_status", [])["result"]["pending"] != "0x0")
            direct = registry.functions.updateShop(
                shop_id, "Direct", 0, 300, int(typed["message"]["deadline"]), typed_data.sign(owner_key, typed)
            ).transact({"from": address(0), "maxPriorityFeePerGas": 10**11, "maxFeePerGas": 10**12, "gas": 400_000})
            node.make_request("evm_mine", [])
            outcome = update.exception(timeout=30) or update.result()
    finally:
        node.make_request("evm_setAutomine", [True])

    assert registry.w3.eth.get_transaction_receipt(direct)["status"] == 1
    assert isinstance(outcome, LoyaltyError), outcome
    assert outcome.code == 4002 and "reverted" in outcome.message, outcome.message
    assert ok(call(relay.url, "GET", "/v1/payment/shop/info", params={"shopId": shop_id}))["name"] == "Direct"
