"""The operator's probes, against real relay processes: alive, and ready only when the database,
the chain node and every signer's gas money are there."""

from __future__ import annotations

import httpx

from tests.relay.checks import sqlite_only
from tests.relay.conftest import SIGNERS


def test_healthz__alive(relay):
    assert httpx.get(f"{relay.url}/healthz").json() == {"status": "ok"}


@sqlite_only
def test_readyz__database_node_and_funded_signers__200(relay):
    answer = httpx.get(f"{relay.url}/readyz")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ready"] is True
    assert body["checks"]["database"] == "ok" and body["checks"]["signers"] == "ok"
    assert body["checks"]["chain"]["block"] > 0


def test_readyz__a_signer_below_the_gas_threshold__503_naming_it(start_relay):
    relay = start_relay("poor-signer", signer=SIGNERS["spare"], min_signer_balance=10**30)

    answer = httpx.get(f"{relay.url}/readyz")

    assert answer.status_code == 503
    low = answer.json()["checks"]["signers"]["low"]
    assert len(low) == 1 and int(next(iter(low.values()))) < 10**30


def test_readyz__chain_node_unreachable__503(start_relay):
    relay = start_relay("no-node", signer=SIGNERS["spare"], rpc_url="http://127.0.0.1:9", rpc_timeout=1)

    answer = httpx.get(f"{relay.url}/readyz", timeout=30)

    assert answer.status_code == 503
    assert answer.json()["checks"]["chain"] != "ok" and answer.json()["ready"] is False
