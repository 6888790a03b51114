"""The relay's reward limits on reported purchases (per purchase, per KIOSK and per shop in a UTC day),
against real relay processes: a KIOSK key cannot create loyalty beyond them."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from eth_account import Account

from loyalty_sdk import AppClient
from relay.models import PaymentStatus as S
from relay.models import Purchase
from tests.relay.approval import add_approved_shop
from tests.relay.checks import balance_of, call, contract, count_rows, fails, kiosk_post, ok, open_new, session_of
from tests.relay.conftest import SIGNERS, UNIT, wait_until

HUNDRED_KRW = 100 * UNIT
WAIT = 8  # the test shops' provideWaitTime: room to raise the rate between the reports and the payout


def report(
    relay, kiosk, shop_id: str, account: str, amount: int = HUNDRED_KRW, purchase_id: str | None = None
) -> httpx.Response:
    body = {"purchaseId": purchase_id or f"P-{secrets.token_hex(6)}", "amount": str(amount), "currency": "krw"}
    body |= {"shopId": shop_id, "account": account, "accessKey": kiosk.access_key}
    return call(relay.url, "POST", "/v1/payment/purchase", json=body)


def new_shop(relay, percent: int) -> tuple[AppClient, str]:
    """A shop of a new owner, approved, paying `percent` / 100 % after WAIT seconds."""
    owner, shop_id = AppClient(relay.url, Account.create().key), "0x" + secrets.token_hex(32)
    add_approved_shop(relay, owner, shop_id, "Rate Shop", WAIT, percent)
    return owner, shop_id


def settled(kiosk, shop_id: str, purchase_id: str):
    """The purchase once the rewards worker has provided it or given it up."""
    return wait_until(lambda: (p := kiosk.client.purchase(shop_id, purchase_id)).provideStatus != 0 and p, 60)


def expected_point(relay, shop_id: str, purchase_id: str) -> int:
    with session_of(relay) as session:
        stored = session.get(Purchase, (shop_id, purchase_id))
        assert stored is not None
        return int(stored.expected_point)


@pytest.fixture(scope="module")
def reward(anvil, deployment, shop_id) -> int:
    """The points a purchase of HUNDRED_KRW at the demo shop earns, as the contracts compute it."""
    points = contract(anvil, deployment, "CurrencyRate").functions.toPoint(HUNDRED_KRW, "krw").call()
    percent = contract(anvil, deployment, "ShopRegistry").functions.shopOf(shop_id).call()[3]
    assert points * percent // 10_000 > 0
    return points * percent // 10_000


def test_purchase__of_10_to_the_30__422_3015_nothing_stored(relay, kiosk, user, shop_id):
    before = count_rows(relay, Purchase)

    message = fails(report(relay, kiosk, shop_id, user.address, amount=10**30), 422, 3015)

    assert "a purchase may" in message
    assert count_rows(relay, Purchase) == before


def test_purchase__stores_the_reward_expected_at_its_report(relay, kiosk, user, shop_id, reward):
    data = ok(report(relay, kiosk, shop_id, user.address))

    with relay.db().session() as session:
        stored = session.get(Purchase, (shop_id, data["purchaseId"]))
        assert stored is not None and int(stored.expected_point) == reward


def test_kiosk_daily_limit__the_report_past_it_refused_another_kiosk_served(
    start_relay, make_kiosk, shop_id, user, reward
):
    relay = start_relay("reward-limit-kiosk", reward_limit_kiosk_day=2 * reward + reward // 2)
    busy, other = make_kiosk(relay, [shop_id]), make_kiosk(relay, [shop_id])

    ok(report(relay, busy, shop_id, user.address))
    ok(report(relay, busy, shop_id, user.address))
    assert "KIOSK" in fails(report(relay, busy, shop_id, user.address), 422, 3015)
    ok(report(relay, other, shop_id, user.address))
    assert count_rows(relay, Purchase, Purchase.kiosk_id == busy.id) == 2


def test_shop_daily_limit__counts_every_kiosk_of_the_shop(start_relay, make_kiosk, shop_id, user, reward):
    relay = start_relay("reward-limit-shop", reward_limit_shop_day=2 * reward + reward // 2)
    one, two = make_kiosk(relay, [shop_id]), make_kiosk(relay, [shop_id])

    ok(report(relay, one, shop_id, user.address))
    ok(report(relay, two, shop_id, user.address))
    assert "shop" in fails(report(relay, two, shop_id, user.address), 422, 3015)
    assert count_rows(relay, Purchase) == 2


def test_purchase__earning_no_points__400_1000_nothing_stored(relay, kiosk, user, shop_id):
    before = count_rows(relay, Purchase)

    message = fails(report(relay, kiosk, shop_id, user.address, amount=1), 400, 1000)

    assert "earn no points" in message
    assert count_rows(relay, Purchase) == before


def test_shop_rate_raised_before_the_payout__a_reward_past_a_purchase_limit_fails_one_within_is_paid(relay, make_kiosk):
    """The ledger pays the shop's percent at payout: reported at 0.01 %, paid at 100 %, a 200,000 KRW
    purchase would be credited 200,000 points, twice what a purchase may earn."""
    owner, shop_id = new_shop(relay, 0)
    kiosk, buyer = make_kiosk(relay, [shop_id]), Account.create().address
    assert "earn no points" in fails(report(relay, kiosk, shop_id, buyer), 400, 1000)  # at 0 %
    owner.update_shop(shop_id, "Rate Shop", WAIT, 1)

    small = ok(report(relay, kiosk, shop_id, buyer, amount=1_000 * UNIT))["purchaseId"]  # 0.1 point
    large = ok(report(relay, kiosk, shop_id, buyer, amount=200_000 * UNIT))["purchaseId"]  # 20 points
    reported = time.time()
    owner.update_shop(shop_id, "Rate Shop", WAIT, 10_000)
    assert time.time() < reported + WAIT, "the rate was raised after the payout: the test proves nothing"

    refused, paid = settled(kiosk, shop_id, large), settled(kiosk, shop_id, small)
    assert balance_of(relay.url, buyer) == 1_000 * UNIT  # 201,000 points if the risen rate were paid
    assert refused.provideStatus == 2 and refused.txHash is None
    assert "reward rate" in refused.error and "a purchase may" in refused.error
    assert (paid.provideStatus, paid.providedPoint) == (1, str(1_000 * UNIT))
    assert expected_point(relay, shop_id, small) == 1_000 * UNIT


def test_shop_rate_raised_before_the_payout__the_daily_limit_counts_each_reward_at_its_new_value(
    start_relay, make_kiosk
):
    relay = start_relay("reward-rate-rise", signer=SIGNERS["spare"], reward_limit_shop_day=1_010 * UNIT)
    owner, shop_id = new_shop(relay, 1)
    kiosk, buyer = make_kiosk(relay, [shop_id]), Account.create().address
    first = ok(report(relay, kiosk, shop_id, buyer, amount=100_000 * UNIT))["purchaseId"]  # 10 points
    second = ok(report(relay, kiosk, shop_id, buyer, amount=100_000 * UNIT))["purchaseId"]
    reported = time.time()
    owner.update_shop(shop_id, "Rate Shop", WAIT, 100)  # 1,000 points each
    assert time.time() < reported + WAIT, "the rate was raised after the payout: the test proves nothing"

    # The first reaches the limit exactly (1,000 + the second's 10): its own 10 admitted count no more.
    assert settled(kiosk, shop_id, first).provideStatus == 1
    refused = settled(kiosk, shop_id, second)
    assert refused.provideStatus == 2 and "reward rate" in refused.error and "daily limit of" in refused.error
    assert balance_of(relay.url, buyer) == 1_000 * UNIT
    assert (expected_point(relay, shop_id, first), expected_point(relay, shop_id, second)) == (1_000 * UNIT, 10 * UNIT)


def test_purchase_and_open_new_of_one_purchase_concurrently__never_a_payment_and_a_reward(relay, kiosk, user, shop_id):
    """Both may be accepted (nothing locks one against the other): the payment then stands, and the
    rewards worker refuses the reward."""
    for _ in range(5):
        purchase_id = f"R-{secrets.token_hex(6)}"
        with ThreadPoolExecutor(2) as pool:
            reported = pool.submit(report, relay, kiosk, shop_id, user.address, HUNDRED_KRW, purchase_id)
            opened = pool.submit(open_new, relay.url, kiosk.access_key, purchase_id, HUNDRED_KRW, shop_id, user.address)
        reported, opened = reported.result(), opened.result()
        completed = False
        if opened.status_code == 200:
            payment_id = opened.json()["data"]["paymentId"]
            user.approve(payment_id)
            closed = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
            completed = closed["paymentStatus"] == S.COMPLETED
        else:
            fails(opened, 409, 3005)
        if reported.status_code == 200:
            purchase = settled(kiosk, shop_id, purchase_id)
            assert not (completed and purchase.provideStatus == 1), f"{purchase_id}: paid with loyalty and rewarded"
            if completed:
                assert (purchase.provideStatus, purchase.error) == (2, "The purchase has a loyalty payment.")
        else:
            fails(reported, 409, 3001)
