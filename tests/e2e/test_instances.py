"""Two relay instances against one PostgreSQL database and one anvil, under concurrent load: every
request goes to a random instance, some payments are never decided (timeout) and some are approved
but never closed (refund). No payment is processed twice, no callback sent twice per id, and each
timeout is handled once."""

from __future__ import annotations

import contextlib
import random
import secrets
import threading
import time
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select

from bench.harness import SIGNER_INDEXES, UNIT, Receiver, System, contract, wait_until
from loyalty_sdk import AppClient, KioskClient
from relay import db as database
from relay.models import Callback, Payment

AMOUNT = 10 * UNIT
CLIENTS = 8
SETTINGS = {"payment_timeout": 3, "close_timeout": 5, "worker_interval": 0.2, "receipt_timeout": 5}
FINAL_STATUS = {"complete": 4, "timeout": 9, "unclosed": 11}


@pytest.fixture(scope="module")
def outcome(bench: System, quick: bool, figure: Any) -> dict[str, list[Any]]:
    """The load over two instances; for each check, what violates it."""
    db_url = bench.new_database("postgresql")
    receiver = Receiver()
    processes = []
    urls = []
    try:
        # One after the other: the first migrates the database.
        for index in range(2):
            url, _, process = bench.start_relay(db_url=db_url, signers=[SIGNER_INDEXES[index]], **SETTINGS)
            processes.append(process)
            urls.append(url)
        return _load_and_check(bench, db_url, urls, receiver, 40 if quick else 120, figure)
    finally:
        for process in processes:
            process.terminate()
        receiver.close()


def _load_and_check(
    bench: System, db_url: str, urls: list[str], receiver: Receiver, payments: int, figure: Any
) -> dict[str, list[Any]]:
    access_key = bench.add_kiosk(db_url, receiver.url)
    user_keys = bench.fund_users(CLIENTS, 1_000_000 * UNIT)
    kinds: dict[str, str] = {}
    lock = threading.Lock()
    rng = random.Random(7)
    errors: list[BaseException] = []

    def client(index: int, count: int) -> None:
        wallets = [AppClient(url, user_keys[index]) for url in urls]
        kiosks = [KioskClient(url, access_key) for url in urls]
        try:
            for _ in range(count):
                with lock:
                    kind = rng.choices(["complete", "timeout", "unclosed"], [0.7, 0.15, 0.15])[0]
                    pick = [rng.randrange(2) for _ in range(3)]
                opened = kiosks[pick[0]].open_new(
                    f"I-{secrets.token_hex(5)}", AMOUNT, "krw", bench.shop_id, wallets[0].address
                )
                with lock:
                    kinds[opened.paymentId] = kind
                if kind == "timeout":
                    continue
                wallets[pick[1]].approve(opened.paymentId)
                if kind == "complete":
                    for _ in range(100):
                        try:
                            kiosks[pick[2]].close_new(opened.paymentId)
                            break
                        except Exception:
                            time.sleep(0.1)
        except BaseException as exc:  # reported by the check below
            errors.append(exc)

    per_client = [payments // CLIENTS + (i < payments % CLIENTS) for i in range(CLIENTS)]
    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(per_client)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load_seconds = time.perf_counter() - start

    with contextlib.suppress(AssertionError):  # what is left is reported by the checks
        wait_until(lambda: not unfinished(db_url, kinds), 120)
    db = database.Database(db_url)
    with db.session() as session:
        callbacks = session.execute(select(Callback.payment_id, Callback.type, Callback.code, Callback.id)).all()
    db.engine.dispose()
    with contextlib.suppress(AssertionError):
        wait_until(lambda: len(receiver.deliveries) >= len(callbacks), 60)

    payment_contract = contract(bench.w3(), bench.deployment, "LoyaltyPayment")
    since = bench.deployment["startBlock"]
    opened_events = Counter(
        "0x" + bytes(e["args"]["paymentId"]).hex()
        for e in payment_contract.events.PaymentOpened().get_logs(from_block=since)
    )
    refunded_events = Counter(
        "0x" + bytes(e["args"]["paymentId"]).hex()
        for e in payment_contract.events.PaymentRefunded().get_logs(from_block=since)
    )
    per_event = Counter((pid, type_, code) for pid, type_, code, _ in callbacks)
    deliveries = Counter(webhook_id for _, webhook_id, _ in receiver.deliveries)
    undecided = [pid for pid, kind in kinds.items() if kind in ("timeout", "unclosed")]
    figure(
        "two relay instances, one PostgreSQL",
        f"{len(kinds)} payments ({dict(Counter(kinds.values()))}) over 2 instances in {load_seconds:.1f} s",
    )
    return {
        "every client finished its payments": [repr(e) for e in errors],
        "payments in their expected final state": unfinished(db_url, kinds),
        "each approval opened on chain once": [
            pid for pid, kind in kinds.items() if kind != "timeout" and opened_events[pid] != 1
        ],
        "each unclosed payment refunded once": [
            pid for pid, kind in kinds.items() if kind == "unclosed" and refunded_events[pid] != 1
        ],
        "one callback per event": [key for key, n in per_event.items() if n != 1],
        "each timeout handled once (code 2000)": [pid for pid in undecided if per_event[(pid, "create", 2000)] != 1],
        "each callback id delivered once": [i for i, n in deliveries.items() if n != 1],
        "every callback delivered": [i for i in {c.id for c in callbacks} if i not in deliveries],
    }


def unfinished(db_url: str, kinds: dict[str, str]) -> list[str]:
    """Payments not (yet) in the final state of their kind, or with a chain operation pending."""
    db = database.Database(db_url)
    try:
        with db.session() as session:
            rows = session.execute(select(Payment.payment_id, Payment.status, Payment.chain_op)).all()
    finally:
        db.engine.dispose()
    return [
        f"{pid}: {status}, op {op}" for pid, status, op in rows if status != FINAL_STATUS[kinds[pid]] or op is not None
    ]


@pytest.mark.parametrize(
    "check",
    [
        "every client finished its payments",
        "payments in their expected final state",
        "each approval opened on chain once",
        "each unclosed payment refunded once",
        "one callback per event",
        "each timeout handled once (code 2000)",
        "each callback id delivered once",
        "every callback delivered",
    ],
)
def test_two_instances(outcome, check):
    assert outcome[check] == [], f"{len(outcome[check])}, e.g. {outcome[check][:3]}"
