"""A throwaway system for benchmarks: anvil, the contracts, relay processes and funded wallets."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from eth_account import Account
from web3 import Web3
from web3.types import RPCEndpoint

from relay import db as database
from relay import kiosks
from relay.devnet import anvil_key, deploy, relay_env, start_anvil, start_relay, stop

ROOT = Path(__file__).resolve().parent.parent
ABI = ROOT / "relay" / "abi"
UNIT = 10**18
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
# anvil accounts 5.. sign for relays and the direct baseline (one per direct client, so at most
# len(SIGNER_INDEXES) of them); they get the relay roles at deployment.
SIGNER_INDEXES = list(range(5, 21))
ANVIL_ACCOUNTS = SIGNER_INDEXES[-1] + 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes (each pid with all its descendants),
    by every PostgreSQL server process ("postgres"), and by this process ("client")."""

    def used(process: psutil.Process) -> float:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            return float(times.user + times.system)
        return 0.0

    def tree(pid: int) -> float:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            return used(root) + sum(used(child) for child in root.children(recursive=True))
        return 0.0

    totals = {name: sum(tree(pid) for pid in pids) for name, pids in groups.items()}
    totals["postgres"] = sum(used(p) for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres")
    totals["client"] = used(psutil.Process())
    return totals


def contract(w3: Web3, deployment: dict[str, Any], name: str) -> Any:
    abi = json.loads((ABI / f"{name}.json").read_text())
    return w3.eth.contract(address=deployment["contracts"][name], abi=abi)


@dataclass
class System:
    rpc_url: str
    deployment: dict[str, Any]
    deployment_file: Path
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)

    @property
    def shop_id(self) -> str:
        return str(self.deployment["demo"]["shopId"])

    def w3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 60}))

    @contextlib.contextmanager
    def fresh_chain(self) -> Iterator[None]:
        """Puts the chain back, afterwards, to where it was before (anvil's evm_snapshot and
        evm_revert): anvil slows down as blocks accumulate (`python -m bench.chain_drift`), so a
        measurement that follows others on one growing chain would measure their blocks too."""
        w3 = self.w3()
        snapshot = w3.provider.make_request(RPCEndpoint("evm_snapshot"), [])["result"]
        try:
            yield
        finally:
            if not w3.provider.make_request(RPCEndpoint("evm_revert"), [snapshot])["result"]:
                raise RuntimeError(f"anvil could not revert to snapshot {snapshot}")

    def new_database(self, backend: str, migrate: bool = True) -> str:
        """A new empty database, migrated to this tree's schema unless `migrate` is False (a relay
        migrates its database itself when it starts)."""
        if backend == "sqlite":
            url = f"sqlite:///{self.workdir / f'relay-{secrets.token_hex(3)}.sqlite3'}"
        else:
            name = f"relay_bench_{secrets.token_hex(4)}"
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        self.databases.append(url)
        if migrate:
            database.upgrade(url)
        return url

    def start_relay(
        self, backend: str = "postgresql", workers: int = 1, signers: list[int] | None = None, **settings: Any
    ) -> tuple[str, str, subprocess.Popen[bytes]]:
        """Starts a relay; returns (base URL, database URL, process)."""
        db_url = self.new_database(backend)
        keys = [anvil_key(i) for i in (signers or SIGNER_INDEXES[:1])]
        env = relay_env(db_url, self.rpc_url, self.deployment_file, keys, log_level="WARNING", **settings)
        port = free_port()
        process = start_relay(env, port, self.workdir / f"relay-{port}.log", workers=workers)
        self.processes.append(process)
        return f"http://127.0.0.1:{port}", db_url, process

    def add_kiosk(self, db_url: str, callback_url: str | None = None) -> str:
        db = database.Database(db_url)
        try:
            with db.session() as session:
                return kiosks.add(session, "bench", [self.shop_id], callback_url).access_key
        finally:
            db.engine.dispose()  # its connection closed now, not whenever the engine is collected

    def fund_users(self, count: int, points: int) -> list[str]:
        """New wallets with `points` points each (granted by the deployer, who holds the granter role;
        `system()` lifted the day's grant cap)."""
        w3 = self.w3()
        ledger = contract(w3, self.deployment, "Ledger")
        keys = ["0x" + secrets.token_hex(32) for _ in range(count)]
        deployer = Account.from_key(anvil_key(0)).address
        hashes = [
            ledger.functions.grant(Account.from_key(key).address, points).transact({"from": deployer}) for key in keys
        ]
        for tx in hashes:
            if w3.eth.wait_for_transaction_receipt(tx)["status"] != 1:
                raise RuntimeError(f"granting {points} points failed (transaction {tx.hex()})")
        return keys

    def close(self) -> None:
        stop(self.processes)
        for url in self.databases:
            if url.startswith("postgresql"):
                with (
                    contextlib.suppress(psycopg.Error),
                    psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn,
                ):
                    conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _terminated(signum: int, _: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def system() -> Iterator[System]:
    """The system, stopped (anvil, relays, their databases) when the block ends, also when the
    benchmark is terminated (SIGTERM)."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    workdir = Path(tempfile.mkdtemp(prefix="loyalty-bench-"))
    port = free_port()
    anvil = start_anvil(port, workdir / "anvil.log", accounts=ANVIL_ACCOUNTS)
    rpc_url = f"http://127.0.0.1:{port}"
    try:
        relays = [Account.from_key(anvil_key(i)).address for i in (0, *SIGNER_INDEXES)]
        deployment_file = workdir / "deployment.json"
        deployment = deploy(rpc_url, deployment_file, relays, workdir / "deploy.log")
        bench = System(rpc_url, deployment, deployment_file, workdir, [anvil])
        # The benchmarks fund more users a day than a deployment's grant cap allows (the admin's
        # own limit, on a throwaway chain).
        w3 = bench.w3()
        admin = Account.from_key(anvil_key(0)).address
        tx = contract(w3, deployment, "Ledger").functions.setGrantCap(2**96 - 1).transact({"from": admin})
        if w3.eth.wait_for_transaction_receipt(tx)["status"] != 1:
            raise RuntimeError("the deployer could not lift the grant cap")
        yield bench
    finally:
        stop([anvil])
        if "bench" in locals():
            bench.close()
        signal.signal(signal.SIGTERM, previous)


def check_table(rows: list[tuple[str, str]]) -> str:
    """Rows of (check, result) as aligned text."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {result}" for name, result in rows)


def failed(rows: list[tuple[str, str]]) -> bool:
    return any(result.startswith("FAIL") for _, result in rows)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
