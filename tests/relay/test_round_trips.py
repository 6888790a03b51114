"""What each request of a payment asks of the database: the transactions it commits and the
statements it runs, counted for a relay served from this process on PostgreSQL while a KIOSK and
the app play flow 1.1 the way the spec has it (the KIOSK closes once the approval's callback
has come).

Every transaction is a round trip to the database and a share of the relay's CPU per payment
(`python -m bench.work` breaks that down); the budgets below are what the payment path needs,
so a change that adds a transaction to a request, or a statement to a transaction, is noticed
here rather than as a slower throughput bench."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from loyalty_sdk import AppClient, KioskClient
from relay.devnet import anvil_key
from tests.relay.conftest import (
    POINT_USER,
    UNIT,
    CallbackReceiver,
    FakeExpo,
    postgres_with_kiosk,
    relay_in_this_process,
)

# (commits, statements) a request may use, at most.
BUDGETS = {
    # The key, the purchase (no payment yet, and not reported as paid otherwise) and the address
    # checked in one transaction; the payment and its notification written in a second, which looks
    # for a report of the purchase again (one stored meanwhile earns loyalty: no payment may stand
    # beside it). The node is asked in between, with no transaction open.
    "openNew": (2, 7),
    # The payment and the relay's unsent signatures of its account.
    "item": (1, 2),
    # Check and claim; the signer's nonce and the transaction hash.
    "confirm": (2, 5),
    # The key, the payment and the claim; the signer's nonce and the transaction hash; the outcome
    # (recorded by the watcher).
    "closeNew": (3, 7),
}


class Counter:
    """Commits and statements of the threads that serve requests (AnyIO's worker threads; the
    background workers and the watcher run on threads of their own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    @staticmethod
    def _serving() -> bool:
        return threading.current_thread().name.startswith("AnyIO")

    def statement(self, *_: Any) -> None:
        if self._serving():
            with self.lock:
                self.counts["statements"] += 1

    def commit(self, *_: Any) -> None:
        if self._serving():
            with self.lock:
                self.counts["commits"] += 1

    def take(self) -> tuple[int, int]:
        with self.lock:
            taken = (self.counts["commits"], self.counts["statements"])
            self.counts.clear()
        return taken


@pytest.fixture
def counted_relay(
    anvil: str,
    deployment: dict[str, Any],
    shop_id: str,
    new_database: Callable[[str], str],
    callbacks: CallbackReceiver,
    expo: FakeExpo,
) -> Iterator[tuple[str, KioskClient, Counter]]:
    url, created = postgres_with_kiosk(new_database, callbacks, shop_id, "trips")
    counter = Counter()
    event.listen(Engine, "before_cursor_execute", counter.statement)
    event.listen(Engine, "commit", counter.commit)
    try:
        with relay_in_this_process(url, anvil, deployment, expo) as relay_url:
            yield relay_url, KioskClient(relay_url, created.access_key), counter
    finally:
        event.remove(Engine, "commit", counter.commit)
        event.remove(Engine, "before_cursor_execute", counter.statement)


def test_each_request_of_a_payment_keeps_to_its_database_round_trips(counted_relay, shop_id, callbacks):
    relay_url, kiosk, counter = counted_relay
    user = AppClient(relay_url, anvil_key(POINT_USER))
    used: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for attempt in range(3):  # the first payment warms the relay's caches (shop owner, signer row)
        counter.take()
        opened = kiosk.open_new(f"T-{time.time_ns()}", 10 * UNIT, "krw", shop_id, user.address)
        used["openNew"].append(counter.take())
        item = user.item(opened.paymentId)
        used["item"].append(counter.take())
        assert item.typedData is not None
        body = {"paymentId": opened.paymentId, "signature": user.sign(item.typedData.confirm)}
        response = httpx.post(f"{relay_url}/v1/payment/create/confirm", json=body, timeout=30)
        assert response.status_code == 200, response.text
        used["confirm"].append(counter.take())
        callbacks.wait_for(opened.paymentId)  # the KIOSK closes once the approval is called back
        counter.take()
        assert kiosk.close_new(opened.paymentId).paymentStatus == 4
        used["closeNew"].append(counter.take())
        if attempt == 0:
            used.clear()
    over = {
        request: (commits, statements)
        for request, counts in used.items()
        for commits, statements in counts
        if commits > BUDGETS[request][0] or statements > BUDGETS[request][1]
    }
    assert set(used) == set(BUDGETS)
    assert all(commits >= 1 for counts in used.values() for commits, _ in counts), used
    assert not over, f"over budget (commits, statements): {over}; budgets {BUDGETS}"
