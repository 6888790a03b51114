"""What happens when things go wrong: the relay is killed mid-flow, the KIOSK's callback endpoint
is down, nobody decides or closes in time, the chain node is unreachable, the chain rejects an
operation. The restart runs on both database backends; the rest on SQLite or dedicated relays."""

from __future__ import annotations

import itertools
import secrets
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from eth_account import Account
from sqlalchemy import select, update

from loyalty_sdk import AppClient
from relay import chain as onchain
from relay import db as database
from relay.cli import add_kiosk, new_callback_secret
from relay.devnet import anvil_key
from relay.models import Callback, CallbackState, Notification, Payment
from relay.models import PaymentStatus as S
from relay.services import decisions, kiosks
from tests.relay.checks import (
    balance_of,
    call,
    count_payments,
    count_rows,
    decide,
    fails,
    item,
    kiosk_post,
    ok,
    open_new,
    payment_on_chain,
    session_of,
    sqlite_only,
)
from tests.relay.conftest import POINT_USER, SIGNERS, UNIT, free_port, in_process, wait_until

TEN_KRW = 10 * UNIT
FEE = UNIT // 2


def _open(relay, kiosk, wallet, shop_id, amount=TEN_KRW):
    return ok(open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", amount, shop_id, wallet.address))


def _callback_rows(relay, payment_id):
    """The payment's callbacks in the order they were queued."""
    with session_of(relay) as session:
        query = select(Callback).where(Callback.payment_id == payment_id).order_by(Callback.created_at, Callback.id)
        return list(session.execute(query).scalars())


def _closed_once(relay, anvil, deployment, payment_id, answers):
    """Several closeNew calls of one payment: each answered the completed payment or that the
    close is under way; the payment is closed on chain and its KIOSK got one success callback."""
    closed = [ok(a) for a in answers if a.status_code == 200]
    assert closed and all(c["paymentStatus"] == S.COMPLETED for c in closed)
    for busy in (a for a in answers if a.status_code != 200):
        assert "waiting for its transaction" in fails(busy, 409, 3001)
    assert payment_on_chain(anvil, deployment, payment_id)["status"] == onchain.CLOSED
    assert [(c.type, c.code) for c in _callback_rows(relay, payment_id)] == [("create", 0)]


# ----------------------------------------------------------------------------- (a) restart


def test_restart__killed_right_after_confirm__one_callback_and_the_payment_closes(
    relay, kiosk, user, shop_id, callbacks, anvil
):
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    rpc = _Rpc(anvil)
    rpc("evm_setAutomine", False)  # the open stays pending until the relay is gone
    try:
        approved = user.approve(payment_id)
        relay.stop(kill=True)
    finally:
        rpc("evm_mine")
        rpc("evm_setAutomine", True)

    # The open was sent, and mined once the relay that followed it was gone: it has not been
    # recorded and no callback is queued.
    with session_of(relay) as session:
        payment = session.get(Payment, payment_id)
        assert (payment.status, payment.chain_op, payment.chain_tx) == (S.APPROVED, "open", approved.txHash)
    assert _callback_rows(relay, payment_id) == []

    relay.start()  # its chain watcher finishes the open

    [callback] = callbacks.wait_for(payment_id)
    assert (callback.json["type"], callback.json["code"]) == ("create", 0)
    assert callback.json["data"]["totalPoint"] == str(TEN_KRW + FEE)
    closed = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
    assert closed["paymentStatus"] == S.COMPLETED
    time.sleep(1.0)  # a few more worker rounds: nothing is delivered twice
    deliveries = callbacks.for_payment(payment_id, accepted_only=False)
    assert len(deliveries) == 1 and len({d.id for d in deliveries}) == 1
    assert [(row.id, row.state, row.attempts) for row in _callback_rows(relay, payment_id)] == [
        (callback.id, CallbackState.DELIVERED, 1)
    ]


def test_restart__killed_while_the_kiosk_takes_a_callback__sent_again_with_the_same_id(
    relay, kiosk, new_wallet, shop_id, callbacks
):
    """Delivery is at-least-once: a callback the KIOSK received but the killed relay had not yet
    recorded is sent again once the dead relay's lease on it ends, with the same webhook-id and
    body, so the KIOSK can de-duplicate it; it is recorded as delivered once."""
    from sqlalchemy import update

    from relay.models import now

    wallet = new_wallet(relay, 100 * UNIT)
    payment_id = _open(relay, kiosk, wallet, shop_id)["paymentId"]
    callbacks.hold = threading.Event()
    try:
        wallet.approve(payment_id)
        [first] = callbacks.wait_for(payment_id)  # taken by the KIOSK, not yet answered
        relay.stop(kill=True)
    finally:
        callbacks.hold.set()
        callbacks.hold = None
    [row] = _callback_rows(relay, payment_id)
    assert (row.id, row.state, row.attempts) == (first.id, CallbackState.PENDING, 0)
    assert row.locked_until > now()  # leased by the relay that was killed
    with session_of(relay) as session:  # the lease runs out (RELAY_CALLBACK_LEASE)
        session.execute(update(Callback).where(Callback.id == row.id).values(locked_until=now() - 1))

    relay.start()

    first_again = callbacks.wait_for(payment_id, count=2)
    assert [(d.id, d.body) for d in first_again] == [(first.id, first.body)] * 2
    wait_until(lambda: _callback_rows(relay, payment_id)[0].state == CallbackState.DELIVERED)
    [row] = _callback_rows(relay, payment_id)
    assert row.attempts == 1
    assert ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))["paymentStatus"] == S.COMPLETED


def test_settings__callback_lease_no_longer_than_one_delivery__refused():
    """A lease that could end while its delivery still runs would let a second worker send the
    same callback alongside it."""
    from pydantic import ValidationError

    from relay.config import Settings

    with pytest.raises(ValidationError, match="callback_lease"):
        Settings(database_url="sqlite://", callback_timeout=10, callback_lease=10)
    assert Settings(database_url="sqlite://", callback_timeout=10, callback_lease=11).callback_lease == 11


def test_close__sent_while_the_approval_is_still_being_mined__waits_for_it_and_closes(
    relay, kiosk, user, shop_id, anvil, deployment
):
    """A KIOSK may close the moment the app approves: the relay waits for the approval's
    transaction instead of answering that the payment is busy. Two closes waiting together (a
    KIOSK retrying): the approval is recorded once and one of them closes; the other answers
    that the close is under way or, if it comes last, the closed payment."""
    rpc = _Rpc(anvil)
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    rpc("evm_setAutomine", False)
    try:
        approved = user.approve(payment_id)
        assert rpc("eth_getTransactionReceipt", approved.txHash) is None  # not mined yet
        with ThreadPoolExecutor(2) as pool:
            closings = [pool.submit(kiosk_post, relay.url, "closeNew", kiosk.access_key, payment_id) for _ in "ab"]
            time.sleep(1.0)
            assert not any(c.done() for c in closings)  # waiting for the approval, not failing
            rpc("evm_mine")  # mines the approval
            rpc("evm_setAutomine", True)  # and lets the close through
            answers = [c.result(timeout=30) for c in closings]
    finally:
        rpc("evm_setAutomine", True)
    _closed_once(relay, anvil, deployment, payment_id, answers)


@pytest.mark.parametrize("flow", ["new", "cancel"])
def test_close__retry_waiting_for_the_approval_while_the_first_close_completes__answers_the_closed_payment(
    flow, relay, backend, kiosk, user, owner, shop_id, anvil, deployment
):
    """A KIOSK retries closeNew (closeCancel) while the user's (owner's) approval is still being
    mined; its first close (here through the relay process) records the approval and completes
    while the retry waits. The retry answers the completed payment, as any retry of a done close
    does, not "needs status 2" (6)."""
    rpc = _Rpc(anvil)
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    endpoint, approver, done, on_chain = "closeNew", user, S.COMPLETED, onchain.CLOSED
    if flow == "cancel":
        user.approve(payment_id)
        ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
        ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
        endpoint, approver, done, on_chain = "closeCancel", owner, S.CANCEL_COMPLETED, onchain.CANCELLED
    rpc("evm_setAutomine", False)
    try:
        approver.approve(payment_id)
    finally:
        rpc("evm_setAutomine", True)
    with in_process(relay, anvil, deployment, SIGNERS["spare"]) as local:
        settled = local.payments._settled

        def first_close_completes_meanwhile(p):
            rpc("evm_mine")
            assert ok(kiosk_post(relay.url, endpoint, kiosk.access_key, payment_id))["paymentStatus"] == done
            return settled(p)

        local.payments._settled = first_close_completes_meanwhile
        with local.db.session() as session:
            kiosk_account = kiosks.authenticate(session, kiosk.access_key)
        close = local.payments.close_new if flow == "new" else local.payments.close_cancel
        retried = close(kiosk_account, payment_id, confirm=True)
    assert (retried.status, retried.chain_op) == (done, None)
    assert payment_on_chain(anvil, deployment, payment_id)["status"] == on_chain
    successes = [c.type for c in _callback_rows(relay, payment_id) if c.code == 0]
    assert successes == (["create"] if flow == "new" else ["create", "cancel"])


@sqlite_only
def test_closes_waiting_for_a_block__more_than_the_request_threads__other_requests_still_answer(
    relay, kiosk, user, shop_id, anvil, deployment
):
    """On a chain with blocks seconds apart every close waits for its block. More closes waiting
    at once than the 40 threads that serve requests (here 45 KIOSK retries of one close while its
    approval is being mined) must not leave reads, approvals and new payments without a thread."""
    rpc = _Rpc(anvil)
    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    rpc("evm_setAutomine", False)
    try:
        user.approve(payment_id)
        with ThreadPoolExecutor(45) as pool:
            closings = [pool.submit(kiosk_post, relay.url, "closeNew", kiosk.access_key, payment_id) for _ in range(45)]
            time.sleep(2.0)
            assert not any(c.done() for c in closings)  # all waiting for the approval's block
            start = time.monotonic()
            read = httpx.get(f"{relay.url}/v1/payment/item", params={"paymentId": payment_id}, timeout=10)
            assert ok(read)["paymentStatus"] == S.APPROVED
            assert time.monotonic() - start < 2.0
            rpc("evm_mine")
            rpc("evm_setAutomine", True)
            answers = [c.result(timeout=60) for c in closings]
    finally:
        rpc("evm_setAutomine", True)
    _closed_once(relay, anvil, deployment, payment_id, answers)


def test_signer_nonce_used_elsewhere__the_relay_takes_the_node_s_count_and_goes_on(
    relay, backend, kiosk, user, shop_id, anvil, deployment
):
    """Someone sends with the relay's signer key behind its back: the stored nonce is stale, the
    node answers "nonce too low", and the relay resyncs instead of failing every payment."""
    pay = _open(relay, kiosk, user, shop_id)["paymentId"]
    user.approve(pay)  # the signer's nonce is now stored in the database
    assert ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, pay))["paymentStatus"] == S.COMPLETED
    rpc = _Rpc(anvil)
    signer = Account.from_key(anvil_key(SIGNERS[backend])).address
    for _ in range(2):
        rpc("eth_sendTransaction", {"from": signer, "to": signer, "value": "0x0"})

    payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
    user.approve(payment_id)
    closed = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
    assert closed["paymentStatus"] == S.COMPLETED
    assert payment_on_chain(anvil, deployment, payment_id)["status"] == onchain.CLOSED


@dataclass
class _ClaimedApproval:
    """A payment whose approval the relay has claimed but whose transaction's hash it has not yet
    recorded; `send` is the approval's openNewPayment call."""

    db: Any
    chain: Any
    payments: Any
    wallet: AppClient
    payment_id: str
    send: Any

    def record(self, tx: str) -> None:
        """What the relay does next: records the hash (its chain watcher then finishes it)."""
        from sqlalchemy import update

        with self.db.session() as session:
            session.execute(
                update(Payment).where(Payment.payment_id == self.payment_id).values(chain_tx=tx, open_tx=tx)
            )

    def finished(self) -> bool:
        with self.db.session() as session:
            return session.get(Payment, self.payment_id).chain_op is None


@contextmanager
def _claimed_approval(relay, backend, kiosk, new_wallet, shop_id, anvil, deployment):
    from sqlalchemy import update

    from relay.models import ChainOp, now

    wallet = new_wallet(relay, 100 * UNIT)
    payment_id = _open(relay, kiosk, wallet, shop_id)["paymentId"]
    signature = wallet.sign(wallet.item(payment_id).typedData.confirm)
    with in_process(relay, anvil, deployment, SIGNERS[backend]) as local:
        with local.db.session() as session:
            claimed = session.execute(
                update(Payment)
                .where(Payment.payment_id == payment_id)
                .values(status=S.APPROVED, chain_op=ChainOp.OPEN, chain_op_at=now(), signer=wallet.address,
                        signature=signature)
                .returning(Payment)
            ).scalar_one()  # fmt: skip
        send = local.ops.table[ChainOp.OPEN].call(claimed, local.ops.settings)
        yield _ClaimedApproval(local.db, local.chain, local, wallet, payment_id, send)


def _send(approval: _ClaimedApproval) -> str:
    tx = approval.chain.send(approval.send, approval.payments.ops.nonces, gas=300_000)
    assert approval.payments.watcher.wait(tx, 10).receipt["status"] == 1
    return tx


def _expected_nonce(approval: _ClaimedApproval, account: str) -> int:
    with approval.db.session() as session:
        return decisions.expected_nonce(session, approval.chain, account)


def test_expected_nonce__signature_mined_before_its_hash_or_receipt_is_seen__counted_once(
    relay, backend, kiosk, new_wallet, shop_id, anvil, deployment, monkeypatch
):
    """The window between a relay sending a user-signed transaction and recording its hash: with
    the transaction already mined, the user's next signature must carry the on-chain nonce, not
    one more (the approval would be refused as someone else's signature)."""
    with _claimed_approval(relay, backend, kiosk, new_wallet, shop_id, anvil, deployment) as approval:
        chain, account = approval.chain, approval.wallet.address
        tx = _send(approval)

        assert chain.payment_nonce(account) == 1
        assert _expected_nonce(approval, account) == 1

        approval.record(tx)
        # The node's receipt index may lag the state it belongs to: the count must not depend on it.
        monkeypatch.setattr(chain, "receipt", lambda tx_hash: None)
        assert _expected_nonce(approval, account) == 1
        monkeypatch.undo()
        wait_until(approval.finished)


def test_expected_nonce__signature_sent_while_the_nonce_is_read__counted_once(
    relay, backend, kiosk, new_wallet, shop_id, anvil, deployment, monkeypatch
):
    """A claimed signature handed to the node between the reads of the user's nonce and of its
    payment's state is in neither: the count must see it (the next signature carries nonce 1)."""
    with _claimed_approval(relay, backend, kiosk, new_wallet, shop_id, anvil, deployment) as approval:
        chain, account = approval.chain, approval.wallet.address
        read_nonce = chain.payment_nonce
        sent = []

        def nonce_then_send(account, block="latest"):
            nonce = read_nonce(account, block)
            if not sent:  # the relay's send lands right after the first read
                sent.append(_send(approval))
            return nonce

        monkeypatch.setattr(chain, "payment_nonce", nonce_then_send)
        assert _expected_nonce(approval, account) == 1
        assert read_nonce(account) == 1

        approval.record(sent[0])
        wait_until(approval.finished)


def test_node_drops_a_relay_transaction__its_nonce_is_filled_and_it_is_sent_again(
    relay, backend, kiosk, new_wallet, shop_id, anvil, deployment
):
    """The node loses an approval's transaction (a restart, a pool eviction) while the relay's
    next transaction waits in its pool behind the missing nonce: without repair neither would
    ever be mined."""
    rpc = _Rpc(anvil)
    first, second = new_wallet(relay, 100 * UNIT), new_wallet(relay, 100 * UNIT)
    lost = _open(relay, kiosk, first, shop_id)["paymentId"]
    queued = _open(relay, kiosk, second, shop_id)["paymentId"]
    rpc("evm_setAutomine", False)
    try:
        lost_tx = first.approve(lost).txHash
        rpc("anvil_dropTransaction", lost_tx)
        queued_tx = second.approve(queued).txHash
    finally:
        rpc("evm_setAutomine", True)
    rpc("evm_mine")
    assert rpc("eth_getTransactionReceipt", queued_tx) is None  # stuck behind the lost nonce

    with in_process(relay, anvil, deployment, SIGNERS[backend], receipt_timeout=0.5) as local:
        time.sleep(2.5)
        # What the watcher's sweep does once the receipt timeout has passed: the waiting one gets
        # the lost nonce filled; the lost one is sent again.
        local.ops.in_flight()
        assert wait_until(lambda: rpc("eth_getTransactionReceipt", queued_tx))["status"] == "0x1"
        assert wait_until(lambda: payment_on_chain(anvil, deployment, lost)["status"] == onchain.OPEN)
    for payment_id in (lost, queued):
        closed = ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))
        assert closed["paymentStatus"] == S.COMPLETED


class _Rpc:
    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, method: str, *params: object) -> object:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        return httpx.post(self.url, json=body, timeout=30).json()["result"]


@sqlite_only
def test_receipt_wait__polls_at_growing_intervals_and_answers_soon_after_mining(relay, anvil, deployment, backend):
    """A request waiting for a transaction on a chain whose blocks are seconds apart asks the node
    a few times a second, not a hundred; a mined transaction is still seen within half a second."""
    from relay.workers.watcher import POLL_MAX

    local_context = in_process(relay, anvil, deployment, SIGNERS[backend])
    local = local_context.__enter__()
    chain, watcher = local.chain, local.watcher
    polls: list[float] = []
    result = chain.rpc.result

    def counted(method, params):
        polls.append(time.monotonic())
        return result(method, params)

    chain.rpc.result = counted  # every call the wait makes (receipts, block numbers)
    start = time.monotonic()
    assert watcher.wait("0x" + "ab" * 32, 2.0) is None  # never mined
    assert 2.0 <= time.monotonic() - start < 2.5
    # The watcher's ask when the hash is handed over, then block numbers at growing intervals:
    # about 14; a fixed 10 ms interval polls ~200 times.
    assert len(polls) <= 20
    assert max(b - a for a, b in itertools.pairwise(polls)) <= POLL_MAX + 0.1

    rpc = _Rpc(anvil)
    sender = Account.from_key(anvil_key(9)).address
    rpc("evm_setAutomine", False)
    try:
        tx = rpc("eth_sendTransaction", {"from": sender, "to": sender, "value": "0x1"})
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(watcher.wait, tx, 30.0)
            time.sleep(1.5)
            assert not waiting.done()
            rpc("evm_mine")
            mined = time.monotonic()
            assert waiting.result(timeout=5).receipt["status"] == 1
            assert time.monotonic() - mined < POLL_MAX + 0.2
    finally:
        rpc("evm_setAutomine", True)
        local_context.__exit__(None, None, None)


@sqlite_only
def test_keep_alive__idle_connection_longer_than_clients_keep_theirs__still_answers(relay):
    """A client (httpx keeps idle connections 5 s) must never send on a connection the relay has
    just closed: the relay keeps idle connections open longer than that."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(relay.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
    try:
        for pause in (0.0, 6.0):
            time.sleep(pause)
            connection.request("GET", "/v1/payment/chain")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
    finally:
        connection.close()


# ----------------------------------------------------------------------------- (b) KIOSK down


@sqlite_only
def test_callback_receiver_down__retried_with_the_same_id_until_delivered(relay, kiosk, user, shop_id, callbacks):
    callbacks.status = 500
    try:
        payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
        user.deny(payment_id)
        wait_until(lambda: len(callbacks.for_payment(payment_id)) >= 3)
        [pending] = _callback_rows(relay, payment_id)
        assert pending.state == CallbackState.PENDING and pending.last_error == "HTTP 500"
    finally:
        callbacks.status = 200

    [row] = wait_until(
        lambda: (rows := _callback_rows(relay, payment_id)) and rows[0].state == CallbackState.DELIVERED and rows
    )
    attempts = callbacks.for_payment(payment_id)
    assert len(attempts) == row.attempts >= 4
    assert {a.id for a in attempts} == {row.id}
    assert {a.body for a in attempts} == {row.body}
    assert all(a.verified for a in attempts)
    assert (attempts[0].json["type"], attempts[0].json["code"]) == ("create", 1001)
    # On the retry schedule: after the k-th failure the next attempt waits the backoff, 0.2 s
    # doubling up to 1 s (this relay's settings) and stretched by up to 20 % of jitter, and comes
    # within a worker poll (0.25 s) of being due, give or take a busy machine.
    for k, (failed, retried) in enumerate(itertools.pairwise(attempts), start=1):
        delay = min(0.2 * 2 ** (k - 1), 1.0)
        assert delay <= retried.at - failed.at <= delay * 1.2 + 0.25 + 1.5, (k, retried.at - failed.at)


@sqlite_only
def test_callback_endpoint_hangs__other_kiosks_callbacks_still_delivered_at_once(
    relay, kiosk, user, shop_id, callbacks
):
    """A KIOSK whose callback endpoint accepts connections and never answers holds at most two of
    the sender's threads, each for the callback timeout (10 s); every other KIOSK's callbacks go
    out meanwhile."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        with session_of(relay) as session:
            stuck = add_kiosk(session, "hung-endpoint", [shop_id], f"http://127.0.0.1:{hung.getsockname()[1]}/cb")
        try:
            for _ in range(10):
                payment_id = _open(relay, stuck, user, shop_id)["paymentId"]
                user.deny(payment_id)
            time.sleep(1)  # the hung KIOSK's callbacks are out, waiting for an answer

            start = time.monotonic()
            payment_id = _open(relay, kiosk, user, shop_id)["paymentId"]
            user.deny(payment_id)
            [callback] = callbacks.wait_for(payment_id)
            assert callback.verified and time.monotonic() - start < 3.0
        finally:
            with session_of(relay) as session:  # no more attempts at the hung endpoint
                session.execute(update(Callback).where(Callback.kiosk_id == stuck.id).values(state=CallbackState.DEAD))


def test_callbacks_of_one_payment__delivered_in_the_order_queued(new_database, shop_id):
    """A payment's cancel callback never overtakes its create callback, even when both are due
    (the sender delivers a batch in parallel) or the first is waiting for a retry."""
    from sqlalchemy import update

    from relay import db as database
    from relay.config import Settings
    from relay.models import CallbackState
    from relay.services.outbox import enqueue_callback
    from relay.workers.callbacks import CallbackSender

    url = new_database("postgresql")
    database.upgrade(url)
    db = database.Database(url)
    sender = CallbackSender(db, Settings(database_url=url, allow_private_callbacks=True))
    try:
        with db.session() as session:
            kiosk_id = add_kiosk(session, "ordered", [shop_id], "http://127.0.0.1:9/cb").id
        ids = {}
        for name, payment in (("create", "0xaa"), ("cancel", "0xaa"), ("other", "0xbb")):
            with db.session() as session:
                ids[name] = enqueue_callback(session, kiosk_id, payment, "create", 0, name, {})
            time.sleep(0.01)

        assert sorted(d.id for d in sender.claim()[0]) == sorted([ids["create"], ids["other"]])

        with db.session() as session:  # the create callback failed; its retry is not due yet
            session.execute(
                update(Callback).where(Callback.id == ids["create"]).values(next_attempt_at=time.time() + 60)
            )
        assert sender.claim()[0] == []
        with db.session() as session:
            session.execute(update(Callback).where(Callback.id == ids["create"]).values(state=CallbackState.DELIVERED))
        assert [d.id for d in sender.claim()[0]] == [ids["cancel"]]
    finally:
        sender.close()
        db.engine.dispose()


def test_callback_that_waited_for_a_thread_until_its_lease_runs_short__not_sent_left_for_a_new_claim(
    new_database, shop_id, callbacks
):
    """An attempt that could outlast its lease might run alongside the next claim's: it is not made."""
    from relay import db as database
    from relay.config import Settings
    from relay.services.outbox import enqueue_callback
    from relay.workers.callbacks import CallbackSender

    url = new_database("sqlite")
    database.upgrade(url)
    db = database.Database(url)
    sender = CallbackSender(
        db, Settings(database_url=url, callback_timeout=10, callback_lease=40, allow_private_callbacks=True)
    )
    payment_id = "0x" + secrets.token_hex(32)
    try:
        secret = new_callback_secret()
        with db.session() as session:
            kiosk_id = add_kiosk(session, "late", [shop_id], callbacks.url("late", secret), callback_secret=secret).id
            callback_id = enqueue_callback(
                session, kiosk_id, payment_id, "create", 0, "late", {"paymentId": payment_id}
            )
        [due] = sender.claim()[0]

        sender.deliver(due._replace(leased_until=time.time() + 9))  # less than one attempt left
        assert callbacks.for_payment(payment_id, accepted_only=False) == []
        with db.session() as session:
            row = session.get(Callback, callback_id)
            assert row is not None and (row.state, row.attempts) == (CallbackState.PENDING, 0)

        sender.deliver(due)  # a whole lease left: sent and recorded
        assert [c.id for c in callbacks.for_payment(payment_id)] == [callback_id]
    finally:
        sender.close()
        db.engine.dispose()


# ----------------------------------------------------------------------------- (c) timeouts


@pytest.fixture(scope="module")
def timeouts_relay(start_relay):
    # The payment timeout leaves the approval test 3-4 s (openNew's timestamp is whole seconds)
    # to approve in time, even on a busy machine.
    relay = start_relay("timeouts", signer=SIGNERS["timeouts"], payment_timeout=4, close_timeout=3)
    yield relay
    relay.stop()  # its workers poll; no need to keep them busy for the rest of the session


def test_timeout__no_decision__status_9_and_callback_2000(timeouts_relay, make_kiosk, shop_id, callbacks, new_wallet):
    kiosk = make_kiosk(timeouts_relay, [shop_id])
    wallet = new_wallet(timeouts_relay, 100 * UNIT)
    payment_id = _open(timeouts_relay, kiosk, wallet, shop_id)["paymentId"]

    wait_until(lambda: item(timeouts_relay.url, payment_id)["paymentStatus"] == S.TIMEOUT, timeout=15)

    [callback] = callbacks.wait_for(payment_id)
    assert callback.verified and (callback.json["type"], callback.json["code"]) == ("create", 2000)
    assert item(timeouts_relay.url, payment_id)["typedData"] is None
    fails(kiosk_post(timeouts_relay.url, "closeNew", kiosk.access_key, payment_id), 409, 3001)
    assert balance_of(timeouts_relay.url, wallet.address) == 100 * UNIT


def test_timeout__cancel_with_no_decision__payment_stands_and_cancel_callback_2000(
    timeouts_relay, make_kiosk, shop_id, callbacks, new_wallet
):
    kiosk = make_kiosk(timeouts_relay, [shop_id])
    wallet = new_wallet(timeouts_relay, 100 * UNIT)
    payment_id = _open(timeouts_relay, kiosk, wallet, shop_id)["paymentId"]
    wallet.approve(payment_id)
    ok(kiosk_post(timeouts_relay.url, "closeNew", kiosk.access_key, payment_id))
    paid = balance_of(timeouts_relay.url, wallet.address)

    ok(kiosk_post(timeouts_relay.url, "openCancel", kiosk.access_key, payment_id))

    wait_until(lambda: len(callbacks.for_payment(payment_id)) == 2, timeout=20)
    assert [(c.json["type"], c.json["code"]) for c in callbacks.for_payment(payment_id)] == [
        ("create", 0),
        ("cancel", 2000),
    ]
    assert item(timeouts_relay.url, payment_id)["paymentStatus"] == S.COMPLETED
    assert balance_of(timeouts_relay.url, wallet.address) == paid < 100 * UNIT


def test_timeout__approved_but_never_closed__refunded_on_chain_and_callback_2000(
    timeouts_relay, make_kiosk, shop_id, callbacks, new_wallet, anvil, deployment
):
    kiosk = make_kiosk(timeouts_relay, [shop_id])
    wallet = new_wallet(timeouts_relay, 100 * UNIT)
    payment_id = _open(timeouts_relay, kiosk, wallet, shop_id)["paymentId"]
    wallet.approve(payment_id)
    [approved] = callbacks.wait_for(payment_id)
    assert approved.json["code"] == 0
    assert balance_of(timeouts_relay.url, wallet.address) == 100 * UNIT - TEN_KRW - FEE

    wait_until(lambda: item(timeouts_relay.url, payment_id)["paymentStatus"] == S.REFUNDED, timeout=20)

    assert balance_of(timeouts_relay.url, wallet.address) == 100 * UNIT
    assert payment_on_chain(anvil, deployment, payment_id)["status"] == onchain.REFUNDED
    approved_, timed_out = callbacks.wait_for(payment_id, count=2)
    assert approved_.id == approved.id
    assert timed_out.verified and (timed_out.json["type"], timed_out.json["code"]) == ("create", 2000)
    fails(kiosk_post(timeouts_relay.url, "closeNew", kiosk.access_key, payment_id), 409, 3001)


# ----------------------------------------------------------------------------- (d) node unreachable


@pytest.fixture
def offline_relay(start_relay):
    """A relay whose chain node is a closed port."""
    relay = start_relay("offline", signer=SIGNERS["spare"], rpc_url=f"http://127.0.0.1:{free_port()}")
    yield relay
    relay.stop()


def test_chain_unreachable__503_4001_and_nothing_written(offline_relay, make_kiosk, shop_id):
    offline = offline_relay
    kiosk = make_kiosk(offline, [shop_id])
    user = AppClient(offline.url, anvil_key(POINT_USER))

    fails(call(offline.url, "GET", "/v1/payment/user/balance", params={"account": user.address}), 503, 4001)
    params = {"account": user.address, "amount": str(TEN_KRW), "currency": "krw"}
    fails(call(offline.url, "GET", "/v1/payment/info", params=params), 503, 4001)
    fails(open_new(offline.url, kiosk.access_key, "P-offline", TEN_KRW, shop_id, user.address), 503, 4001)
    fails(call(offline.url, "GET", "/v1/payment/shop/info", params={"shopId": shop_id}), 503, 4001)

    assert count_payments(offline) == 0
    assert count_rows(offline, Notification) == 0
    assert count_rows(offline, Callback) == 0


@pytest.fixture
def hung_node_relay(start_relay):
    """A relay whose chain node accepts connections and never answers (a listening socket nobody
    reads: the kernel completes the connections, the requests wait forever)."""
    with socket.socket() as node:
        node.bind(("127.0.0.1", 0))
        node.listen(256)
        url = f"http://127.0.0.1:{node.getsockname()[1]}"
        relay = start_relay("hung", signer=SIGNERS["spare"], rpc_url=url, rpc_timeout=1)
        yield relay
        relay.stop()


def test_chain_node_not_answering__503_4001_without_waiting_each_time(hung_node_relay, shop_id):
    """After the node has timed out once, requests answer 503 at once for a pause instead of each
    waiting out the timeout (and holding a request thread meanwhile)."""
    relay = hung_node_relay
    account = Account.from_key(anvil_key(POINT_USER)).address
    start = time.monotonic()
    for _ in range(10):
        fails(call(relay.url, "GET", "/v1/payment/user/balance", params={"account": account}), 503, 4001)
    # 1 s timeout, 1 s pause: a few calls wait for the node (the first, a probe after each pause),
    # the rest answer at once. Waiting each time would take at least 10 s.
    assert time.monotonic() - start < 5.0


# ----------------------------------------------------------------------------- (e) chain rejects


@sqlite_only
def test_chain_rejects_the_open__balance_spent_since__422_3004_status_10_and_callback_1002(
    relay, kiosk, shop_id, callbacks, new_wallet, anvil, deployment
):
    wallet = new_wallet(relay, 100 * UNIT)
    first = _open(relay, kiosk, wallet, shop_id, amount=50 * UNIT)["paymentId"]
    # A second payment spends 63 of the 100 points, so the first (52.5) no longer fits.
    second = _open(relay, kiosk, wallet, shop_id, amount=60 * UNIT)["paymentId"]
    wallet.approve(second)
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, second))
    assert balance_of(relay.url, wallet.address) == 37 * UNIT
    signature = wallet.sign(item(relay.url, first)["typedData"]["confirm"])

    message = fails(decide(relay.url, "create/confirm", first, signature), 422, 3004)

    assert "does not cover the total" in message and str(37 * UNIT) in message  # the contract's own error
    assert item(relay.url, first)["paymentStatus"] == S.FAILED
    [callback] = callbacks.wait_for(first)
    assert callback.verified and (callback.json["type"], callback.json["code"]) == ("create", 1002)
    assert balance_of(relay.url, wallet.address) == 37 * UNIT
    assert payment_on_chain(anvil, deployment, first)["status"] == onchain.NONE
    fails(kiosk_post(relay.url, "closeNew", kiosk.access_key, first), 409, 3001)


# ----------------------------------------------------------------------------- (f) database locks


@pytest.fixture
def lock_timeout_relay(start_relay):
    """A relay on PostgreSQL that waits at most 1 s for a locked row (it sends no transaction)."""
    relay = start_relay("locks", backend="postgresql", db_lock_timeout=1)
    yield relay
    relay.stop()


def test_row_held_by_a_stalled_transaction__503_4003_after_the_lock_timeout_and_nothing_changed(
    lock_timeout_relay, make_kiosk, shop_id
):
    """Another instance froze (or lost its network) while it held the payment's row: the request
    answers 503 within the lock timeout instead of hanging, and works once the row is free."""
    relay = lock_timeout_relay
    kiosk = make_kiosk(relay, [shop_id])
    wallet = AppClient(relay.url, anvil_key(POINT_USER))
    payment_id = ok(
        open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(4)}", TEN_KRW, shop_id, wallet.address)
    )["paymentId"]
    signature = wallet.sign(item(relay.url, payment_id)["typedData"]["deny"])
    with psycopg.connect(relay.db_url.replace("postgresql+psycopg", "postgresql")) as stalled:
        stalled.execute("SELECT 1 FROM payments WHERE payment_id = %s FOR UPDATE", [payment_id])
        start = time.monotonic()
        message = fails(decide(relay.url, "create/deny", payment_id, signature), 503, 4003)
        waited = time.monotonic() - start
        stalled.rollback()
    assert 1.0 <= waited < 5.0 and "held by another request" in message
    assert item(relay.url, payment_id)["paymentStatus"] == S.NEW
    ok(decide(relay.url, "create/deny", payment_id, signature))
    assert item(relay.url, payment_id)["paymentStatus"] == S.DENIED


def test_session_idle_in_a_transaction__ended_by_the_server_after_the_timeout(new_database):
    """What frees the rows a stalled instance holds: PostgreSQL ends its session."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    db = database.Database(new_database("postgresql"), idle_transaction_timeout=0.5)
    try:
        with pytest.raises(DBAPIError) as ended, db.session() as session:
            session.execute(text("SELECT 1"))
            time.sleep(1.5)
            session.execute(text("SELECT 1"))
        # A lost connection to the relay's error handler: a request would answer 503 (4003).
        assert ended.value.connection_invalidated
        with db.session() as session:  # the pool replaced the ended connection
            assert session.execute(text("SELECT 1")).scalar() == 1
    finally:
        db.engine.dispose()


def test_settings__idle_transaction_timeout_not_above_two_node_calls__refused():
    from pydantic import ValidationError

    from relay.config import Settings

    with pytest.raises(ValidationError, match="db_idle_transaction_timeout"):
        Settings(database_url="sqlite://", rpc_timeout=10, db_idle_transaction_timeout=20)
    assert Settings(database_url="sqlite://", rpc_timeout=10, db_idle_transaction_timeout=21).rpc_timeout == 10


class _DrippingEndpoint:
    """A KIOSK endpoint that answers 200 with a 10 MB body sent one byte every 0.5 s (for at most
    30 s): it counts the requests it gets."""

    def __init__(self) -> None:
        self.requests = 0
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/drip"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            conn, _ = self.server.accept()
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            self.requests += 1
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
            for _ in range(60):
                if self.stop.wait(0.5):
                    return
                try:
                    conn.sendall(b"x")
                except OSError:
                    return


def test_callback_endpoint_sending_an_endless_body_slowly__delivered_at_once_and_once(relay, user, shop_id):
    """Only the status counts: the body is not read, so the attempt ends with the status line, and
    the callback is not claimed again while an attempt is under way."""
    endpoint = _DrippingEndpoint()
    try:
        with relay.db().session() as session:
            created = add_kiosk(session, f"drip-{secrets.token_hex(4)}", [shop_id], endpoint.url)
        payment_id = ok(
            open_new(relay.url, created.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, user.address)
        )["paymentId"]
        user.deny(payment_id)

        def delivered() -> bool:
            return any(c.state == CallbackState.DELIVERED for c in _callback_rows(relay, payment_id))

        wait_until(delivered, timeout=5)
        time.sleep(2)
        assert endpoint.requests == 1
    finally:
        endpoint.stop.set()
