"""Fault injection: the relay killed (SIGKILL) in the middle of every step of flows 1.1 and 1.3,
the KIOSK's callback endpoint down for a while, the chain node hung, then stopped and restarted,
PostgreSQL restarted under load. After each, every payment must be in a correct final state on the
chain and in the database, no escrow may be left, and every callback id must have arrived.

    python -m bench.faults [--trials 3]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from sqlalchemy import select

from bench.harness import SIGNER_INDEXES, UNIT, System, contract, free_port, system
from relay import db as database
from relay.devnet import anvil_key, relay_env, start_anvil, start_relay, stop
from relay.models import Callback, CallbackState, Payment
from relay.sdk import AppClient

AMOUNT = 10 * UNIT
TOTAL = AMOUNT * 105 // 100
CHAIN_CLOSED, CHAIN_CANCELLED = 2, 5
RELAY_SETTINGS: dict[str, Any] = {
    "receipt_timeout": 5,
    "worker_interval": 0.2,
    "callback_backoff_initial": 0.5,
    "callback_backoff_max": 2,
    # The receiver answers at once: a killed relay's callbacks come back after a short lease.
    "callback_timeout": 2,
    "callback_lease": 5,
}


# ----------------------------------------------------------------------------- peers


class _Listener(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections under load (retried a second later)


class Receiver:
    """The KIOSK's callback endpoint; counts deliveries per webhook-id and can be switched off."""

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

        self.server = _Listener(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"

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


@dataclass
class Relay:
    """A relay process that can be killed and restarted on the same port and database."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    killed_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = start_relay(self.env, self.port, self.log)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.killed_at = time.time()
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()


def verdict(problems: list[str]) -> str:
    """A check's result: pass, or FAIL with what went wrong."""
    return f"FAIL: {'; '.join(problems)}" if problems else "pass"


def retry(fn: Callable[[], Any], seconds: float = 60) -> Any:
    """Calls `fn` until it succeeds: what a KIOSK or app does after a lost response or a 503."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def wait_until(predicate: Callable[[], Any], seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


# ----------------------------------------------------------------------------- checks


def check_final(
    bench: System, relay: Relay, db_url: str, receiver: Receiver, payment_id: str, flow: str
) -> tuple[str, int]:
    """Problems found (empty if none), and how many callbacks arrived twice because the relay was
    killed while delivering them."""
    w3 = bench.w3()
    record = contract(w3, bench.deployment, "LoyaltyPayment").functions.paymentOf(payment_id).call()
    expected_chain, expected_db = (CHAIN_CLOSED, 4) if flow == "1.1" else (CHAIN_CANCELLED, 8)
    problems = []
    if record[4] != expected_chain:
        problems.append(f"chain status {record[4]} != {expected_chain}")
    db = database.Database(db_url)
    try:
        with db.session() as session:
            payment = session.get(Payment, payment_id)
        if payment is None or payment.status != expected_db or payment.chain_op is not None:
            problems.append(f"db status {payment and payment.status} op {payment and payment.chain_op}")

        def all_recorded() -> dict[str, int] | None:
            with db.session() as session:
                rows = session.execute(
                    select(Callback.id, Callback.state, Callback.attempts).where(Callback.payment_id == payment_id)
                ).all()
            done = rows and all(state == CallbackState.DELIVERED for _, state, _ in rows)
            return {i: attempts for i, _, attempts in rows} if done else None

        # A callback the killed relay had claimed is retried when its lease ends.
        attempts = wait_until(all_recorded, float(RELAY_SETTINGS["callback_lease"]) + 30)
    finally:
        db.engine.dispose()
    # Delivery is at-least-once: the relay killed after the KIOSK took a callback but before it
    # recorded that, sends it again (same webhook-id) after the restart. Any other repeat is a fault.
    arrivals = receiver.arrivals(payment_id)
    redelivered = 0
    for callback_id, recorded in attempts.items():
        times = arrivals.get(callback_id, [])
        unrecorded = len(times) - recorded
        if unrecorded == 1 and times[0] < relay.killed_at < times[1]:
            redelivered += 1
        elif unrecorded != 0:
            problems.append(f"callback {callback_id}: {len(times)} arrived, {recorded} attempts recorded")
    return "; ".join(problems), redelivered


def escrow(bench: System) -> int:
    ledger = contract(bench.w3(), bench.deployment, "Ledger")
    return int(ledger.functions.escrowOf(0).call())


# ----------------------------------------------------------------------------- scenarios


def kill_matrix(bench: System, trials: int) -> list[tuple[str, str, str]]:
    """SIGKILL the relay 0-80 ms into each step, restart it, retry the step, finish the flow."""
    receiver = Receiver()
    db_url = bench.new_database("postgresql")
    keys = [anvil_key(SIGNER_INDEXES[0])]
    relay = Relay(
        relay_env(db_url, bench.rpc_url, bench.deployment_file, keys, **RELAY_SETTINGS), bench.workdir / "kill.log"
    )
    relay.start()
    access_key = bench.add_kiosk(db_url, receiver.url)
    [user_key] = bench.fund_users(1, 1_000_000 * UNIT)
    owner_key = anvil_key(1)
    rows = []
    # The chain is shared with the other benchmarks: only what this matrix adds to escrow counts.
    escrow_before = escrow(bench)
    steps = {
        "1.1": ["openNew", "create/confirm", "closeNew"],
        "1.3": ["openCancel", "cancel/confirm", "closeCancel"],
    }
    for flow, names in steps.items():
        for step_index, name in enumerate(names):
            failures = []
            redelivered = 0
            for trial in range(trials):
                delay = [0.0, 0.02, 0.08][trial % 3]
                try:
                    problem, again = _kill_during(
                        bench, relay, receiver, db_url, access_key, user_key, owner_key, flow, step_index, delay
                    )
                    redelivered += again
                except Exception as exc:  # a hung flow is a failure of the scenario
                    problem = f"{type(exc).__name__}: {exc}"
                if problem:
                    failures.append(f"trial {trial}: {problem}")
            result = verdict(failures)
            detail = f"{trials} trials"
            if redelivered:
                detail += f", {redelivered} callback(s) sent again: killed mid-delivery, same webhook-id"
            rows.append((f"kill during {flow} {name}", detail, result))
    leftover = escrow(bench) - escrow_before
    rows.append(("escrow after the kill matrix", "", "pass" if leftover == 0 else f"FAIL: {leftover} left in escrow"))
    relay.kill()
    return rows


def _kill_during(
    bench: System,
    relay: Relay,
    receiver: Receiver,
    db_url: str,
    access_key: str,
    user_key: str,
    owner_key: str,
    flow: str,
    step_index: int,
    delay: float,
) -> tuple[str, int]:
    from relay.sdk import KioskClient

    kiosk = KioskClient(relay.url, access_key, timeout=30)
    user = AppClient(relay.url, user_key, timeout=30)
    owner = AppClient(relay.url, owner_key, timeout=30)
    purchase_id = f"F-{secrets.token_hex(5)}"
    payment_id: dict[str, str] = {}
    signature: dict[str, str] = {}

    def open_new() -> None:
        payment_id["id"] = kiosk.open_new(purchase_id, AMOUNT, "krw", bench.shop_id, user.address).paymentId

    def confirm(wallet: AppClient, path: str) -> Callable[[], None]:
        def run() -> None:
            item = wallet.item(payment_id["id"])
            if item.typedData is not None and path not in signature:
                signature[path] = wallet.sign(item.typedData.confirm)
            if item.typedData is not None or item.paymentStatus in (1, 5):
                response = httpx.post(
                    f"{relay.url}/v1/payment/{path}",
                    json={"paymentId": payment_id["id"], "signature": signature[path]},
                    timeout=30,
                )
                if response.status_code != 200:
                    raise RuntimeError(response.text)

        return run

    def close_new() -> None:
        kiosk.close_new(payment_id["id"])

    def open_cancel() -> None:
        kiosk.open_cancel(payment_id["id"])

    def close_cancel() -> None:
        kiosk.close_cancel(payment_id["id"])

    flow_11 = [open_new, confirm(user, "create/confirm"), close_new]
    flow_13 = [open_cancel, confirm(owner, "cancel/confirm"), close_cancel]
    plan = flow_11 if flow == "1.1" else flow_11 + flow_13
    killed_at = step_index if flow == "1.1" else len(flow_11) + step_index
    for index, step in enumerate(plan):
        if index == killed_at:
            thread = threading.Thread(target=_quiet, args=(step,))
            thread.start()
            time.sleep(delay)
            relay.restart()
            thread.join(30)
        retry(step)
    return check_final(bench, relay, db_url, receiver, payment_id["id"], flow)


def _quiet(step: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        step()


def callback_outage(bench: System) -> list[tuple[str, str, str]]:
    receiver = Receiver()
    url, db_url, process = bench.start_relay(backend="postgresql", **RELAY_SETTINGS)
    from relay.sdk import KioskClient

    kiosk = KioskClient(url, bench.add_kiosk(db_url, receiver.url))
    users = [AppClient(url, key) for key in bench.fund_users(3, 1_000 * UNIT)]
    receiver.up = False
    down_since = time.time()
    payments = []
    for user in users:
        opened = kiosk.open_new(f"O-{secrets.token_hex(4)}", AMOUNT, "krw", bench.shop_id, user.address)
        user.approve(opened.paymentId)
        payments.append(opened.paymentId)
    time.sleep(4)
    with database.Database(db_url).session() as session:
        attempts = {c.id: c.attempts for c in session.execute(select(Callback)).scalars()}
    receiver.up = True
    back_at = time.time()
    wait_until(lambda: all(receiver.for_payment(p) for p in payments), 30)
    delays = [t - back_at for t, _, _ in receiver.deliveries]
    ids = [i for _, i, _ in receiver.deliveries]
    problems = []
    if len(ids) != len(set(ids)):
        problems.append("duplicate deliveries")
    if min(attempts.values(), default=0) < 2:
        problems.append(f"too few attempts while down: {attempts}")
    gaps = _off_schedule([(at, callback_id) for at, callback_id, _ in receiver.attempts])
    if gaps:
        problems.append(f"retries off the backoff schedule: {gaps[:3]}")
    ids_per_payment = Counter(payment for payment, _ in {(p, i) for _, i, p in receiver.attempts})
    if sorted(ids_per_payment) != sorted(payments) or max(ids_per_payment.values()) != 1:
        problems.append(f"callback ids per payment: {dict(ids_per_payment)}")
    process.terminate()
    schedule = f"{len(gaps)} retries off" if gaps else "every retry on"
    detail = (
        f"down {back_at - down_since:.1f} s, {sum(attempts.values())} failed attempts, {schedule} the backoff "
        f"schedule, all {len(ids)} delivered {max(delays):.1f} s after recovery, same id on every attempt"
    )
    return [("callback receiver down, then back", detail, verdict(problems))]


def _off_schedule(attempts: list[tuple[float, str]]) -> list[str]:
    """Retries that came sooner than the backoff after the previous attempt of the same callback
    id, or later than a worker poll (plus the jitter and 2 s for a busy machine) after it was due."""
    initial, longest = RELAY_SETTINGS["callback_backoff_initial"], RELAY_SETTINGS["callback_backoff_max"]
    by_id: dict[str, list[float]] = {}
    for at, callback_id in attempts:
        by_id.setdefault(callback_id, []).append(at)
    problems = []
    for callback_id, times in by_id.items():
        for k, (before, after) in enumerate(itertools.pairwise(sorted(times)), start=1):
            delay = min(initial * 2 ** (k - 1), longest)
            if not delay <= after - before <= delay * 1.2 + RELAY_SETTINGS["worker_interval"] + 2:
                problems.append(f"{callback_id} retry {k}: {after - before:.2f} s, backoff {delay:.2f} s")
    return problems


HUNG_REQUESTS = 10
NODE_TIMEOUT = 2


def node_restart(bench: System) -> list[tuple[str, str, str]]:
    """A separate anvil with a state file. First it hangs (SIGSTOP: connections are accepted, no
    answer comes): after the first timeout requests must answer 503 at once, not each after the
    timeout. Then it is stopped (SIGTERM: state saved) and started again."""
    from relay.devnet import deploy

    port = free_port()
    state = bench.workdir / "anvil-state.json"
    log = bench.workdir / "anvil-restart.log"
    anvil = start_anvil(port, log, accounts=20, state=state)
    rpc = f"http://127.0.0.1:{port}"
    relays = [Account.from_key(anvil_key(i)).address for i in (0, SIGNER_INDEXES[0])]
    deployment_file = bench.workdir / "restart-deployment.json"
    deployment = deploy(rpc, deployment_file, relays, bench.workdir / "deploy-restart.log")
    db_url = bench.new_database("postgresql")
    settings = RELAY_SETTINGS | {"rpc_timeout": NODE_TIMEOUT}
    env = relay_env(db_url, rpc, deployment_file, [anvil_key(SIGNER_INDEXES[0])], **settings)
    relay = Relay(env, bench.workdir / "relay-restart.log")
    relay.start()
    from relay.sdk import KioskClient

    with database.Database(db_url).session() as session:
        from relay import kiosks

        access_key = kiosks.add(session, "k", [deployment["demo"]["shopId"]], None).access_key
    kiosk = KioskClient(relay.url, access_key)
    user = AppClient(relay.url, anvil_key(2))
    opened = kiosk.open_new(f"N-{secrets.token_hex(4)}", AMOUNT, "krw", deployment["demo"]["shopId"], user.address)
    typed = user.item(opened.paymentId).typedData
    assert typed is not None
    signature = user.sign(typed.confirm)

    anvil.send_signal(signal.SIGSTOP)
    hung: Counter[str] = Counter()
    start = time.monotonic()
    for _ in range(HUNG_REQUESTS):
        response = httpx.get(relay.url + "/v1/payment/user/balance", params={"account": user.address}, timeout=60)
        hung[f"{response.status_code}/{response.json().get('code')}"] += 1
    hung_seconds = time.monotonic() - start
    anvil.send_signal(signal.SIGCONT)
    after_hang = retry(lambda: user.item(opened.paymentId).paymentStatus)

    anvil.send_signal(signal.SIGTERM)
    anvil.wait(20)
    answers: Counter[str] = Counter()
    for method, path, params, body in (
        ("GET", "/v1/payment/user/balance", {"account": user.address}, None),
        ("POST", "/v1/payment/create/confirm", None, {"paymentId": opened.paymentId, "signature": signature}),
    ):
        response = httpx.request(method, relay.url + path, params=params, json=body, timeout=30)
        answers[f"{response.status_code}/{response.json().get('code')}"] += 1
    with database.Database(db_url).session() as session:
        status_while_down = session.get(Payment, opened.paymentId).status  # type: ignore[union-attr]

    anvil = start_anvil(port, log, accounts=20, state=state)
    result = user.approve(opened.paymentId)
    closed = retry(lambda: kiosk.close_new(opened.paymentId))
    problems = []
    if set(answers) != {"503/4001"}:
        problems.append(f"answers while down: {dict(answers)}")
    if status_while_down != 1:
        problems.append(f"status while down {status_while_down}")
    if closed.paymentStatus != 4:
        problems.append(f"final status {closed.paymentStatus}")
    relay.kill()
    stop([anvil])
    detail = (
        f"while down: {dict(answers)}, payment stayed {status_while_down}; "
        f"after: approved ({result.paymentStatus}), closed ({closed.paymentStatus})"
    )
    hang_problems = []
    if set(hung) != {"503/4001"}:
        hang_problems.append(f"answers while hung: {dict(hung)}")
    # Waiting out the timeout every time would take HUNG_REQUESTS x NODE_TIMEOUT seconds.
    if hung_seconds >= HUNG_REQUESTS * NODE_TIMEOUT / 2:
        hang_problems.append(f"{HUNG_REQUESTS} requests took {hung_seconds:.1f} s")
    if after_hang != 1:
        hang_problems.append(f"status after the hang {after_hang}")
    hang_detail = (
        f"{HUNG_REQUESTS} requests while hung ({NODE_TIMEOUT} s timeout): {dict(hung)} in {hung_seconds:.1f} s; "
        f"payment still {after_hang} after"
    )
    return [
        ("chain node hangs, then resumes", hang_detail, verdict(hang_problems)),
        ("chain node stopped and restarted", detail, verdict(problems)),
    ]


def postgres_restart(bench: System, seconds: float = 20) -> list[tuple[str, str, str]]:
    url, db_url, process = bench.start_relay(backend="postgresql", **RELAY_SETTINGS)
    from relay.sdk import KioskClient

    kiosk = KioskClient(url, bench.add_kiosk(db_url))
    users = [AppClient(url, key) for key in bench.fund_users(4, 1_000_000 * UNIT)]
    answers: Counter[str] = Counter()
    done: list[str] = []
    stop_at = time.monotonic() + seconds

    def pay(user: AppClient) -> str:
        purchase = f"R-{secrets.token_hex(5)}"
        payment_id: str = retry(
            lambda: kiosk.open_new(purchase, AMOUNT, "krw", bench.shop_id, user.address), 30
        ).paymentId

        def approve() -> None:
            if user.item(payment_id).paymentStatus == 1:
                user.approve(payment_id)

        retry(approve, 30)
        retry(lambda: kiosk.close_new(payment_id), 30)
        return payment_id

    def load(user: AppClient) -> None:
        while time.monotonic() < stop_at:
            try:
                done.append(pay(user))
                answers["ok"] += 1
            except Exception as exc:
                answers[type(exc).__name__] += 1

    threads = [threading.Thread(target=load, args=(u,)) for u in users]
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    cluster = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"], check=True)
    for t in threads:
        t.join()
    with database.Database(db_url).session() as session:
        stuck = session.execute(select(Payment).where(Payment.chain_op.is_not(None))).scalars().all()
        statuses = Counter(p.status for p in session.execute(select(Payment)).scalars())
    problems = []
    if stuck:
        problems.append(f"{len(stuck)} payments still waiting for a transaction")
    if statuses.get(4, 0) != len(done):
        problems.append(f"completed in db {statuses.get(4, 0)} != {len(done)} seen by clients")
    process.terminate()
    return [
        (
            "PostgreSQL restarted under load",
            f"{len(done)} payments completed, statuses {dict(statuses)}",
            verdict(problems),
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with system() as bench:
        rows += kill_matrix(bench, args.trials)
        rows += callback_outage(bench)
        rows += node_restart(bench)
        rows += postgres_restart(bench)
    print("\nFault matrix")
    for scenario, detail, result in rows:
        print(f"  {scenario:<36} {result:<6} {detail}")
    if any(result != "pass" for _, _, result in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
