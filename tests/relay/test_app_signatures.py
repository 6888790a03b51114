"""Single-use app signatures where it takes the database's word for it: on PostgreSQL, and across
two relay instances sharing one database, the same signed message sent to both at once is accepted
by one and refused (403, 3002) by the other (the SQLite relay's refusals are in
test_app_endpoints.py); and what is kept of them, and of sessions, only until it expires."""

from __future__ import annotations

import secrets
import threading
import time
from types import SimpleNamespace

import httpx
import pytest
from eth_account import Account
from sqlalchemy import select

from loyalty_sdk import AppClient
from relay import db as database
from relay import typed_data
from relay.config import Settings
from relay.models import AppSession, TemporaryAccount, UsedSignature
from relay.services.wallets import GRACE, TEMPORARY_KEPT, Wallets
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


def test_expired_sessions_signatures_and_temporary_accounts__deleted_with_the_next_signed_action(tmp_path):
    url = f"sqlite:///{tmp_path / 'relay.sqlite3'}"
    database.upgrade(url)
    db = database.Database(url)
    domain = typed_data.domain(typed_data.PAYMENT_DOMAIN, 31337, "0x" + "ab" * 20)
    wallets = Wallets(db, SimpleNamespace(payment_domain=lambda: domain), Settings(database_url=url))
    now = time.time()
    with db.session() as session:
        session.add_all(
            [
                AppSession(token_hash="a" * 64, account="0x" + "11" * 20, expires_at=now - 1),
                AppSession(token_hash="b" * 64, account="0x" + "11" * 20, expires_at=now + 600),
                UsedSignature(digest="0x" + "aa" * 32, expires_at=now - 1),
                UsedSignature(digest="0x" + "bb" * 32, expires_at=now + 600),
                TemporaryAccount(
                    address="0x" + "c1" * 20, account="0x" + "11" * 20, expires_at=now - TEMPORARY_KEPT - 1
                ),
                TemporaryAccount(address="0x" + "c2" * 20, account="0x" + "11" * 20, expires_at=now - 60),
            ]
        )
    wallet = Account.create()
    deadline = int(now) + 60
    message = {"account": wallet.address, "deadline": deadline}
    signature = typed_data.sign(wallet.key, typed_data.build("TemporaryAccount", domain, message))

    wallets.temporary_account(wallet.address, deadline, signature)

    with db.session() as session:
        sessions = set(session.execute(select(AppSession.token_hash)).scalars())
        used = {row.digest: row.expires_at for row in session.execute(select(UsedSignature)).scalars()}
        temporary = set(session.execute(select(TemporaryAccount.address)).scalars())
    db.engine.dispose()
    assert sessions == {"b" * 64}
    assert "0x" + "aa" * 32 not in used and "0x" + "bb" * 32 in used
    assert sorted(used.values())[0] == deadline + GRACE  # the new one, kept a little past its deadline
    # A day past its expiry a temporary account goes; one expired a minute ago still says so (404).
    assert "0x" + "c1" * 20 not in temporary and "0x" + "c2" * 20 in temporary and len(temporary) == 2


def test_wallet_rate_limit__counts_the_wallet_s_verified_signatures_only(start_relay):
    relay = start_relay("wallet-limit", rate_limit_wallet="3/minute")
    try:
        chain = ok(call(relay.url, "GET", "/v1/payment/chain"))
        wallet = AppClient(relay.url, "0x" + secrets.token_hex(32))
        stranger = AppClient(relay.url, "0x" + secrets.token_hex(32))
        path, _ = SIGNED["TemporaryAccount"]
        forged = _signed_body(stranger, chain, "TemporaryAccount") | {"account": wallet.address}
        for _ in range(5):  # signed by another key in the wallet's name: refused, and not counted
            fails(call(relay.url, "POST", path, json=forged), 403, 3002)

        answers = [
            call(relay.url, "POST", path, json=_signed_body(wallet, chain, "TemporaryAccount")) for _ in range(4)
        ]

        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[3].json()["code"] == 1003 and int(answers[3].headers["retry-after"]) > 0
    finally:
        relay.stop()
