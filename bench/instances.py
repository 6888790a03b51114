"""Two relay instances against one PostgreSQL database and one anvil, under concurrent load: every
request goes to a random instance, some payments are never decided (timeout) and some are approved
but never closed (refund). No payment may be processed twice, no callback sent twice per id, and
each timeout handled once.

    python -m bench.instances [--payments 120] [--clients 8]
"""

from __future__ import annotations

import argparse
import random
import secrets
import threading
import time
from collections import Counter
from typing import Any

from sqlalchemy import select

from bench.faults import Receiver, wait_until
from bench.harness import SIGNER_INDEXES, UNIT, System, check_table, contract, failed, free_port, system
from relay import db as database
from relay.devnet import anvil_key, relay_env, start_relay, stop
from relay.models import Callback, Payment
from relay.sdk import AppClient, KioskClient

AMOUNT = 10 * UNIT
SETTINGS = {"payment_timeout": 3, "close_timeout": 5, "worker_interval": 0.2, "receipt_timeout": 5}


def run(bench: System, payments: int, clients: int) -> list[tuple[str, str]]:
    """The load and the checks, with the two relay instances stopped afterwards (left running, they
    would index and poll through whatever the system runs next)."""
    db_url = bench.new_database("postgresql")
    relays = []
    urls = []
    try:
        for index in range(2):
            keys = [anvil_key(SIGNER_INDEXES[index])]
            env = relay_env(db_url, bench.rpc_url, bench.deployment_file, keys, **SETTINGS)
            port = free_port()
            relays.append(start_relay(env, port, bench.workdir / f"instance-{index}.log"))
            bench.processes.append(relays[-1])  # stopped with the system if the run is cut short
            urls.append(f"http://127.0.0.1:{port}")
        return _load_and_check(bench, db_url, urls, payments, clients)
    finally:
        stop(relays)


def _load_and_check(bench: System, db_url: str, urls: list[str], payments: int, clients: int) -> list[tuple[str, str]]:
    receiver = Receiver()
    access_key = bench.add_kiosk(db_url, receiver.url)
    user_keys = bench.fund_users(clients, 1_000_000 * UNIT)
    kinds: dict[str, str] = {}
    lock = threading.Lock()
    rng = random.Random(7)

    def client(index: int, count: int) -> None:
        wallets = [AppClient(url, user_keys[index]) for url in urls]
        kiosks = [KioskClient(url, access_key) for url in urls]
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

    per_client = [payments // clients + (i < payments % clients) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(per_client)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    load_seconds = time.perf_counter() - start

    expected = {"complete": 4, "timeout": 9, "unclosed": 11}
    db = database.Database(db_url)

    def settled() -> bool:
        with db.session() as session:
            rows = session.execute(select(Payment.payment_id, Payment.status, Payment.chain_op)).all()
        return all(status == expected[kinds[pid]] and op is None for pid, status, op in rows)

    wait_until(settled, 120)
    with db.session() as session:
        callbacks = session.execute(select(Callback.payment_id, Callback.type, Callback.code, Callback.id)).all()
    wait_until(lambda: len(receiver.deliveries) >= len(callbacks), 60)

    w3 = bench.w3()
    payment_contract = contract(w3, bench.deployment, "LoyaltyPayment")
    opened_events = Counter(
        "0x" + bytes(e["args"]["paymentId"]).hex()
        for e in payment_contract.events.PaymentOpened().get_logs(from_block=bench.deployment["startBlock"])
    )
    refunded_events = Counter(
        "0x" + bytes(e["args"]["paymentId"]).hex()
        for e in payment_contract.events.PaymentRefunded().get_logs(from_block=bench.deployment["startBlock"])
    )
    per_payment = Counter((pid, type_, code) for pid, type_, code, _ in callbacks)
    deliveries = Counter(webhook_id for _, webhook_id, _ in receiver.deliveries)
    timeouts = [pid for pid, kind in kinds.items() if kind in ("timeout", "unclosed")]
    checks = {
        "payments in their expected final state": "pass",
        "each approval opened on chain once": _none(
            [pid for pid, kind in kinds.items() if kind != "timeout" and opened_events[pid] != 1]
        ),
        "each unclosed payment refunded once": _none(
            [pid for pid, kind in kinds.items() if kind == "unclosed" and refunded_events[pid] != 1]
        ),
        "one callback per event": _none([key for key, n in per_payment.items() if n != 1]),
        "each timeout handled once (code 2000)": _none(
            [pid for pid in timeouts if per_payment[_timeout_key(pid, kinds)] != 1]
        ),
        "each callback id delivered once": _none([i for i, n in deliveries.items() if n != 1]),
    }
    mix = Counter(kinds.values())
    rows = [(name, result) for name, result in checks.items()]
    rows.insert(0, ("load", f"{len(kinds)} payments ({dict(mix)}) over 2 instances in {load_seconds:.1f} s"))
    return rows


def _timeout_key(payment_id: str, kinds: dict[str, str]) -> tuple[str, str, int]:
    return (payment_id, "create", 2000)


def _none(bad: list[Any]) -> str:
    return "pass" if not bad else f"FAIL: {len(bad)} e.g. {bad[:3]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=120)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with system() as bench:
        rows = run(bench, args.payments, args.clients)
    print(f"\nTwo relay instances, one PostgreSQL, one anvil\n{check_table(rows)}")
    if failed(rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
