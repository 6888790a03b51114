"""Relay tests run real processes: anvil, the contracts deployed by `ape run deploy`, the relay
(`loyalty serve`) on SQLite and on PostgreSQL, a KIOSK callback receiver that checks Standard
Webhooks signatures, and a fake Expo push service — all over real HTTP.

Run with `make test-relay` (plain pytest, without Ape's test runner)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

from loyalty_sdk import AppClient, KioskClient
from relay import db as database
from relay.cli import NewKiosk, add_kiosk, new_callback_secret
from relay.config import Settings
from relay.devnet import MNEMONIC, anvil_key
from relay.main import create_app

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
UNIT = 10**18
POSTGRES_ADMIN_URL = os.environ.get("RELAY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

# anvil accounts: 0 admin, 1 shop owner, 2 point user, 3 token user (demo fixture);
# 4 another user; 5-8 relay signers of the test relays.
OWNER, POINT_USER, TOKEN_USER, OTHER_USER = 1, 2, 3, 4
SIGNERS = {"sqlite": 5, "postgresql": 6, "timeouts": 7, "spare": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def address(index: int) -> str:
    from eth_account import Account

    return str(Account.from_key(anvil_key(index)).address)


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def postgres_with_kiosk(
    new_database: Callable[[str], str], callbacks: CallbackReceiver, shop_id: str, name: str
) -> tuple[str, NewKiosk]:
    """A new migrated PostgreSQL database holding one KIOSK `name`, allowed for the shop and called
    back at `callbacks`; returns its URL and the KIOSK."""
    url = new_database("postgresql")
    database.upgrade(url)
    db = database.Database(url)
    try:
        with db.session() as session:
            secret = new_callback_secret()
            created = add_kiosk(session, name, [shop_id], callbacks.url(name, secret), callback_secret=secret)
    finally:
        db.engine.dispose()
    return url, created


@contextlib.contextmanager
def relay_in_this_process(
    db_url: str, anvil: str, deployment: dict[str, Any], expo: FakeExpo, **settings: Any
) -> Iterator[str]:
    """The relay app on `db_url`, served by uvicorn on a thread of this process so that a test can
    watch its database engine (the spare signer key; other `settings` as given); yields its URL."""
    config = Settings(
        database_url=db_url,
        rpc_url=anvil,
        deployment_file=deployment["path"],
        signer_keys=[anvil_key(SIGNERS["spare"])],
        expo_base_url=expo.http.url,
        log_level="WARNING",
        allow_private_callbacks=True,
        **settings,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def _env() -> dict[str, str]:
    return os.environ | {
        "SOLCX_BINARY_PATH": str(ROOT / ".solcx"),
        "PATH": f"{BIN}{os.pathsep}{ROOT / 'node_modules' / '.bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }


# ------------------------------------------------------------------------------- chain


@pytest.fixture(scope="session")
def anvil() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        ["anvil", "--host", "127.0.0.1", "--port", str(port), "--mnemonic", MNEMONIC, "--silent"],
        env=_env(),
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def deployment(anvil: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The contracts and the demo fixture, deployed with `ape run` like `make run` does."""
    path = tmp_path_factory.mktemp("chain") / "deployment.json"
    network = f"ethereum:local:{anvil}"
    relays = [arg for i in (0, *SIGNERS.values()) for arg in ("--relay", address(i))]
    for args in (
        ["run", "deploy", "--network", network, "--out", str(path), *relays],
        ["run", "demo_data", "--network", network, "--deployment", str(path)],
    ):
        result = subprocess.run([str(BIN / "ape"), *args], cwd=ROOT, env=_env(), capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(path.read_text())
    data["path"] = str(path)
    return data


@pytest.fixture(scope="session")
def shop_id(deployment: dict[str, Any]) -> str:
    return str(deployment["demo"]["shopId"])


# ------------------------------------------------------------------------------- HTTP peers


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: str
    verified: bool
    at: float = 0.0  # time.time() of arrival

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")


class _Listener(ThreadingHTTPServer):
    # Room for many clients connecting at once (the default backlog of 5 drops connections,
    # which the client's TCP stack retries only after a second).
    request_queue_size = 128


class _Server:
    """A tiny threaded HTTP server that answers POST requests with `handle(path, headers, body)`:
    (status, JSON reply), or None to drop the connection without answering."""

    def __init__(self, handle: Callable[[str, dict[str, str], str], tuple[int, Any] | None]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length).decode()
                answer = handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, reply = answer
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = _Listener(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        outer.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()


class CallbackReceiver:
    """The KIOSK's callback endpoint: verifies each delivery's Standard Webhooks signature with the
    secret of the KIOSK it is addressed to (`/<name>`), and can pretend to be down."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.received: list[Received] = []
        self.status = 200
        # While set, each delivery is recorded, then answered only once the event is set (a KIOSK
        # that has taken a callback but not yet said so).
        self.hold: threading.Event | None = None
        self.lock = threading.Lock()
        self.http = _Server(self._handle)

    def _handle(self, path: str, headers: dict[str, str], body: str) -> tuple[int, dict[str, Any]]:
        name = path.partition("?")[0].strip("/")
        try:
            Webhook(self.secrets[name]).verify(body, headers)
            verified = True
        except (KeyError, WebhookVerificationError):
            verified = False
        with self.lock:
            self.received.append(Received(name, headers, body, verified, time.time()))
            status, hold = self.status, self.hold
        if hold is not None:
            hold.wait(30)
        return status, {"ok": status == 200}

    def url(self, name: str, secret: str | None = None) -> str:
        if secret is not None:
            self.secrets[name] = secret
        return f"{self.http.url}/{name}"

    def for_payment(self, payment_id: str, accepted_only: bool = True) -> list[Received]:
        with self.lock:
            return [
                r
                for r in self.received
                if r.json.get("data", {}).get("paymentId") == payment_id and (r.verified or not accepted_only)
            ]

    def wait_for(self, payment_id: str, count: int = 1, timeout: float = 20.0) -> list[Received]:
        return list(
            wait_until(lambda: len(self.for_payment(payment_id)) >= count and self.for_payment(payment_id), timeout)
        )


class FakeExpo:
    """Expo's push API (POST /--/api/v2/push/send), recording the messages it is sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail = False
        self.refused: list[dict[str, Any]] = []  # messages answered with an error while `fail`
        self.unregistered: set[str] = set()  # tokens refused as Expo refuses a device's old token
        self.http = _Server(self._handle)

    def _handle(self, path: str, headers: dict[str, str], body: str) -> tuple[int, dict[str, Any]]:
        messages = json.loads(body)
        messages = messages if isinstance(messages, list) else [messages]
        if self.fail:
            self.refused.extend(messages)
            return 500, {"errors": [{"code": "INTERNAL", "message": "down"}]}
        self.messages.extend(messages)
        return 200, {"data": [self._ticket(m["to"]) for m in messages]}

    def _ticket(self, token: str) -> dict[str, Any]:
        if token in self.unregistered:
            message = f'"{token}" is not a registered push notification recipient'
            return {"status": "error", "message": message, "details": {"error": "DeviceNotRegistered"}}
        return {"status": "ok", "id": str(uuid.uuid4())}


@pytest.fixture(scope="session")
def callbacks() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    yield receiver
    receiver.http.close()


@pytest.fixture(scope="session")
def expo() -> Iterator[FakeExpo]:
    fake = FakeExpo()
    yield fake
    fake.http.close()


# ------------------------------------------------------------------------------- databases


def _create_postgres_database() -> str:
    name = f"relay_test_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        message = (
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}). Start it, or point "
            "RELAY_TEST_POSTGRES_URL at a server where this user may create databases."
        )
        if os.environ.get("RELAY_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def new_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """Creates an empty database of the given backend; all are dropped at the end."""
    created: list[str] = []

    def new(backend: str) -> str:
        if backend == "postgresql":
            url = _create_postgres_database()
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'relay.sqlite3'}"
        created.append(url)
        return url

    yield new
    for url in created:
        if url.startswith("postgresql"):
            _drop_postgres_database(url)


# ------------------------------------------------------------------------------- relays


@dataclass
class RelayProcess:
    name: str
    db_url: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RelayProcess:
        assert self.log is not None
        out = self.log.open("a")
        self.process = subprocess.Popen(
            [str(BIN / "loyalty"), "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"relay {self.name} exited; log:\n{self.log.read_text() if self.log else ''}")
            try:
                return httpx.get(f"{self.url}/openapi.json", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=90)  # generous: a loaded CI machine can take long to import
        return self

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(15)
        self.process = None

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()

    def db(self) -> database.Database:
        return database.Database(self.db_url)


@dataclass
class InProcess:
    """The relay's services in this process, on a relay process's database: to drive a step of
    its own (a retry, a sweep) beside it."""

    db: Any
    chain: Any
    ops: Any
    watcher: Any
    payments: Any


@contextlib.contextmanager
def in_process(
    relay: RelayProcess, anvil: str, deployment: dict[str, Any], signer: int | None, **settings: Any
) -> Iterator[InProcess]:
    from relay.chain import Chain
    from relay.services.operations import Operations
    from relay.services.payments import Payments
    from relay.workers.watcher import Watcher

    config = Settings(database_url=relay.db_url, **({"allow_private_callbacks": True} | settings))
    db = relay.db()
    chain = Chain(anvil, deployment["path"], [] if signer is None else [anvil_key(signer)], 5)
    ops = Operations(db, chain, config)
    watcher = Watcher(chain, ops.finish, list, 600.0, config.receipt_timeout)  # no sweep: the test's own
    ops.watch = watcher.watch
    watcher.start()
    try:
        yield InProcess(db, chain, ops, watcher, Payments(db, chain, config, ops, watcher))
    finally:
        watcher.stop()
        db.engine.dispose()


@pytest.fixture(scope="session")
def start_relay(
    anvil: str,
    deployment: dict[str, Any],
    expo: FakeExpo,
    new_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RelayProcess]]:
    """Starts a relay process; keyword arguments become RELAY_* settings."""
    started: list[RelayProcess] = []

    def start(
        name: str, backend: str = "sqlite", signer: int | None = None, db_url: str | None = None, **settings: Any
    ) -> RelayProcess:
        """`db_url`: an existing database to serve (default: a new one of `backend`)."""
        db_url = db_url or new_database(backend)
        env = _env() | {
            "RELAY_DATABASE_URL": db_url,
            "RELAY_RPC_URL": anvil,
            "RELAY_DEPLOYMENT_FILE": deployment["path"],
            "RELAY_SIGNER_KEYS": anvil_key(signer) if signer is not None else "",
            "RELAY_EXPO_BASE_URL": expo.http.url,
            "RELAY_WORKER_INTERVAL": "0.25",
            "RELAY_CALLBACK_BACKOFF_INITIAL": "0.2",
            "RELAY_CALLBACK_BACKOFF_MAX": "1",
            "RELAY_LOG_LEVEL": "INFO",
            "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",  # the callback receivers listen on 127.0.0.1
        }
        # Rate limits far above what the tests send from one address, unless a test sets its own.
        env |= {f"RELAY_RATE_LIMIT_{kind}": "100000000/minute" for kind in ("CLIENT", "KIOSK", "WALLET")}
        env |= {f"RELAY_{key.upper()}": str(value) for key, value in settings.items()}
        relay = RelayProcess(name, db_url, env, log=tmp_path_factory.mktemp("log") / f"{name}.log")
        database.upgrade(db_url)
        started.append(relay)
        return relay.start()

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def relays(start_relay: Callable[..., RelayProcess]) -> Callable[[str], RelayProcess]:
    """The session relay of a database backend, started on first use and then reused (so modules
    that pick a backend with `indirect` parametrization share it)."""
    started: dict[str, RelayProcess] = {}

    def get(backend: str) -> RelayProcess:
        if backend not in started:
            started[backend] = start_relay(f"relay-{backend}", backend=backend, signer=SIGNERS[backend])
        return started[backend]

    return get


@pytest.fixture(scope="session")
def relay(backend: str, relays: Callable[[str], RelayProcess]) -> RelayProcess:
    """The relay under test, once per database backend."""
    return relays(backend)


@dataclass
class KioskAccount:
    id: int
    access_key: str
    secret: str
    name: str
    client: KioskClient


@pytest.fixture(scope="session")
def make_kiosk(callbacks: CallbackReceiver) -> Callable[..., KioskAccount]:
    def make(relay: RelayProcess, shops: list[str], name: str | None = None) -> KioskAccount:
        name = name or f"kiosk-{secrets.token_hex(4)}"
        secret = new_callback_secret()
        with relay.db().session() as session:
            created = add_kiosk(session, name, shops, callbacks.url(name, secret), callback_secret=secret)
        return KioskAccount(created.id, created.access_key, secret, name, KioskClient(relay.url, created.access_key))

    return make


@pytest.fixture(scope="session")
def kiosk(relay: RelayProcess, shop_id: str, make_kiosk: Callable[..., KioskAccount]) -> KioskAccount:
    return make_kiosk(relay, [shop_id])


@pytest.fixture(scope="session")
def user(relay: RelayProcess) -> AppClient:
    return AppClient(relay.url, anvil_key(POINT_USER))


@pytest.fixture(scope="session")
def token_user(relay: RelayProcess) -> AppClient:
    return AppClient(relay.url, anvil_key(TOKEN_USER))


@pytest.fixture(scope="session")
def owner(relay: RelayProcess) -> AppClient:
    return AppClient(relay.url, anvil_key(OWNER))


@pytest.fixture(scope="session")
def new_wallet(anvil: str, deployment: dict[str, Any]) -> Callable[..., AppClient]:
    """A fresh wallet with `points` granted by the deployer (a provider), for tests that need
    exact balances or to drain one."""
    from eth_account import Account
    from web3 import Web3

    from relay.chain import ABI_DIR

    w3 = Web3(Web3.HTTPProvider(anvil))
    ledger = w3.eth.contract(
        address=deployment["contracts"]["Ledger"], abi=json.loads((ABI_DIR / "Ledger.json").read_text())
    )

    def new(relay: RelayProcess, points: int) -> AppClient:
        account = Account.create()
        tx = ledger.functions.grant(account.address, points).transact({"from": address(0)})
        assert w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
        return AppClient(relay.url, account.key)

    return new


@pytest.fixture
def purchase_id() -> str:
    return f"P-{secrets.token_hex(6)}"
