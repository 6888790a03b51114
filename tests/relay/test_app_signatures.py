"""Single-use app signatures where it takes the database's word for it: on PostgreSQL, and across
two relay instances sharing one database, the same signed message sent to both at once is accepted
by one and refused (403, 3002) by the other. (The SQLite relay's refusals are in
test_app_endpoints.py.)"""

from __future__ import annotations

import secrets
import threading

import httpx
import pytest

from loyalty_sdk import AppClient
from relay.models import AppSession, TemporaryAccount
from tests.relay.checks import call, count_rows, fails, ok
from tests.relay.conftest import RelayProcess
from tests.relay.test_app_endpoints import SIGNED, _signed_body


@pytest.fixture(scope="module")
def pg_relay(relays) -> RelayProcess:
    return relays("postgresql")


@pytest.fixture(scope="module")
def chain_info(pg_relay):
    return ok(call(pg_relay.url, "GET", "/v1/payment/chain"))


@pytest.mark.parametrize("primary_type", list(SIGNED))
def test_replayed_on_postgresql__403_3002(pg_relay, chain_info, primary_type):
    wallet = AppClient(pg_relay.url, "0x" + secrets.token_hex(32))
    path, model = SIGNED[primary_type]
    body = _signed_body(wallet, chain_info, primary_type)
    ok(call(pg_relay.url, "POST", path, json=body))
    before = count_rows(pg_relay, model)

    assert "already used" in fails(call(pg_relay.url, "POST", path, json=body), 403, 3002)
    assert count_rows(pg_relay, model) == before


def test_two_instances__the_same_signature_sent_to_both_at_once__accepted_once(start_relay, new_database, chain_info):
    db_url = new_database("postgresql")
    pair = [start_relay(f"signatures-{name}", db_url=db_url) for name in "ab"]
    wallet = AppClient(pair[0].url, "0x" + secrets.token_hex(32))
    try:
        statuses = _sent_to_both_at_once(pair, wallet, chain_info)
    finally:
        for relay in pair:
            relay.stop()
    assert statuses == [[200, 403]] * 8
    assert count_rows(pair[0], TemporaryAccount) == 4  # its database, the relay stopped
    assert count_rows(pair[0], AppSession) == 4


def _sent_to_both_at_once(pair, wallet, chain_info):
    """Each of 8 signed messages posted to both relays at the same moment: the HTTP statuses, sorted."""
    statuses = []
    for primary_type in ["TemporaryAccount", "AppSession"] * 4:
        path, _ = SIGNED[primary_type]
        body = _signed_body(wallet, chain_info, primary_type)
        start = threading.Barrier(2)
        answers: list[int] = []

        def send(relay: RelayProcess, body=body, path=path, start=start, answers=answers) -> None:
            with httpx.Client(timeout=30) as http:
                start.wait()
                answers.append(http.post(f"{relay.url}{path}", json=body).status_code)

        threads = [threading.Thread(target=send, args=(relay,)) for relay in pair]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        statuses.append(sorted(answers))
    return statuses
