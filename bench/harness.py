"""A throwaway system for the benchmarks and the end-to-end suite (tests/e2e): anvil, the contracts,
relay processes on databases of their own, KIOSKs, funded wallets and a KIOSK callback endpoint.

It uses the relay as its operators and clients do: relay.devnet starts the processes, the
`loyalty` command line adds KIOSKs, and everything else goes over HTTP (loyalty_sdk) or reads the
database."""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import psycopg
from eth_account import Account
from web3 import Web3
from web3.types import RPCEndpoint

from relay.devnet import anvil_key, deploy, relay_env, start_anvil, start_relay, stop

ROOT = Path(__file__).resolve().parent.parent
UNIT = 10**18
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
# anvil accounts 5.. sign for relays and the direct baseline (one per direct client, so at most
# len(SIGNER_INDEXES) of them); they get the relay roles at deployment.
SIGNER_INDEXES = list(range(5, 21))
ANVIL_ACCOUNTS = SIGNER_INDEXES[-1] + 1
OWNER_INDEX = 1  # the demo shop's owner
# Rate limits counted (their cost is part of what is measured) but far above any load generated here.
UNLIMITED = {f"rate_limit_{kind}": "100000000/minute" for kind in ("client", "kiosk", "wallet")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {seconds} s")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


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


@functools.cache
def _abis() -> dict[str, Any]:
    """The contracts' ABIs as compiled (Ape's build output, which `make setup` writes)."""
    types: dict[str, Any] = json.loads((ROOT / ".build" / "__local__.json").read_text())["contractTypes"]
    return {name: contract_type["abi"] for name, contract_type in types.items()}


def contract(w3: Web3, deployment: dict[str, Any], name: str) -> Any:
    return w3.eth.contract(address=deployment["contracts"][name], abi=_abis()[name])


def loyalty_cli(env: dict[str, str], *args: str) -> str:
    """Runs the relay's `loyalty` command line; its output."""
    command = [str(Path(sys.executable).parent / "loyalty"), *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`loyalty {' '.join(args)}` failed: {done.stderr[-500:]}")
    return done.stdout


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

    def new_database(self, backend: str = "postgresql") -> str:
        """A new empty database; the relay (or the command line) that first uses it migrates it."""
        if backend == "sqlite":
            url = f"sqlite:///{self.workdir / f'relay-{secrets.token_hex(3)}.sqlite3'}"
        else:
            name = f"relay_bench_{secrets.token_hex(4)}"
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        self.databases.append(url)
        return url

    def relay_env(self, db_url: str, signers: list[int] | None = None, **settings: Any) -> dict[str, str]:
        """A relay's environment: this system's chain (or `rpc_url`), signer keys, RELAY_* `settings`."""
        keys = [anvil_key(i) for i in (signers or SIGNER_INDEXES[:1])]
        rpc_url = settings.pop("rpc_url", self.rpc_url)
        return relay_env(db_url, rpc_url, self.deployment_file, keys, **(UNLIMITED | settings))

    def start_relay(
        self,
        backend: str = "postgresql",
        workers: int = 1,
        signers: list[int] | None = None,
        db_url: str | None = None,
        **settings: Any,
    ) -> tuple[str, str, subprocess.Popen[bytes]]:
        """Starts a relay (on a new database unless `db_url`); returns (base URL, database URL,
        process). It is stopped with the system if not before."""
        db_url = db_url or self.new_database(backend)
        env = self.relay_env(db_url, signers, **({"log_level": "WARNING"} | settings))
        port = free_port()
        process = start_relay(env, port, self.workdir / f"relay-{port}.log", workers=workers)
        self.processes.append(process)
        return f"http://127.0.0.1:{port}", db_url, process

    def add_kiosk(self, db_url: str, callback_url: str | None = None) -> str:
        """A KIOSK for the demo shop, added with `loyalty kiosk add`; its access key."""
        access_key = "kk_bench_" + secrets.token_urlsafe(24)
        args = ["kiosk", "add", "--name", "bench", "--shop", self.shop_id, "--access-key", access_key]
        if callback_url is not None:
            args += ["--callback-url", callback_url]
        loyalty_cli(self.relay_env(db_url), *args)
        return access_key

    def add_kiosks(self, db_url: str, count: int, callback_url: str | None = None) -> list[str]:
        """`count` KIOSKs, added a few at a time (each `loyalty kiosk add` takes most of a second)."""
        first = self.add_kiosk(db_url, callback_url)  # alone: it may migrate the new database
        with ThreadPoolExecutor(4) as pool:
            return [first, *pool.map(lambda _: self.add_kiosk(db_url, callback_url), range(count - 1))]

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

    def escrow(self) -> int:
        """What the ledger holds in escrow for all open payments."""
        return int(contract(self.w3(), self.deployment, "Ledger").functions.escrowOf(0).call())

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
    run is terminated (SIGTERM)."""
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
        # More users are funded in a day than a deployment's grant cap allows (the admin's own
        # limit, on a throwaway chain).
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


class Listener(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections under load (retried a second later)


class Receiver:
    """The KIOSK's callback endpoint: records every delivery by webhook-id, and can be switched
    off (it then answers 503)."""

    def __init__(self) -> None:
        self.up = True
        self.deliveries: list[tuple[float, str, dict[str, Any]]] = []
        self.attempts: list[tuple[float, str, str]] = []  # (time, id, payment) of every request
        self.lock = threading.Lock()
        self._first: dict[tuple[str, str, int], float] = {}  # (payment, type, code) -> first delivery
        self._events: dict[tuple[str, str, int], threading.Event] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                message = json.loads(body)
                payment_id = str(message["data"].get("paymentId"))
                at = time.time()
                with outer.lock:
                    outer.attempts.append((at, self.headers["webhook-id"], payment_id))
                if outer.up:
                    key = (payment_id, str(message["type"]), int(message["code"]))
                    with outer.lock:
                        outer.deliveries.append((at, self.headers["webhook-id"], message))
                        outer._first.setdefault(key, at)
                    outer._event(key).set()
                self.send_response(200 if outer.up else 503)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = Listener(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _event(self, key: tuple[str, str, int]) -> threading.Event:
        with self.lock:
            return self._events.setdefault(key, threading.Event())

    def first(self, payment_id: str, type_: str, code: int, timeout: float) -> float | None:
        """When the payment's first callback of `type_` and `code` arrived (time.time()), waiting up
        to `timeout` seconds for it; None if it did not come."""
        key = (payment_id, type_, code)
        self._event(key).wait(timeout)
        with self.lock:
            return self._first.get(key)

    def for_payment(self, payment_id: str) -> Counter[str]:
        with self.lock:
            return Counter(i for _, i, body in self.deliveries if body["data"]["paymentId"] == payment_id)

    def arrivals(self, payment_id: str) -> dict[str, list[float]]:
        """When each callback id of the payment arrived, in order."""
        times: dict[str, list[float]] = {}
        with self.lock:
            for t, i, body in self.deliveries:
                if body["data"]["paymentId"] == payment_id:
                    times.setdefault(i, []).append(t)
        return times
