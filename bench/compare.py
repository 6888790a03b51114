"""Relay throughput and CPU of the working tree against another revision, side by side.

    python -m bench.compare --base <git revision> [--payments 96] [--rounds 20] [--workers 1] [--idle 20]

Both relays run at once on one anvil and one PostgreSQL, each with its own database and four
signer keys: the base revision from a git worktree, the working tree as it is. Batches of complete
payments (openNew -> approve -> closeNew over HTTP) alternate between them in ABBA order, the other
relay stopped (SIGSTOP) meanwhile, so drift in the machine's speed and anvil's slowdown as the
chain grows (bench.chain_drift) fall on both alike. Prints the median payments/s and relay CPU
per payment of each, and the ratios working tree / base with the quartiles of the per-round
ratios: single batches of a few seconds vary by ±15 % on a shared machine, so a difference inside
the quartiles is noise (`--base HEAD` on an unchanged tree shows the noise itself). Then both
relays sit idle side by side for `--idle` seconds and their CPU per second is compared.

Only the relay may differ: the contracts must be the same in both revisions.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import (
    ROOT,
    SIGNER_INDEXES,
    UNIT,
    UNLIMITED,
    System,
    cpu_seconds,
    free_port,
    loyalty_cli,
    system,
)
from bench.throughput import paused, through_relay
from relay.devnet import anvil_key, relay_env, start_relay

SAME_IN_BOTH = ("contracts",)
# Seconds left for the approvals' follow-ups and the workers to finish the last batch's work
# before idle CPU is measured (the chain watcher and the timeouts run every 2 s).
SETTLE = 5.0


@dataclass
class Side:
    name: str
    url: str
    access_key: str
    users: list[str]
    pid: int
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    idle_ms: list[float] = field(default_factory=list)  # CPU ms per second with no request coming in


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """The revision checked out in a temporary git worktree."""
    commit = _git("rev-parse", "--verify", f"{revision}^{{commit}}")
    changed = _git("diff", "--name-only", commit, "--", *SAME_IN_BOTH)
    if changed:
        raise SystemExit(f"the contracts differ from {revision}; compare relay changes only:\n{changed}")
    with tempfile.TemporaryDirectory(prefix="loyalty-base-") as parent:
        path = Path(parent) / "tree"
        _git("worktree", "add", "--detach", str(path), commit)
        try:
            yield path
        finally:
            _git("worktree", "remove", "--force", str(path))


def start_side(bench: System, name: str, source: Path | None, signers: list[int], workers: int, clients: int) -> Side:
    """A relay running the code in `source` (None: the working tree), with a database it migrates
    itself and a KIOSK added by its own command line."""
    db_url = bench.new_database("postgresql")
    keys = [anvil_key(i) for i in signers]
    env = relay_env(db_url, bench.rpc_url, bench.deployment_file, keys, **(UNLIMITED | {"log_level": "WARNING"}))
    if source is not None:
        env["PYTHONPATH"] = str(source)
    probe = [sys.executable, "-c", "import relay; print(relay.__file__)"]
    # From a neutral directory: `python -c` puts its working directory first on the import path.
    outside = tempfile.gettempdir()
    imported = subprocess.run(probe, cwd=outside, env=env, check=True, capture_output=True, text=True).stdout.strip()
    if not Path(imported).is_relative_to(source or ROOT):
        raise RuntimeError(f"the {name} relay would import {imported}, not the code in {source or ROOT}")
    port = free_port()
    process = start_relay(env, port, bench.workdir / f"relay-{name}.log", workers=workers)
    bench.processes.append(process)
    access_key = f"bench-{name.replace(' ', '-')}-key-0123456789abcdef"
    loyalty_cli(env, "kiosk", "add", "--name", name, "--shop", bench.shop_id, "--access-key", access_key)
    users = bench.fund_users(clients, 1_000_000 * UNIT)
    return Side(name, f"http://127.0.0.1:{port}", access_key, users, process.pid)


def batch(bench: System, side: Side, other: Side, payments: int, clients: int) -> None:
    """One batch on `side`, with `other` stopped."""
    with paused(other.pid):
        before = cpu_seconds({"relay": [side.pid]})
        side.rates.append(through_relay(side.url, side.access_key, bench.shop_id, side.users, payments, clients))
        after = cpu_seconds({"relay": [side.pid]})
    side.cpu_ms.append((after["relay"] - before["relay"]) * 1000 / payments)


def idle(sides: tuple[Side, Side], seconds: float, slices: int = 4) -> None:
    """Each relay's CPU per second while no request comes in (its background workers polling),
    both measured over the same slices of time after the last batch's work has settled. The
    kernel counts CPU time in ticks of 10 ms: a slice of 5 s reads to the nearest 2 ms/s."""
    time.sleep(SETTLE)
    for _ in range(slices):
        before = cpu_seconds({side.name: [side.pid] for side in sides})
        time.sleep(seconds / slices)
        after = cpu_seconds({side.name: [side.pid] for side in sides})
        for side in sides:
            side.idle_ms.append((after[side.name] - before[side.name]) * 1000 / (seconds / slices))


def compare(
    base: str, payments: int, rounds: int, workers: int, clients: int, idle_seconds: float = 0.0
) -> tuple[Side, Side]:
    with worktree(base) as source, system() as bench:
        # four signer keys each, as bench.throughput gives its relay
        old = start_side(bench, "base", source, SIGNER_INDEXES[:4], workers, clients)
        new = start_side(bench, "working tree", None, SIGNER_INDEXES[4:8], workers, clients)
        for side, other in ((old, new), (new, old)):  # warm-up, not counted
            batch(bench, side, other, clients * 2, clients)
            side.rates.clear()
            side.cpu_ms.clear()
        for index in range(rounds):
            pair = ((old, new), (new, old))
            for side, other in pair if index % 2 == 0 else pair[::-1]:
                batch(bench, side, other, payments, clients)
        if idle_seconds > 0:
            idle((old, new), idle_seconds)
    return old, new


def render(base: str, old: Side, new: Side, payments: int, rounds: int, workers: int) -> str:
    lines = [
        f"Relay, {rounds} rounds of {payments} payments each, {workers} worker(s): working tree against {base}",
        f"{'':<14}{'payments/s':>11}{'  (range)':<16}{'relay CPU ms/payment':>21}",
    ]
    for side in (old, new):
        spread = f"  ({min(side.rates):.1f}-{max(side.rates):.1f})"
        lines.append(
            f"{side.name:<14}{statistics.median(side.rates):>11.1f}{spread:<16}{statistics.median(side.cpu_ms):>21.1f}"
        )
    for label, new_values, old_values in (
        ("payments/s", new.rates, old.rates),
        ("relay CPU per payment", new.cpu_ms, old.cpu_ms),
    ):
        ratios = [n / o for n, o in zip(new_values, old_values, strict=True)]
        low, mid, high = statistics.quantiles(ratios, n=4)
        lines.append(f"working tree / base, {label}: {mid:.2f} (per-round quartiles {low:.2f}-{high:.2f})")
    if old.idle_ms and new.idle_ms:
        idle_old, idle_new = statistics.median(old.idle_ms), statistics.median(new.idle_ms)
        lines.append(
            f"idle relay CPU ms/s (median of {len(new.idle_ms)} slices): base {idle_old:.1f}, working tree"
            f" {idle_new:.1f}, working tree / base {idle_new / idle_old:.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare against")
    parser.add_argument("--payments", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measured after the batches")
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    old, new = compare(args.base, args.payments, args.rounds, args.workers, args.clients, args.idle)
    print()
    print(render(args.base, old, new, args.payments, args.rounds, args.workers))


if __name__ == "__main__":
    main()
