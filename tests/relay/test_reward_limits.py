"""The relay's reward limits on reported purchases (per purchase, per KIOSK and per shop in a UTC day),
against real relay processes: a KIOSK key cannot create loyalty beyond them."""

from __future__ import annotations

import secrets

import httpx
import pytest

from relay.models import Purchase
from tests.relay.checks import call, contract, count_rows, fails, ok
from tests.relay.conftest import UNIT

HUNDRED_KRW = 100 * UNIT


def report(relay, kiosk, shop_id: str, account: str, amount: int = HUNDRED_KRW) -> httpx.Response:
    body = {"purchaseId": f"P-{secrets.token_hex(6)}", "amount": str(amount), "currency": "krw"}
    body |= {"shopId": shop_id, "account": account, "accessKey": kiosk.access_key}
    return call(relay.url, "POST", "/v1/payment/purchase", json=body)


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
