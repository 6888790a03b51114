"""The work the relay does for one complete payment (openNew -> approve -> closeNew): database
statements and commits, and JSON-RPC calls, split into the requests' share and the background
workers' share. The relay runs in this process (FastAPI TestClient) against a PostgreSQL database
and anvil, one payment after another, so every count belongs to the measured payments.

    python -m bench.work [--payments 20]

Throughput (bench.throughput) is bound by CPU on a small machine; these counts say where it goes.
"""

from __future__ import annotations

import argparse
import collections
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bench.harness import SIGNER_INDEXES, UNIT, System, system
from relay import db as database
from relay.config import Settings
from relay.devnet import anvil_key
from relay.indexer import CURSOR
from relay.main import SLOW_WORKERS, create_app
from relay.models import IndexerCursor
from relay.rpc import NodeRpc
from relay.sdk import AppClient, KioskClient


class Counts:
    def __init__(self) -> None:
        self.statements: collections.Counter[tuple[str, str]] = collections.Counter()
        self.commits: collections.Counter[str] = collections.Counter()
        self.rpcs: collections.Counter[tuple[str, str]] = collections.Counter()
        # (part, statements in the transaction): how many transactions ran that many statements
        self.transactions: collections.Counter[tuple[str, int]] = collections.Counter()
        self.lock = threading.Lock()

    def clear(self) -> None:
        with self.lock:
            self.statements.clear()
            self.commits.clear()
            self.rpcs.clear()
            self.transactions.clear()


def _part() -> str:
    """Requests run in AnyIO's worker threads; the background workers on the event loop's."""
    return "requests" if threading.current_thread().name.startswith("AnyIO") else "workers"


@contextmanager
def counting() -> Iterator[Counts]:
    counts = Counts()

    def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        words = re.sub(r"\s+", " ", text).split(" ")
        verb = words[0]
        table = next((w for w in words[1:4] if w not in ("INTO", "FROM") and not w.startswith("(")), "?")
        if verb == "SELECT":
            table = words[words.index("FROM") + 1] if "FROM" in words else "?"
        conn.info["statements"] = conn.info.get("statements", 0) + 1
        with counts.lock:
            counts.statements[(_part(), f"{verb} {table}")] += 1

    def ended(conn: Any) -> None:
        with counts.lock:
            counts.transactions[(_part(), conn.info.pop("statements", 0))] += 1

    def commit(conn: Any) -> None:
        with counts.lock:
            counts.commits[_part()] += 1
        ended(conn)

    original = NodeRpc.response

    def response(self: NodeRpc, method: str, params: list[Any], body: bytes | None = None) -> Any:
        with counts.lock:
            counts.rpcs[(_part(), method)] += 1
        return original(self, method, params, body)

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "commit", commit)
    event.listen(Engine, "rollback", ended)
    NodeRpc.response = response  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        NodeRpc.response = original  # type: ignore[method-assign]
        event.remove(Engine, "rollback", ended)
        event.remove(Engine, "commit", commit)
        event.remove(Engine, "before_cursor_execute", statement)


def measure(bench: System, payments: int) -> Counts:
    user = bench.fund_users(1, 1_000_000 * UNIT)[0]
    db_url = bench.new_database("postgresql")
    settings = Settings(
        database_url=db_url,
        rpc_url=bench.rpc_url,
        deployment_file=bench.deployment_file,
        signer_keys=[anvil_key(i) for i in SIGNER_INDEXES[:4]],  # as bench.throughput's relay
        log_level="ERROR",
    )
    access_key = bench.add_kiosk(db_url)
    with counting() as counts, TestClient(create_app(settings)) as http:
        kiosk = KioskClient("http://testserver", access_key, http=http)
        wallet = AppClient("http://testserver", user, http=http)

        def pay(purchase_id: str) -> None:
            opened = kiosk.open_new(purchase_id, 10 * UNIT, "krw", bench.shop_id, wallet.address)
            wallet.approve(opened.paymentId)
            assert kiosk.close_new(opened.paymentId).paymentStatus == 4

        pay("warm-up")
        # The indexer catches up with the chain's earlier events, and the workers finish the
        # warm-up's records, before anything is counted.
        _wait_indexed(db_url, bench.w3().eth.block_number)
        time.sleep(2 * SLOW_WORKERS * settings.worker_interval + 0.5)
        counts.clear()
        for i in range(payments):
            pay(f"P-{i}")
        time.sleep(2 * SLOW_WORKERS * settings.worker_interval + 0.5)  # ... and the measured payments'
    return counts


def _wait_indexed(db_url: str, block: int, timeout: float = 300) -> None:
    db = database.Database(db_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with db.session() as session:
                cursor = session.get(IndexerCursor, CURSOR)
                if cursor is not None and cursor.next_block > block:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the indexer did not reach block {block} in {timeout} s")
    finally:
        db.engine.dispose()


def render(counts: Counts, payments: int) -> str:
    def per(value: int) -> str:
        return f"{value / payments:>6.1f}"

    lines = [f"Work per complete payment (mean of {payments}, sequential):", ""]
    lines.append(f"{'':<44}{'requests':>9}{'workers':>9}")
    for label, counter in (("database statements", counts.statements), ("JSON-RPC calls", counts.rpcs)):
        totals: collections.Counter[str] = collections.Counter()
        by_kind: collections.Counter[str] = collections.Counter()
        for (part, kind), n in counter.items():
            totals[part] += n
            by_kind[kind] += n
        lines.append(f"{label:<44}{per(totals['requests']):>9}{per(totals['workers']):>9}")
        kinds = [kind for kind, _ in by_kind.most_common()]
        lines += [
            f"  {kind:<42}{per(counter[('requests', kind)]):>9}{per(counter[('workers', kind)]):>9}" for kind in kinds
        ]
    lines.append(f"{'database commits':<44}{per(counts.commits['requests']):>9}{per(counts.commits['workers']):>9}")
    lines.append("transactions (committed or rolled back)")
    for size in sorted({size for _, size in counts.transactions}):
        label = f"  of {size} statement{'s' if size != 1 else ''}"
        requests, workers = counts.transactions[("requests", size)], counts.transactions[("workers", size)]
        lines.append(f"{label:<44}{per(requests):>9}{per(workers):>9}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=20)
    args = parser.parse_args()
    with system() as bench:
        counts = measure(bench, args.payments)
    print(render(counts, args.payments))


if __name__ == "__main__":
    main()
