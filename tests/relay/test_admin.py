"""The operator page against relay processes (issue 22): form tokens bound to the browser session,
a growing back-off after wrong log-ins, security headers on every answer (errors too), a transfer
recorded exactly once under concurrent submissions on SQLite and PostgreSQL, and a shop
registration approved in a real browser."""

from __future__ import annotations

import re
import secrets
import threading
import time
from typing import Any

import httpx
import pytest
from eth_account import Account
from playwright.sync_api import sync_playwright

from loyalty_sdk import AppClient, LoyaltyError
from relay.admin import Backoff
from relay.models import ShopRegistration, Withdrawal
from tests.relay.conftest import SIGNERS

PASSWORD = "op-" + secrets.token_hex(8)
HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def admin_relay(start_relay):
    started: dict[str, Any] = {}

    def get(backend: str = "sqlite") -> Any:
        if backend not in started:
            started[backend] = start_relay(
                f"admin-{backend}", backend=backend, signer=SIGNERS["spare"], admin_password=PASSWORD
            )
        return started[backend]

    return get


def secured(response: httpx.Response) -> httpx.Response:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.status_code, name, response.headers)
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    return response


def new_withdrawal(relay: Any) -> int:
    db = relay.db()
    try:
        with db.session() as session:
            row = Withdrawal(
                shop_id="0x" + secrets.token_hex(32), amount="1", opened_tx="0x" + secrets.token_hex(32), opened_block=1
            )
            session.add(row)
            session.flush()
            return int(row.id)
    finally:
        db.engine.dispose()


def recorded(relay: Any, withdrawal_id: int) -> str | None:
    db = relay.db()
    try:
        with db.session() as session:
            row = session.get(Withdrawal, withdrawal_id)
            assert row is not None
            return row.transfer_reference
    finally:
        db.engine.dispose()


def operator(relay: Any) -> tuple[httpx.Client, str]:
    """A browser session of the operator: its client (with the session cookie) and its form token."""
    client = httpx.Client(base_url=relay.url, auth=("admin", PASSWORD), timeout=60)
    page = secured(client.get("/admin"))
    assert page.status_code == 200 and client.cookies.get("admin_session")
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token is not None, "the page has no form"
    return client, token.group(1)


def test_form_token__another_session_s_refused__its_own_accepted_once(admin_relay):
    relay = admin_relay()
    withdrawal = new_withdrawal(relay)
    first, first_token = operator(relay)
    second, second_token = operator(relay)
    assert first_token != second_token
    path = f"/admin/withdrawals/{withdrawal}/transfer"

    stolen = secured(second.post(path, data={"reference": "BANK-1", "csrf": first_token}))
    cookieless = httpx.Client(base_url=relay.url, auth=("admin", PASSWORD))
    no_cookie = cookieless.post(path, data={"reference": "BANK-1", "csrf": first_token})
    forged = second.post(path, data={"reference": "BANK-1", "csrf": "ab" * 32})
    not_hex = second.post(path, data={"reference": "BANK-1", "csrf": "é" * 64})

    assert [r.status_code for r in (stolen, no_cookie, forged, not_hex)] == [403, 403, 403, 403]
    assert recorded(relay, withdrawal) is None
    blank = secured(first.post(path, data={"reference": " ", "csrf": first_token}))
    assert blank.status_code == 400 and recorded(relay, withdrawal) is None
    assert first.post(path, data={"reference": "BANK-1", "csrf": first_token}).status_code == 303
    assert recorded(relay, withdrawal) == "BANK-1"
    again = secured(second.post(path, data={"reference": "BANK-2", "csrf": second_token}))
    assert again.status_code == 409 and recorded(relay, withdrawal) == "BANK-1"
    unknown = secured(first.post("/admin/withdrawals/999999/transfer", data={"reference": "X", "csrf": first_token}))
    assert unknown.status_code == 404
    not_a_number = secured(first.post("/admin/withdrawals/1e3/transfer", data={"reference": "X", "csrf": first_token}))
    assert not_a_number.status_code == 404 and secured(first.get("/admin/nothing-here")).status_code == 404


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_transfer_recorded__concurrent_submissions__exactly_one_succeeds(admin_relay, backend):
    relay = admin_relay(backend)
    withdrawal = new_withdrawal(relay)
    client, token = operator(relay)
    start = threading.Barrier(12)
    answers: dict[str, int] = {}

    def submit(reference: str) -> None:
        start.wait()
        path = f"/admin/withdrawals/{withdrawal}/transfer"
        answers[reference] = client.post(path, data={"reference": reference, "csrf": token}).status_code

    threads = [threading.Thread(target=submit, args=(f"BANK-{i}",)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(answers.values()) == [303] + [409] * 11, answers
    [winner] = [reference for reference, status in answers.items() if status == 303]
    assert recorded(relay, withdrawal) == winner


def test_shop_registration__approved_in_the_browser__then_sent(admin_relay):
    relay = admin_relay()
    owner = AppClient(relay.url, Account.create().key)
    shop_id = "0x" + secrets.token_hex(32)
    with pytest.raises(LoyaltyError) as pending:
        owner.add_shop(shop_id, "Browser Shop", 0, 100)
    assert pending.value.code == 3012
    other, other_token = operator(relay)
    path = f"/admin/shops/{shop_id}/approve"
    assert secured(httpx.post(relay.url + path, data={"csrf": other_token})).status_code == 401  # no log-in
    assert secured(other.post(path, data={"csrf": "00" * 32})).status_code == 403  # not its session's token
    nothing_pending = other.post(f"/admin/shops/{'0x' + '11' * 32}/approve", data={"csrf": other_token})
    assert secured(nothing_pending).status_code == 409

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(http_credentials={"username": "admin", "password": PASSWORD})
        page = context.new_page()
        page.goto(f"{relay.url}/admin")
        row = page.locator(f"tr.shop-request[data-shop='{shop_id}']")
        assert "Browser Shop" in row.inner_text() and owner.address in row.inner_text()
        row.locator("button", has_text="Approve").click()
        page.wait_for_url("**/admin#shop-requests")
        assert page.locator(f"tr.shop-request[data-shop='{shop_id}']").count() == 0
        browser.close()

    db = relay.db()
    try:
        with db.session() as session:
            decision = session.get(ShopRegistration, shop_id)
            assert decision is not None and (decision.status, decision.decided_by) == ("approved", "admin")
    finally:
        db.engine.dispose()
    added = owner.add_shop(shop_id, "Browser Shop", 0, 100)
    assert (added.shopId, added.account) == (shop_id, owner.address)


def _log_in(relay: Any, user: str, password: str, ip: str) -> httpx.Response:
    # uvicorn takes the client address from X-Forwarded-For when the peer is 127.0.0.1 (a local proxy).
    return secured(httpx.get(f"{relay.url}/admin", auth=(user, password), headers={"X-Forwarded-For": ip}))


def _retry_after(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    return int(response.headers["retry-after"])


def test_wrong_passwords__per_client_ip__429_with_a_growing_retry_after__success_resets(admin_relay):
    relay = admin_relay()
    ip = "198.51.100.20"
    assert [_log_in(relay, f"guess-{i}", "wrong", ip).status_code for i in range(4)] == [401] * 4
    first = _retry_after(_log_in(relay, "guess-4", "wrong", ip))
    assert first >= 1
    assert _retry_after(_log_in(relay, "admin", PASSWORD, ip))  # the right password waits too
    assert _log_in(relay, "admin", PASSWORD, "198.51.100.21").status_code == 200  # another address does not

    time.sleep(first)
    second = _retry_after(_log_in(relay, "guess-5", "wrong", ip))
    assert second > first
    time.sleep(second)
    assert _log_in(relay, "admin", PASSWORD, ip).status_code == 200
    assert _log_in(relay, "guess-6", "wrong", ip).status_code == 401  # counted from zero again


def test_wrong_passwords__per_user_name__from_many_addresses__429(admin_relay):
    relay = admin_relay()
    answers = [_log_in(relay, "admin", "wrong", f"203.0.113.{i}").status_code for i in range(5)]
    assert answers == [401] * 4 + [429]
    wait = _retry_after(_log_in(relay, "admin", PASSWORD, "203.0.113.50"))
    time.sleep(wait)
    assert _log_in(relay, "admin", PASSWORD, "203.0.113.50").status_code == 200


def test_backoff__per_user_name_a_minute_at_most__per_address_up_to_an_hour():
    """Anyone can fail under the operator's name: that wait stays short; an address's grows."""
    backoff = Backoff()
    for _ in range(20):
        backoff.failed(["user:admin"])
        backoff.failed(["ip:198.51.100.9"])
    assert 55 <= backoff.wait(["user:admin"]) <= 60
    assert backoff.wait(["ip:198.51.100.9"]) > 3000


def test_answers_made_outside_the_page__malformed_log_in_and_wrong_method__carry_its_headers(admin_relay):
    relay = admin_relay()
    malformed = secured(httpx.get(f"{relay.url}/admin", headers={"Authorization": "Basic !!!not-base64"}))
    assert malformed.status_code == 401 and "WWW-Authenticate" in malformed.headers
    assert secured(httpx.put(f"{relay.url}/admin", auth=("admin", PASSWORD))).status_code == 405
