"""Rate limits (429 with Retry-After, per client address, KIOSK and wallet, in memory or shared in
Redis), the Prometheus metrics and JSON logs, against real relay processes."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
import redis

from loyalty_sdk import AppClient
from relay.models import Notification, Payment
from tests.relay.checks import call, count_rows, fails, ok, open_new, session_of
from tests.relay.conftest import UNIT
from tests.relay.test_app_endpoints import SIGNED, _signed_body

TEN_KRW = 10 * UNIT


def limited(answer: httpx.Response) -> int:
    """Checks a 429 answer; returns its Retry-After."""
    fails(answer, 429, 1003)
    retry_after = int(answer.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    return retry_after


def test_client_address__past_its_limit__429_with_retry_after(start_relay):
    relay = start_relay("limit-client", rate_limit_client="5/minute")

    answers = [httpx.get(f"{relay.url}/v1/payment/chain") for _ in range(6)]

    served = [a.status_code for a in answers].count(200)  # the start-up's own probes counted too
    assert 1 <= served <= 5 and [a.status_code for a in answers[:served]] == [200] * served
    for answer in answers[served:]:
        limited(answer)


def test_kiosk__past_its_limit__429_and_another_kiosk_still_served(start_relay, make_kiosk, shop_id, user):
    relay = start_relay("limit-kiosk", rate_limit_kiosk="3/minute")
    busy, other = make_kiosk(relay, [shop_id]), make_kiosk(relay, [shop_id])

    def report(kiosk):
        return open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, user.address)

    for _ in range(3):
        ok(report(busy))
    limited(report(busy))
    ok(report(other))
    with session_of(relay) as session:
        assert session.query(Payment).filter_by(kiosk_id=busy.id).count() == 3


def test_wallet__payments_opened_for_it_past_the_limit__429_no_payment_no_notification(
    start_relay, make_kiosk, shop_id, user, token_user
):
    relay = start_relay("limit-wallet", rate_limit_wallet="2/minute")
    kiosk = make_kiosk(relay, [shop_id])

    def report(wallet):
        return open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, wallet.address)

    ok(report(user))
    ok(report(user))
    limited(report(user))
    ok(report(token_user))  # another wallet is not held back
    with session_of(relay) as session:
        assert session.query(Payment).filter_by(account=user.address).count() == 2
        assert session.query(Notification).filter_by(account=user.address, kind="payment.new").count() == 2


def test_wallet_limit_in_redis__counted_across_two_relay_instances(start_relay, shop_id):
    try:
        redis.Redis(socket_timeout=2).ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not listening on 127.0.0.1:6379 (it is part of the test environment)")
    shared = {"rate_limit_wallet": "3/minute", "rate_limit_storage": "redis://127.0.0.1:6379"}
    first = start_relay("limit-redis-1", **shared)
    second = start_relay("limit-redis-2", db_url=first.db_url, **shared)
    wallet = AppClient(first.url, "0x" + secrets.token_hex(32))  # fresh: no earlier run counted it
    chain_info = ok(call(first.url, "GET", "/v1/payment/chain"))
    path, _ = SIGNED["TemporaryAccount"]

    answers = [
        call(relay.url, "POST", path, json=_signed_body(wallet, chain_info, "TemporaryAccount"))
        for relay in (first, second, first, second)
    ]

    assert [a.status_code for a in answers[:3]] == [200] * 3, [a.text for a in answers]
    limited(answers[3])


def test_wallet__kiosks_asking_for_it_past_the_limit__the_wallet_s_own_actions_still_served(
    start_relay, make_kiosk, shop_id, new_wallet
):
    """Payment requests KIOSKs open for a wallet count apart from what the wallet signs itself, and
    only those that reach it: one refused for its balance counts for nothing."""
    relay = start_relay("limit-wallet-apart", rate_limit_wallet="2/minute")
    kiosk = make_kiosk(relay, [shop_id])
    wallet = new_wallet(relay, 2 * TEN_KRW)
    chain_info = ok(call(relay.url, "GET", "/v1/payment/chain"))

    def report(amount):
        return open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", amount, shop_id, wallet.address)

    fails(report(100 * TEN_KRW), 422, 3004)
    ok(report(TEN_KRW))
    ok(report(TEN_KRW))
    limited(report(TEN_KRW))
    for primary_type in ("TemporaryAccount", "AppSession"):
        path, _ = SIGNED[primary_type]
        ok(call(relay.url, "POST", path, json=_signed_body(wallet, chain_info, primary_type)))


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_metrics__requests_payments_rpc_callbacks_signers_indexer(relay, kiosk, user, shop_id):
    before = _samples(httpx.get(f"{relay.url}/metrics").text)
    opened = 'relay_requests_total{route="/v1/payment/openNew",status="200"}'

    ok(open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, user.address))
    fails(open_new(relay.url, "wrong-key", f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, user.address), 401, 1001)
    answer = httpx.get(f"{relay.url}/metrics")

    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    after = _samples(answer.text)
    assert after[opened] == before.get(opened, 0) + 1
    assert after['relay_requests_total{route="/v1/payment/openNew",status="401"}'] >= 1
    assert after['relay_payments{status="1"}'] >= 1
    calls = 'relay_rpc_seconds_count{method="eth_call"}'
    assert after[calls] > before.get(calls, 0)
    assert after["relay_chain_up"] == 1
    assert after["relay_indexer_lag_blocks"] >= 0
    signers = {k: v for k, v in after.items() if k.startswith("relay_signer_balance_eth{")}
    assert len(signers) == 1 and next(iter(signers.values())) > 0
    assert any(k.startswith("relay_signer_unmined{") for k in after)
    assert "relay_callbacks" in answer.text and "relay_callback_delivery_seconds_bucket" in answer.text


def test_metrics__payments_gauge_counts_the_table(relay, kiosk, user, shop_id):
    ok(open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, user.address))
    scraped = _samples(httpx.get(f"{relay.url}/metrics").text)

    assert sum(v for k, v in scraped.items() if k.startswith("relay_payments{")) == count_rows(relay, Payment)


def test_metrics__with_a_token__401_without_it(start_relay):
    relay = start_relay("metrics-token", metrics_token="scrape-secret")

    fails(httpx.get(f"{relay.url}/metrics"), 401, 1001)
    fails(httpx.get(f"{relay.url}/metrics", headers={"Authorization": "Bearer wrong"}), 401, 1001)
    answer = httpx.get(f"{relay.url}/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert answer.status_code == 200 and "relay_requests_total" in answer.text


def test_json_logs__one_object_per_line(start_relay):
    relay = start_relay("json-logs", log_format="json")
    httpx.get(f"{relay.url}/v1/payment/item", params={"paymentId": "0x" + "00" * 32})

    lines = [line for line in relay.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) == len(lines), lines[:5]
    assert any(r.get("message", "").startswith("relay ready") for r in records)
    assert all({"levelname", "name", "message"} <= set(r) for r in records)


def test_admin_page__refused_at_the_edge__still_with_its_security_headers(start_relay):
    relay = start_relay("admin-edge", rate_limit_client="3/minute", admin_password="edge-secret")
    big = httpx.post(f"{relay.url}/admin/withdrawals/1/transfer", content=b"x" * (65 * 1024))

    fails(big, 413, 1000)
    assert big.headers["X-Frame-Options"] == "DENY"
    answers = [httpx.get(f"{relay.url}/admin") for _ in range(4)]
    assert answers[-1].status_code == 429 and answers[-1].headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in answers[-1].headers["Content-Security-Policy"]


def test_limit_store_unreachable__requests_served_uncounted_one_warning(start_relay):
    relay = start_relay("limit-store-down", rate_limit_client="2/minute", rate_limit_storage="redis://127.0.0.1:1")

    answers = [httpx.get(f"{relay.url}/v1/payment/chain", timeout=10) for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5
    assert relay.log.read_text().count("rate limits not counted") == 1


def test_client_address__an_ipv6_subscriber_s_whole_64_counts_as_one(start_relay):
    relay = start_relay("limit-ipv6", rate_limit_client="2/minute")

    def get(client: str) -> httpx.Response:  # the relay trusts X-Forwarded-For from 127.0.0.1 (a local proxy)
        return httpx.get(f"{relay.url}/v1/payment/chain", headers={"X-Forwarded-For": client})

    assert [get(c).status_code for c in ("2001:db8:0:1::1", "2001:db8:0:1::2")] == [200, 200]
    limited(get("2001:db8:0:1:ffff::3"))  # the same /64
    assert get("2001:db8:0:2::1").status_code == 200  # another subscriber
    assert [get("::ffff:192.0.2.7").status_code, get("192.0.2.7").status_code] == [200, 200]
    limited(get("::ffff:192.0.2.7"))  # an IPv4 client, however the proxy writes it, is one client


@pytest.mark.parametrize("setting", ["rate_limit_client", "rate_limit_kiosk", "rate_limit_wallet"])
def test_rate_setting__not_a_rate__refused_at_start_naming_it(setting):
    from pydantic import ValidationError

    from relay.config import Settings

    with pytest.raises(ValidationError, match=f"(?s){setting}.*not a rate such as 20/minute"):
        Settings(**{setting: "twenty a minute"})
    assert getattr(Settings(**{setting: ""}), setting) == ""  # no limit
