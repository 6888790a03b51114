"""Fault injection: the relay killed (SIGKILL) in the middle of every step of flows 1.1 and 1.3, the
KIOSK's callback endpoint down for a while, the chain node hung, then stopped and restarted,
PostgreSQL restarted under load. After each, every payment is in its correct final state on the
chain and in the database, no escrow is left, and every callback id has arrived."""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import select

from bench.harness import (
    OWNER_INDEX,
    SIGNER_INDEXES,
    UNIT,
    UNLIMITED,
    Receiver,
    System,
    contract,
    free_port,
    loyalty_cli,
    wait_until,
)
from loyalty_sdk import AppClient, KioskClient
from relay import db as database
from relay.devnet import anvil_key, deploy, relay_env, start_anvil, start_relay, stop
from relay.models import Callback, CallbackState, Payment

AMOUNT = 10 * UNIT
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


# ----------------------------------------------------------------------------- the kill matrix


@dataclass
class KillSetup:
    relay: Relay
    receiver: Receiver
    db_url: str
    access_key: str
    user_key: str
    escrow_before: int


@pytest.fixture(scope="module")
def killed(bench: System) -> Iterator[KillSetup]:
    receiver = Receiver()
    db_url = bench.new_database("postgresql")
    relay = Relay(bench.relay_env(db_url, **RELAY_SETTINGS), bench.workdir / "kill.log")
    relay.start()
    try:
        [user_key] = bench.fund_users(1, 1_000_000 * UNIT)
        yield KillSetup(relay, receiver, db_url, bench.add_kiosk(db_url, receiver.url), user_key, bench.escrow())
    finally:
        relay.kill()
        receiver.close()


STEPS = {
    "1.1": ["openNew", "create/confirm", "closeNew"],
    "1.3": ["openCancel", "cancel/confirm", "closeCancel"],
}


@pytest.mark.parametrize(
    ("flow", "step"),
    [(flow, index) for flow, names in STEPS.items() for index in range(len(names))],
    ids=[f"{flow} {name}" for flow, names in STEPS.items() for name in names],
)
def test_kill__during_a_step__the_flow_finishes_once(bench, killed, quick, figure, flow, step):
    """SIGKILL the relay 0-80 ms into the step, restart it, retry the step, finish the flow."""
    trials = 1 if quick else 3
    failures = []
    redelivered = 0
    for trial in range(trials):
        delay = [0.0, 0.02, 0.08][trial % 3]
        try:
            problems, again = _kill_during(bench, killed, flow, step, delay)
            redelivered += again
        except Exception as exc:  # a flow that hangs or fails is a failure of the scenario
            problems = [f"{type(exc).__name__}: {exc}"]
        failures += [f"trial {trial}: {problem}" for problem in problems]
    detail = f"{trials} trials"
    if redelivered:
        detail += f", {redelivered} callback(s) sent again: killed mid-delivery, same webhook-id"
    figure(f"kill during {flow} {STEPS[flow][step]}", detail)
    assert not failures


def test_kill_matrix__leaves_nothing_in_escrow(bench, killed):
    # The chain is shared with the rest of the module: only what the matrix added counts.
    assert bench.escrow() - killed.escrow_before == 0


def _kill_during(bench: System, setup: KillSetup, flow: str, step_index: int, delay: float) -> tuple[list[str], int]:
    relay = setup.relay
    kiosk = KioskClient(relay.url, setup.access_key, timeout=30)
    user = AppClient(relay.url, setup.user_key, timeout=30)
    owner = AppClient(relay.url, anvil_key(OWNER_INDEX), timeout=30)
    purchase_id = f"F-{secrets.token_hex(5)}"
    payment_id: dict[str, str] = {}
    signature: dict[str, str] = {}

    def open_new() -> None:
        payment_id["id"] = kiosk.open_new(purchase_id, AMOUNT, "krw", bench.shop_id, user.address).paymentId

    def confirm(wallet: AppClient, path: str) -> Callable[[], None]:
        # The app sends the same signed approval again after a lost answer.
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

    flow_11 = [open_new, confirm(user, "create/confirm"), lambda: kiosk.close_new(payment_id["id"])]
    flow_13 = [
        lambda: kiosk.open_cancel(payment_id["id"]),
        confirm(owner, "cancel/confirm"),
        lambda: kiosk.close_cancel(payment_id["id"]),
    ]
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
    return _check_final(bench, setup, payment_id["id"], flow)


def _quiet(step: Callable[[], Any]) -> None:
    with contextlib.suppress(Exception):
        step()


def _check_final(bench: System, setup: KillSetup, payment_id: str, flow: str) -> tuple[list[str], int]:
    """Problems found, and how many callbacks arrived twice because the relay was killed while
    delivering them."""
    record = contract(bench.w3(), bench.deployment, "LoyaltyPayment").functions.paymentOf(payment_id).call()
    expected_chain, expected_db = (CHAIN_CLOSED, 4) if flow == "1.1" else (CHAIN_CANCELLED, 8)
    problems = []
    if record[4] != expected_chain:
        problems.append(f"chain status {record[4]} != {expected_chain}")
    db = database.Database(setup.db_url)
    try:
        with db.session() as session:
            payment = session.get(Payment, payment_id)
        if payment is None or payment.status != expected_db or payment.chain_op is not None:
            problems.append(f"db status {payment and payment.status} op {payment and payment.chain_op}")

        def all_delivered() -> dict[str, int] | None:
            with db.session() as session:
                rows = session.execute(
                    select(Callback.id, Callback.state, Callback.attempts).where(Callback.payment_id == payment_id)
                ).all()
            done = rows and all(state == CallbackState.DELIVERED for _, state, _ in rows)
            return {i: attempts for i, _, attempts in rows} if done else None

        # A callback the killed relay had claimed is retried when its lease ends.
        attempts = wait_until(all_delivered, float(RELAY_SETTINGS["callback_lease"]) + 30)
    finally:
        db.engine.dispose()
    # Delivery is at-least-once: the relay killed after the KIOSK took a callback but before it
    # recorded that sends it again (same webhook-id) after the restart. Any other repeat is a fault.
    arrivals = setup.receiver.arrivals(payment_id)
    redelivered = 0
    for callback_id, recorded in attempts.items():
        times = arrivals.get(callback_id, [])
        unrecorded = len(times) - recorded
        if unrecorded == 1 and times[0] < setup.relay.killed_at < times[1]:
            redelivered += 1
        elif unrecorded != 0:
            problems.append(f"callback {callback_id}: {len(times)} arrived, {recorded} attempts recorded")
    return problems, redelivered


# ----------------------------------------------------------------------------- the callback endpoint


def test_callback_receiver_down__retried_on_the_backoff_schedule_then_delivered_once(bench, figure):
    receiver = Receiver()
    url, db_url, process = bench.start_relay(**RELAY_SETTINGS)
    try:
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
        db = database.Database(db_url)
        with db.session() as session:
            attempts = {c.id: c.attempts for c in session.execute(select(Callback)).scalars()}
        db.engine.dispose()
        receiver.up = True
        back_at = time.time()
        wait_until(lambda: all(receiver.for_payment(p) for p in payments), 30)
    finally:
        process.terminate()
        receiver.close()
    delays = [t - back_at for t, _, _ in receiver.deliveries]
    ids = [i for _, i, _ in receiver.deliveries]
    gaps = _off_schedule([(at, callback_id) for at, callback_id, _ in receiver.attempts])
    ids_per_payment = Counter(payment for payment, _ in {(p, i) for _, i, p in receiver.attempts})
    figure(
        "callback receiver down, then back",
        f"down {back_at - down_since:.1f} s, {sum(attempts.values())} failed attempts, {len(gaps)} retries off the"
        f" backoff schedule, all {len(ids)} delivered {max(delays):.1f} s after recovery",
    )
    assert len(ids) == len(set(ids)), "a callback was delivered twice"
    assert min(attempts.values(), default=0) >= 2, f"too few attempts while down: {attempts}"
    assert not gaps, f"retries off the backoff schedule: {gaps[:3]}"
    assert sorted(ids_per_payment) == sorted(payments) and max(ids_per_payment.values()) == 1, ids_per_payment


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


# ----------------------------------------------------------------------------- the chain node

HUNG_REQUESTS = 10
NODE_TIMEOUT = 2


@dataclass
class NodeOutage:
    hung: Counter[str]
    hung_seconds: float
    after_hang: int
    answers_while_down: Counter[str]
    status_while_down: int | None
    approved: int
    closed: int


@pytest.fixture(scope="module")
def node_outage(bench: System) -> NodeOutage:
    """A separate anvil with a state file. First it hangs (SIGSTOP: connections are accepted, no
    answer comes); then it is stopped (SIGTERM: state saved) and started again."""
    port = free_port()
    state = bench.workdir / "anvil-state.json"
    log = bench.workdir / "anvil-restart.log"
    anvil = start_anvil(port, log, accounts=20, state=state)
    relay: Relay | None = None
    try:
        rpc = f"http://127.0.0.1:{port}"
        relays = [Account.from_key(anvil_key(i)).address for i in (0, SIGNER_INDEXES[0])]
        deployment_file = bench.workdir / "restart-deployment.json"
        shop_id = deploy(rpc, deployment_file, relays, bench.workdir / "deploy-restart.log")["demo"]["shopId"]
        db_url = bench.new_database("postgresql")
        settings = UNLIMITED | RELAY_SETTINGS | {"rpc_timeout": NODE_TIMEOUT}
        env = relay_env(db_url, rpc, deployment_file, [anvil_key(SIGNER_INDEXES[0])], **settings)
        relay = Relay(env, bench.workdir / "relay-restart.log")
        relay.start()
        access_key = "kk_node_" + secrets.token_hex(12)
        loyalty_cli(env, "kiosk", "add", "--name", "node", "--shop", shop_id, "--access-key", access_key)
        kiosk = KioskClient(relay.url, access_key)
        user = AppClient(relay.url, anvil_key(2))
        opened = kiosk.open_new(f"N-{secrets.token_hex(4)}", AMOUNT, "krw", shop_id, user.address)
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
        db = database.Database(db_url)
        with db.session() as session:
            row = session.get(Payment, opened.paymentId)
            status_while_down = row.status if row is not None else None
        db.engine.dispose()

        anvil = start_anvil(port, log, accounts=20, state=state)
        approved = user.approve(opened.paymentId).paymentStatus
        closed = retry(lambda: kiosk.close_new(opened.paymentId)).paymentStatus
        return NodeOutage(hung, hung_seconds, after_hang, answers, status_while_down, approved, closed)
    finally:
        if relay is not None:
            relay.kill()
        stop([anvil])


def test_chain_node_hangs__requests_answer_503_at_once_and_the_payment_waits(node_outage, figure):
    outage = node_outage
    figure(
        "chain node hangs, then resumes",
        f"{HUNG_REQUESTS} requests while hung ({NODE_TIMEOUT} s timeout): {dict(outage.hung)} in"
        f" {outage.hung_seconds:.1f} s; payment still {outage.after_hang} after",
    )
    assert set(outage.hung) == {"503/4001"}
    # Waiting out the timeout every time would take HUNG_REQUESTS x NODE_TIMEOUT seconds.
    assert outage.hung_seconds < HUNG_REQUESTS * NODE_TIMEOUT / 2
    assert outage.after_hang == 1


def test_chain_node_stopped_and_restarted__503_then_the_payment_completes(node_outage, figure):
    outage = node_outage
    figure(
        "chain node stopped and restarted",
        f"while down: {dict(outage.answers_while_down)}, payment stayed {outage.status_while_down};"
        f" after: approved ({outage.approved}), closed ({outage.closed})",
    )
    assert set(outage.answers_while_down) == {"503/4001"}
    assert outage.status_while_down == 1
    assert (outage.approved, outage.closed) == (2, 4)


# ----------------------------------------------------------------------------- PostgreSQL


def test_postgres_restarted_under_load__every_payment_the_clients_saw_completes(bench, quick, figure):
    seconds = 10 if quick else 20
    url, db_url, process = bench.start_relay(**RELAY_SETTINGS)
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
    try:
        for t in threads:
            t.start()
        time.sleep(seconds / 3)
        cluster = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "restart"], check=True)
        for t in threads:
            t.join()
        db = database.Database(db_url)
        with db.session() as session:
            stuck = session.execute(select(Payment).where(Payment.chain_op.is_not(None))).scalars().all()
            statuses = Counter(p.status for p in session.execute(select(Payment)).scalars())
        db.engine.dispose()
    finally:
        process.terminate()
    figure(
        "PostgreSQL restarted under load",
        f"{len(done)} payments completed, statuses {dict(statuses)}, client attempts {dict(answers)}",
    )
    assert not stuck, f"{len(stuck)} payments still waiting for a transaction"
    assert statuses.get(4, 0) == len(done), (
        f"completed in the database {statuses.get(4, 0)}, seen by clients {len(done)}"
    )
