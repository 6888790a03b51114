"""Every benchmark on one throwaway system, with a summary at the end.

    make bench          (python -m bench.run_all [--quick])

Gas against the budgets, relay throughput against direct web3.py and its scaling over 1-4 relay
workers, the relay's JSON-RPC calls and database work per payment, and read latency under 50
KIOSKs. The reliability checks (faults, several instances, soak, fuzzing) are the end-to-end
suite: `make e2e`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import latency, throughput, work
from bench.harness import ROOT, system

RESULTS = ROOT / "var" / "bench-results.txt"


def run_gas() -> str:
    """`make gas`'s table (GAS.md): gas per operation against its budget and the public implementation."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ape"), "run", "gas_table", "--network", "ethereum:local:foundry"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    if result.returncode != 0:
        lines.append("OVER BUDGET" if "over budget" in result.stderr else f"FAILED: {result.stderr[-500:]}")
    return "\n".join(lines)


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

        def fresh(fn: Callable[[], str]) -> Callable[[], str]:
            """`fn` on the chain as deployed: each section measures its own blocks, not the
            blocks of the sections before it (anvil slows down as its chain grows)."""

            def run() -> str:
                with bench.fresh_chain():
                    return fn()

            return run

        section("Relay throughput vs direct web3.py, and scaling over relay workers", throughput_table)
        payments = 10 if quick else 20
        section(
            "Relay work per complete payment",
            fresh(lambda: work.render(*work.measure(bench, payments), payments)),
        )
        section("Read latency under 50 concurrent KIOSK clients", fresh(latency_table))

    total = time.perf_counter() - started
    report = "\n\n".join(f"== {title}\n{body}" for title, body in sections) + f"\n\nTotal: {total:.0f} s\n"
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(report)
    print(f"\nTotal {total:.0f} s; written to {RESULTS.relative_to(ROOT)}")
    if any("FAIL" in body or "OVER BUDGET" in body for _, body in sections):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
