"""Read-endpoint latency under load: 50 concurrent KIOSK clients calling GET balance, info and item
for a fixed time; p50/p99 per endpoint, for 1 to 4 relay worker processes.

The load comes from one asyncio process on aiohttp's client, which costs a few percent of a core
here; httpx's AsyncClient took a whole core at 230 requests/s, so the figures measured its queue
rather than the relay. Each client's first second is a warm-up (connections opened, caches
filled) and not counted. The table shows the load generator's CPU share of one core: near 100 %,
the figures would describe the client, not the relay.

    python -m bench.latency [--clients 50] [--seconds 10] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import aiohttp
import psutil

from bench.harness import UNIT, System, percentile, system
from loyalty_sdk import AppClient, KioskClient

PATHS = {
    "balance": "/v1/payment/user/balance",
    "info": "/v1/payment/info",
    "item": "/v1/payment/item",
}
WARM_UP = 1.0


async def _load(url: str, targets: dict[str, dict[str, str]], clients: int, seconds: float) -> dict[str, list[float]]:
    """Each client sends one request after another for `seconds` after the warm-up; latencies by
    endpoint. Fails on any answer but 200."""
    samples: dict[str, list[float]] = {name: [] for name in PATHS}
    failures: list[str] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        begin = time.perf_counter() + WARM_UP
        stop = begin + seconds

        async def client() -> None:
            while (start := time.perf_counter()) < stop:
                name = random.choice(list(PATHS))
                async with http.get(PATHS[name], params=targets[name]) as response:
                    body = await response.read()
                if response.status != 200:
                    failures.append(f"{name}: HTTP {response.status} {body[:200]!r}")
                elif start >= begin:
                    samples[name].append(time.perf_counter() - start)

        await asyncio.gather(*(client() for _ in range(clients)))
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    return samples


def measure(bench: System, clients: int, seconds: float, workers: list[int]) -> list[dict[str, Any]]:
    [user_key] = bench.fund_users(1, 1_000_000 * UNIT)
    rows = []
    me = psutil.Process()
    for count in workers:
        url, db_url, process = bench.start_relay(workers=count)
        kiosk = KioskClient(url, bench.add_kiosk(db_url))
        wallet = AppClient(url, user_key)
        payment = kiosk.open_new(f"L-{count}", 10 * UNIT, "krw", bench.shop_id, wallet.address)
        targets = {
            "balance": {"account": wallet.address},
            "info": {"account": wallet.address, "amount": str(10 * UNIT), "currency": "usd"},
            "item": {"paymentId": payment.paymentId},
        }
        before, wall = me.cpu_times(), time.perf_counter()
        samples = asyncio.run(_load(url, targets, clients, seconds))
        after, wall = me.cpu_times(), time.perf_counter() - wall
        process.terminate()
        process.wait(15)
        client_cpu = (after.user + after.system - before.user - before.system) / wall
        for name, values in samples.items():
            rows.append(
                {
                    "workers": count,
                    "endpoint": name,
                    "requests": len(values),
                    "rps": len(values) / seconds,
                    "p50": percentile(values, 50) * 1000,
                    "p99": percentile(values, 99) * 1000,
                    "client_cpu": client_cpu,
                }
            )
    return rows


def render(rows: list[dict[str, Any]], clients: int) -> str:
    lines = [
        f"Read latency with {clients} concurrent KIOSK clients (ms)",
        "workers endpoint  requests   req/s    p50     p99  load generator CPU",
    ]
    for r in rows:
        counts = f"{r['workers']:>7} {r['endpoint']:<8} {r['requests']:>9} {r['rps']:>7.0f}"
        lines.append(f"{counts} {r['p50']:>6.1f} {r['p99']:>7.1f} {r['client_cpu']:>18.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    with system() as bench:
        rows = measure(bench, args.clients, args.seconds, args.workers)
    print(render(rows, args.clients))


if __name__ == "__main__":
    main()
