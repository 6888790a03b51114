"""The live notification stream (GET /v1/payment/events) on the PostgreSQL relay: every stream of a
process is fed by one query per interval, whatever their number; a stream resumed with
Last-Event-ID gets what it missed; a notification that commits after a newer one is still sent,
once."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest

from loyalty_sdk import AppClient
from relay.devnet import anvil_key
from tests.relay.conftest import POINT_USER, UNIT, RelayProcess, wait_until


@pytest.fixture(scope="module")
def pg_relay(relays: Callable[[str], RelayProcess]) -> RelayProcess:
    return relays("postgresql")


def _pg(relay: RelayProcess) -> psycopg.Connection[Any]:
    return psycopg.connect(relay.db_url.replace("postgresql+psycopg", "postgresql"), autocommit=True)


def _notify(conn: psycopg.Connection[Any], account: str, kind: str = "payment.test") -> int:
    row = conn.execute(
        "INSERT INTO notifications (account, kind, payment_id, payload, created_at, pushed)"
        " VALUES (%s, %s, NULL, %s, %s, 1) RETURNING id",
        [account, kind, json.dumps({"kind": kind}), time.time()],
    ).fetchone()
    assert row is not None
    return int(row[0])


class Reader:
    """Reads a stream's events in a thread of its own."""

    def __init__(self, relay: RelayProcess, wallet: AppClient, last_event_id: int | None = None) -> None:
        self.ids: list[int] = []
        self.arrived: list[float] = []  # time.time() of each event
        self.open = threading.Event()
        headers = wallet.auth_headers() | ({"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {})
        self._stack = contextlib.ExitStack()
        http = self._stack.enter_context(httpx.Client(timeout=httpx.Timeout(30.0)))
        self.response = self._stack.enter_context(http.stream("GET", f"{relay.url}/v1/payment/events", headers=headers))
        assert self.response.status_code == 200
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            for line in self.response.iter_lines():
                if line.startswith("id:"):
                    self.ids.append(int(line.removeprefix("id:").strip()))
                    self.arrived.append(time.time())

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def reading(relay: RelayProcess, wallet: AppClient, last_event_id: int | None = None) -> Iterator[Reader]:
    reader = Reader(relay, wallet, last_event_id)
    try:
        yield reader
    finally:
        reader.close()


def _commits(relay: RelayProcess, seconds: float) -> float:
    """Transactions per second the relay's database commits over `seconds`."""

    def count() -> int:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            name = relay.db_url.rsplit("/", 1)[1]
            row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [name]).fetchone()
            assert row is not None
            return int(row[0])

    before = count()
    time.sleep(seconds)
    return (count() - before) / seconds


def test_many_open_streams__the_database_sees_one_reader(pg_relay):
    idle = _commits(pg_relay, 3)
    wallets = [AppClient(pg_relay.url, "0x" + secrets.token_hex(32)) for _ in range(40)]
    with contextlib.ExitStack() as streams:
        readers = [streams.enter_context(reading(pg_relay, wallet)) for wallet in wallets]
        time.sleep(1)  # every stream past its opening reads
        with_streams = _commits(pg_relay, 3)
        # And each still gets its own notifications.
        with _pg(pg_relay) as conn:
            ids = [_notify(conn, wallet.address) for wallet in wallets]
        wait_until(lambda: all(reader.ids == [i] for reader, i in zip(readers, ids, strict=True)))
    # 40 streams reading on their own every 0.25 s would add 160 transactions a second.
    assert with_streams - idle < 20, (idle, with_streams)


def test_resumed_with_last_event_id__sends_what_was_missed_then_new_ones(pg_relay):
    wallet = AppClient(pg_relay.url, "0x" + secrets.token_hex(32))
    with _pg(pg_relay) as conn:
        seen = _notify(conn, wallet.address)
        missed = [_notify(conn, wallet.address) for _ in range(3)]
        with reading(pg_relay, wallet, last_event_id=seen) as reader:
            wait_until(lambda: reader.ids == missed)
            new = _notify(conn, wallet.address)
            wait_until(lambda: reader.ids == [*missed, new])
            time.sleep(1)  # nothing sent twice
            assert reader.ids == [*missed, new]


def test_notification_committed_after_a_newer_one__still_sent_once(pg_relay):
    wallet = AppClient(pg_relay.url, "0x" + secrets.token_hex(32))
    with reading(pg_relay, wallet) as reader, _pg(pg_relay) as slow, _pg(pg_relay) as fast:
        time.sleep(0.5)  # the stream is open and the hub reading
        slow.autocommit = False
        older = _notify(slow, wallet.address)  # id taken, not yet committed
        newer = _notify(fast, wallet.address)
        wait_until(lambda: reader.ids == [newer])
        time.sleep(0.6)  # the hub has read past the older id
        slow.commit()
        wait_until(lambda: reader.ids == [newer, older])
        time.sleep(1)
        assert reader.ids == [newer, older]


def test_notification_committed_by_the_relay__streamed_at_once(pg_relay, make_kiosk, shop_id):
    """The relay's own commits wake its streams: a new payment reaches the open app at once, not
    at the hub's next read (every 0.25 s here) of what other processes commit."""
    kiosk = make_kiosk(pg_relay, [shop_id])
    wallet = AppClient(pg_relay.url, anvil_key(POINT_USER))
    delays = []
    with reading(pg_relay, wallet) as reader:
        time.sleep(0.6)  # the stream is open and the hub reading
        for _ in range(8):
            seen = len(reader.ids)
            opened = kiosk.client.open_new(f"S-{secrets.token_hex(4)}", UNIT, "krw", shop_id, wallet.address)
            answered = time.time()
            wait_until(lambda n=seen: len(reader.ids) > n)
            delays.append(reader.arrived[seen] - answered)
            wallet.deny(opened.paymentId)
            time.sleep(0.3)  # the denial's notification has been streamed too
    # Woken at once, or at most WAKE_AFTER (0.1 s) after its previous read: a mean of 0.04-0.08 s here,
    # busy machine included; reading every 0.25 s instead, it would be about 0.125 s plus the same.
    # One stream may lose a scheduling slice on a busy two-core machine: the mean tells them apart.
    assert max(delays) < 0.5 and sum(delays) / len(delays) < 0.1, delays


def test_one_wallet__at_most_five_streams_at_once__the_sixth_429(pg_relay):
    wallet = AppClient(pg_relay.url, "0x" + secrets.token_hex(32))
    with contextlib.ExitStack() as streams:
        readers = [streams.enter_context(reading(pg_relay, wallet)) for _ in range(5)]
        time.sleep(1)  # each has subscribed
        sixth = httpx.get(f"{pg_relay.url}/v1/payment/events", headers=wallet.auth_headers(), timeout=10)
        assert (sixth.status_code, sixth.json()["code"]) == (429, 1003) and int(sixth.headers["Retry-After"]) > 0
        readers[0].close()

        def reopened() -> Reader | None:  # once the relay has noticed the closed stream
            with contextlib.suppress(AssertionError):
                return streams.enter_context(reading(pg_relay, wallet))
            return None

        assert wait_until(reopened, timeout=15, interval=0.5).response.status_code == 200


def test_one_wallet__ten_streams_opened_at_once__five_served_five_429(pg_relay):
    wallet = AppClient(pg_relay.url, "0x" + secrets.token_hex(32))
    wallet.auth_headers()  # the session, opened once beforehand
    statuses: list[int] = []
    with contextlib.ExitStack() as streams, ThreadPoolExecutor(10) as pool:
        http = streams.enter_context(httpx.Client(timeout=30, limits=httpx.Limits(max_connections=20)))

        def open_one() -> int:
            response = streams.enter_context(
                http.stream("GET", f"{pg_relay.url}/v1/payment/events", headers=wallet.auth_headers())
            )
            return response.status_code

        statuses = list(pool.map(lambda _: open_one(), range(10)))
    assert sorted(statuses) == [200] * 5 + [429] * 5


def test_last_event_id_not_a_notification_id__400(pg_relay):
    wallet = AppClient(pg_relay.url, "0x" + secrets.token_hex(32))
    for value in ("9" * 30, "-1", "x"):
        answer = httpx.get(
            f"{pg_relay.url}/v1/payment/events", headers=wallet.auth_headers() | {"Last-Event-ID": value}, timeout=10
        )
        assert (answer.status_code, answer.json()["code"]) == (400, 1000), (value, answer.text)


def test_session_ended__its_open_stream_ends_within_30_seconds(pg_relay):
    wallet = AppClient(pg_relay.url, "0x" + secrets.token_hex(32))
    with reading(pg_relay, wallet) as reader:
        httpx.delete(f"{pg_relay.url}/v1/payment/account/session", headers=wallet.auth_headers()).raise_for_status()
        ended = time.monotonic()
        reader._thread.join(45)
        assert not reader._thread.is_alive() and time.monotonic() - ended < 40
