"""Every benchmark and long check, end to end on one throwaway system, with a summary at the end.

    make bench          (python -m bench.run_all)

Gas against the budgets, relay throughput against direct web3.py, the relay's database statements
and JSON-RPC calls per payment, read latency under 50 KIOSKs, scaling over 1-4 relay workers, the
fault matrix, two relay instances on one database, a load soak and Schemathesis against the
OpenAPI document.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import faults, instances, latency, soak, throughput, work
from bench.harness import ROOT, check_table, system

RESULTS = ROOT / "var" / "bench-results.txt"


def run_gas() -> str:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ape"), "run", "gas_table", "--network", "ethereum:local:foundry"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    lines = ["operation                        gas    budget  used/budget  public impl.  ours/public"]
    for row in table[2:]:
        op, gas, budget, reference = (cell.strip() for cell in row.strip("|").split("|"))
        used, limit = int(gas.replace(",", "")), int(budget.replace(",", ""))
        ref = int(reference.replace(",", "")) if reference[0].isdigit() else None
        versus = f"{used / ref:>11.2f}" if ref else f"{'—':>11}"
        lines.append(f"{op:<29} {used:>8,} {limit:>8,} {used / limit:>11.2f}  {reference:>12} {versus}")
    if result.returncode != 0:
        lines.append("OVER BUDGET" if "over budget" in result.stderr else result.stderr[-500:])
    return "\n".join(lines)


def run_fuzz(examples: int, minimum: int) -> str:
    """Schemathesis in its own pytest process; FAIL if it fails or sends fewer than `minimum` requests."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "pytest"),
            "-p",
            "no:ape_test",
            "--confcutdir=bench",
            "-q",
            "-s",
            "-W",
            "ignore",
            "bench/test_fuzz_api.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "FUZZ_EXAMPLES": str(examples)},
    )
    counts = next((line for line in result.stdout.splitlines() if line.startswith("Schemathesis requests")), "")
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-300:]
    sent = int(counts.split()[2]) if counts else 0
    if result.returncode != 0:
        summary = f"FAIL: {summary}"
    elif sent < minimum:
        summary = f"FAIL: {sent} requests, fewer than {minimum}; {summary}"
    return f"{counts}\n{summary}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the benchmarks)")
    args = parser.parse_args()
    quick = args.quick
    sections: list[tuple[str, str]] = []
    started = time.perf_counter()

    def section(title: str, fn: Callable[[], str]) -> None:
        t = time.perf_counter()
        try:
            body = fn()
        except Exception as exc:
            body = f"FAILED: {type(exc).__name__}: {exc}"
        sections.append((f"{title} ({time.perf_counter() - t:.0f} s)", body))
        print(f"\n== {sections[-1][0]}\n{body}", flush=True)

    section("Gas per operation (anvil)", run_gas)
    with system() as bench:

        def throughput_table() -> str:
            rows = throughput.measure(48 if quick else 96, 8, [1] if quick else [1, 2, 4], signers=4, rounds=3)
            return throughput.render(rows)

        def latency_table() -> str:
            rows = latency.measure(bench, 50, 4 if quick else 10, [1] if quick else [1, 2, 4])
            return latency.render(rows, 50)

        def fault_table() -> str:
            rows: list[Any] = faults.kill_matrix(bench, 1 if quick else 3)
            rows += faults.callback_outage(bench)
            rows += faults.node_restart(bench)
            rows += faults.postgres_restart(bench, 10 if quick else 20)
            return "\n".join(f"{scenario:<36} {result:<6} {detail}" for scenario, detail, result in rows)

        def instances_table() -> str:
            return check_table(instances.run(bench, 40 if quick else 120, 8))

        def soak_table() -> str:
            return check_table(soak.soak(bench, 50, 15 if quick else 60))

        def fresh(fn: Callable[[], str]) -> Callable[[], str]:
            """`fn` on the chain as deployed: each section measures its own blocks, not the
            blocks of the sections before it (anvil slows down as its chain grows)."""

            def run() -> str:
                with bench.fresh_chain():
                    return fn()

            return run

        section("Relay throughput vs direct web3.py, and scaling over relay workers", throughput_table)
        section(
            "Relay work per complete payment",
            fresh(lambda: work.render(work.measure(bench, 10 if quick else 20), 10 if quick else 20)),
        )
        section("Read latency under 50 concurrent KIOSK clients", fresh(latency_table))
        section("Fault matrix", fresh(fault_table))
        section("Two relay instances on one PostgreSQL", fresh(instances_table))
        section("Load soak", fresh(soak_table))
    section("Schemathesis against /openapi.json", lambda: run_fuzz(8, 100) if quick else run_fuzz(30, 1_000))

    total = time.perf_counter() - started
    report = "\n\n".join(f"== {title}\n{body}" for title, body in sections) + f"\n\nTotal: {total:.0f} s\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report)
    print(f"\nTotal {total:.0f} s; written to {RESULTS.relative_to(ROOT)}")
    if any("FAIL" in body or "OVER BUDGET" in body for _, body in sections):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
