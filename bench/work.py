"""The work the relay does for one complete payment (openNew -> approve -> closeNew), counted from
outside: its JSON-RPC calls by method (through a counting proxy in front of anvil), and its
PostgreSQL transactions, table scans and rows written per table (the server's statistics for the
relay's database). Payments run one after another; the relay's background polling while idle,
measured over a quiet window first, is subtracted.

    python -m bench.work [--payments 20]

Throughput (bench.throughput) is bound by CPU on a small machine; these counts say where it goes.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

import psycopg
import urllib3

from bench.harness import SIGNER_INDEXES, UNIT, Listener, System, system
from loyalty_sdk import AppClient, KioskClient

# PostgreSQL publishes a backend's statistics at most once a second while it works, and within
# 10 s once it is idle: a snapshot taken this long after the last payment holds all of its work.
STATS_DELAY = 11.0
IDLE_WINDOW = 10.0
TABLE_STATS = ("scans", "inserted", "updated", "deleted")


class CountingProxy:
    """Forwards JSON-RPC requests to the node and counts them by method (batches by their parts)."""

    def __init__(self, node_url: str) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        pool = urllib3.PoolManager(maxsize=16)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                request = json.loads(body)
                with outer.lock:
                    outer.calls.update(r["method"] for r in (request if isinstance(request, list) else [request]))
                reply = pool.request("POST", node_url, body=body, headers={"Content-Type": "application/json"})
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.data)))
                self.end_headers()
                self.wfile.write(reply.data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = Listener(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.calls)


def database_stats(db_url: str) -> Counter[str]:
    """The database's transactions, and per table its scans and rows written, so far."""
    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0), n_tup_ins, n_tup_upd, n_tup_del,"
            " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),"
            " (SELECT xact_rollback FROM pg_stat_database WHERE datname = current_database())"
            " FROM pg_stat_user_tables"
        ).fetchall()
    stats: Counter[str] = Counter()
    for table, *counts, commits, rollbacks in rows:
        stats.update({f"{table} {name}": int(n) for name, n in zip(TABLE_STATS, counts, strict=True)})
        stats["transactions committed"], stats["transactions rolled back"] = int(commits), int(rollbacks)
    return stats


def measure(bench: System, payments: int) -> tuple[dict[str, float], dict[str, float]]:
    """JSON-RPC calls and database counts of `payments` payments, without the idle polling."""
    [user_key] = bench.fund_users(1, 1_000_000 * UNIT)
    proxy = CountingProxy(bench.rpc_url)
    db_url = bench.new_database("postgresql")
    # four signer keys, as bench.throughput's relay
    url, _, process = bench.start_relay(db_url=db_url, signers=SIGNER_INDEXES[:4], rpc_url=proxy.url)
    kiosk = KioskClient(url, bench.add_kiosk(db_url))
    wallet = AppClient(url, user_key)

    def pay(purchase_id: str) -> None:
        opened = kiosk.open_new(purchase_id, 10 * UNIT, "krw", bench.shop_id, wallet.address)
        wallet.approve(opened.paymentId)
        if kiosk.close_new(opened.paymentId).paymentStatus != 4:
            raise RuntimeError(f"payment {opened.paymentId} did not complete")

    try:
        pay("warm-up")  # and the indexer catches up with the chain's earlier events meanwhile
        time.sleep(STATS_DELAY)
        idle_start, rpc_idle_start = time.monotonic(), proxy.snapshot()
        db_idle_start = database_stats(db_url)
        time.sleep(IDLE_WINDOW)
        start, rpc_start = time.monotonic(), proxy.snapshot()
        db_start = database_stats(db_url)
        for i in range(payments):
            pay(f"P-{i}")
        time.sleep(STATS_DELAY)
        end, rpc_end = time.monotonic(), proxy.snapshot()
        db_end = database_stats(db_url)
    finally:
        process.terminate()
        process.wait(15)
        proxy.server.shutdown()
    scale = (end - start) / (start - idle_start)

    def busy(before: Counter[str], after: Counter[str], idle_before: Counter[str]) -> dict[str, float]:
        counts = {k: after[k] - before[k] - scale * (before[k] - idle_before[k]) for k in after}
        return {k: v for k, v in counts.items() if round(v / payments, 1) > 0}

    return busy(rpc_start, rpc_end, rpc_idle_start), busy(db_start, db_end, db_idle_start)


def render(rpc: dict[str, float], db: dict[str, float], payments: int) -> str:
    lines = [f"Relay work per complete payment (mean of {payments} in a row, idle polling subtracted)", ""]
    lines.append(f"{'JSON-RPC calls':<28}{sum(rpc.values()) / payments:>8.1f}")
    lines += [f"  {method:<26}{n / payments:>8.1f}" for method, n in sorted(rpc.items(), key=lambda kv: -kv[1])]
    commits, rollbacks = db.get("transactions committed", 0.0), db.get("transactions rolled back", 0.0)
    lines.append(f"{'database transactions':<28}{(commits + rollbacks) / payments:>8.1f}")
    lines.append(f"  {'committed':<26}{commits / payments:>8.1f}")
    lines.append(f"  {'rolled back':<26}{rollbacks / payments:>8.1f}")
    tables = sorted({key.rsplit(" ", 1)[0] for key in db if not key.startswith("transactions ")})
    lines.append(f"{'table':<28}" + "".join(f"{name:>10}" for name in TABLE_STATS))
    for table in tables:
        lines.append(
            f"  {table:<26}" + "".join(f"{db.get(f'{table} {name}', 0.0) / payments:>10.1f}" for name in TABLE_STATS)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payments", type=int, default=20)
    args = parser.parse_args()
    with system() as bench:
        rpc, db = measure(bench, args.payments)
    print(render(rpc, db, args.payments))


if __name__ == "__main__":
    main()
