"""Read-endpoint latency under load: 50 concurrent KIOSK clients calling GET balance, info and item
for a fixed time; p50/p99 per endpoint, for 1 to 4 relay worker processes.

    python -m bench.latency [--clients 50] [--seconds 10] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import httpx

from bench.harness import UNIT, System, percentile, system
from relay.sdk import AppClient, KioskClient


async def _load(url: str, targets: dict[str, dict[str, str]], clients: int, seconds: float) -> dict[str, list[float]]:
    paths = {
        "balance": "/v1/payment/user/balance",
        "info": "/v1/payment/info",
        "item": "/v1/payment/item",
    }
    samples: dict[str, list[float]] = {name: [] for name in paths}
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
        stop = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                name = random.choice(list(paths))
                start = time.perf_counter()
                response = await http.get(paths[name], params=targets[name])
                samples[name].append(time.perf_counter() - start)
                errors += response.status_code != 200

        await asyncio.gather(*(client() for _ in range(clients)))
    if errors:
        raise RuntimeError(f"{errors} requests failed")
    return samples


def measure(bench: System, clients: int, seconds: float, workers: list[int]) -> list[dict[str, Any]]:
    [user_key] = bench.fund_users(1, 1_000_000 * UNIT)
    rows = []
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
        samples = asyncio.run(_load(url, targets, clients, seconds))
        process.terminate()
        process.wait(15)
        for name, values in samples.items():
            rows.append(
                {
                    "workers": count,
                    "endpoint": name,
                    "requests": len(values),
                    "rps": len(values) / seconds,
                    "p50": percentile(values, 50) * 1000,
                    "p99": percentile(values, 99) * 1000,
                }
            )
    return rows


def render(rows: list[dict[str, Any]], clients: int) -> str:
    lines = [
        f"Read latency with {clients} concurrent KIOSK clients (ms)",
        "workers endpoint  requests   req/s    p50     p99",
    ]
    for r in rows:
        counts = f"{r['workers']:>7} {r['endpoint']:<8} {r['requests']:>9} {r['rps']:>7.0f}"
        lines.append(f"{counts} {r['p50']:>6.1f} {r['p99']:>7.1f}")
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
