"""How the chain node's speed changes as its chain grows: the direct web3.py payment loop of
bench.throughput in consecutive batches on one anvil, with payments/s and anvil's CPU time per
payment against the block number. anvil gets slower as blocks accumulate, which is why
bench.throughput alternates direct and relay batches instead of measuring the baseline once.

    python -m bench.chain_drift [--batches 10] [--payments 192] [--clients 8]
"""

from __future__ import annotations

import argparse

from bench.harness import UNIT, cpu_seconds, system
from bench.throughput import direct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--payments", type=int, default=192)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    rows = []
    with system() as bench:
        users = bench.fund_users(args.clients, 1_000_000 * UNIT)
        anvil = bench.processes[0].pid
        w3 = bench.w3()
        for _ in range(args.batches):
            start_block = w3.eth.block_number
            before = cpu_seconds({"anvil": [anvil]})
            rate = direct(bench, users, args.payments, args.clients)
            anvil_ms = (cpu_seconds({"anvil": [anvil]})["anvil"] - before["anvil"]) * 1000 / args.payments
            rows.append((start_block, rate, anvil_ms))
    first_rate, first_ms = rows[0][1], rows[0][2]
    print(f"\nDirect payments on one anvil, {args.batches} batches of {args.payments} ({args.clients} clients)")
    print(f"{'from block':>10} {'payments/s':>11} {'÷ first':>8} {'anvil ms/payment':>17} {'÷ first':>8}")
    for block, rate, ms in rows:
        print(f"{block:>10} {rate:>11.1f} {rate / first_rate:>8.2f} {ms:>17.2f} {ms / first_ms:>8.2f}")


if __name__ == "__main__":
    main()
