"""The watcher against a scripted chain whose blocks are a fixed time apart: many requests waiting
at once cost the node calls per block, not per request; each still hears of its transaction soon
after the block that mines it, once its operation is recorded; node errors, refused batch
requests, waits that run out of time, and what the sweep hands over."""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from relay.chain import Chain
from relay.chain.abi import CONTRACTS
from relay.errors import ChainUnavailable
from relay.workers.watcher import POLL_MAX, Watcher
from tests.relay.conftest import _Server

BLOCK_TIME = 0.3


class ScriptedChain:
    """A node that mines a block every BLOCK_TIME seconds; transaction `mined[tx]` is in that
    block. Counts HTTP requests by method (a batch counts once)."""

    def __init__(self, batches: bool = True) -> None:
        self.start = time.monotonic()
        self.mined: dict[str, int] = {}
        self.unseen_for: dict[str, int] = {}  # asks a mined transaction's receipt is still missing
        self.batches = batches
        self.requests: Counter[str] = Counter()
        self.asked: Counter[str] = Counter()  # receipts asked for, by transaction
        self.down = False
        self._lock = threading.Lock()
        self.http = _Server(self._handle)
        self.url = self.http.url

    def block(self) -> int:
        return int((time.monotonic() - self.start) / BLOCK_TIME)

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["method"] == "eth_blockNumber":
            result: Any = hex(self.block())
        else:
            tx = request["params"][0]
            with self._lock:
                self.asked[tx] += 1
            mined = self.mined.get(tx)
            if self.asked[tx] <= self.unseen_for.get(tx, 0):
                mined = None
            mined_now = mined is not None and mined <= self.block()
            result = {"transactionHash": tx, "status": "0x1", "blockNumber": hex(mined or 0)} if mined_now else None
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}

    def _handle(self, path: str, headers: dict[str, str], body: str) -> tuple[int, Any] | None:
        request = json.loads(body)
        if self.down:
            return 503, {"error": "down"}
        with self._lock:
            self.requests["batch" if isinstance(request, list) else request["method"]] += 1
        if isinstance(request, list):
            if not self.batches:
                return 400, {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch not allowed"}}
            return 200, [self._answer(r) for r in reversed(request)]  # any order: matched by id
        return 200, self._answer(request)


@pytest.fixture
def chain() -> Iterator[ScriptedChain]:
    scripted = ScriptedChain()
    yield scripted
    scripted.http.close()


def make_watcher(
    url: str, tmp_path: Any, finish: Any = None, sweep: Any = None, sweep_interval: float = 60.0
) -> Watcher:
    deployment = tmp_path / "deployment.json"
    deployment.write_text(json.dumps({"chainId": 1, "contracts": {name: "0x" + "11" * 20 for name in CONTRACTS}}))
    node = Chain(url, deployment, [], 5)
    watcher = Watcher(node, finish or (lambda payment_id, receipt: None), sweep or list, sweep_interval, 2.0)
    watcher.start()
    return watcher


def _wait_all(watcher: Watcher, hashes: list[str], timeout: float) -> dict[str, tuple[Any, float]]:
    """Waits for every hash at once; each one's receipt and the time it came."""

    def one(tx: str) -> tuple[Any, float]:
        finished = watcher.wait(tx, timeout)
        return (finished and finished.receipt), time.monotonic()

    with ThreadPoolExecutor(len(hashes)) as pool:
        return dict(zip(hashes, pool.map(one, hashes), strict=True))


def test_many_waiting_requests__node_asked_per_block_not_per_request(chain, tmp_path):
    watcher = make_watcher(chain.url, tmp_path)
    hashes = [f"0x{i:064x}" for i in range(60)]
    first = chain.block() + 1
    for i, tx in enumerate(hashes):
        chain.mined[tx] = first + i % 5  # twelve in each of the next five blocks

    results = _wait_all(watcher, hashes, 10)

    delays = []
    for tx in hashes:
        receipt, came = results[tx]
        assert receipt["transactionHash"] == tx
        mined_at = chain.start + chain.mined[tx] * BLOCK_TIME
        delays.append(came - mined_at)
    # Heard of within the longest interval; sixty threads on a busy two-core machine may add
    # a scheduling delay to a few of them, never to most.
    assert min(delays) >= -0.05
    assert statistics.median(delays) < POLL_MAX
    assert max(delays) < POLL_MAX + 0.5
    # Block numbers at growing intervals (a dozen per block at most), and a batch (a single call
    # for one hash) when there is a new block or a new request. Asking for each request every
    # poll would take thousands of calls.
    assert chain.requests["eth_getTransactionReceipt"] <= 10
    assert chain.requests["eth_blockNumber"] <= 12 * 6
    assert chain.requests["batch"] <= 2 * 6 + 10
    # A hash is asked for once when handed over, and once per new block (five, and one that came
    # while it was handed over).
    assert max(chain.asked.values()) <= 7
    assert not watcher._watched


def test_never_mined__none_after_the_timeout_and_the_node_left_alone(chain, tmp_path):
    watcher = make_watcher(chain.url, tmp_path)
    start = time.monotonic()

    assert watcher.wait("0xbb", 1.0) is None

    assert 1.0 <= time.monotonic() - start < 1.3
    time.sleep(1.6)  # past the watcher's own timeout (2 s) and its longest interval: it has gone idle
    assert not watcher._watched
    calls = sum(chain.requests.values())
    time.sleep(1.0)
    assert sum(chain.requests.values()) == calls


def test_node_failing__every_wait_ends_with_the_error_at_once(chain, tmp_path):
    watcher = make_watcher(chain.url, tmp_path)
    with ThreadPoolExecutor(3) as pool:
        waits = [pool.submit(watcher.wait, f"0x{i:02x}", 30) for i in range(3)]
        time.sleep(0.3)
        chain.down = True
        start = time.monotonic()
        for waiting in waits:
            with pytest.raises(ChainUnavailable):
                waiting.result(timeout=5)
        assert time.monotonic() - start < POLL_MAX + 0.3


def test_node_refusing_batch_requests__receipts_asked_one_by_one(tmp_path):
    chain = ScriptedChain(batches=False)
    try:
        watcher = make_watcher(chain.url, tmp_path)
        hashes = [f"0x{i:064x}" for i in range(6)]
        for tx in hashes:
            chain.mined[tx] = chain.block() + 2

        results = _wait_all(watcher, hashes, 10)

        assert all(receipt["transactionHash"] == tx for tx, (receipt, _) in results.items())
        assert chain.requests["batch"] == 1  # refused once, then not tried again
    finally:
        chain.http.close()


def test_operation__recorded_on_the_finishers_before_its_waiters_wake__a_failing_one_recorded_by_a_sweep(
    chain, tmp_path
):
    chain.mined["0x01"] = chain.mined["0x03"] = chain.block() + 1
    recorded: list[tuple[str, str, str]] = []

    def finish(payment_id: str, receipt: dict[str, Any]) -> str:
        if payment_id == "p3":
            raise RuntimeError("the database is away")
        recorded.append((payment_id, receipt["transactionHash"], threading.current_thread().name))
        return f"{payment_id} as recorded"

    watcher = make_watcher(chain.url, tmp_path, finish)
    watcher.watch("0x03", "p3")  # logged; the others still run
    finished = watcher.wait("0x01", 5, "p1")

    assert finished is not None and finished.receipt["transactionHash"] == "0x01"
    assert finished.outcome == "p1 as recorded"  # the waiter need not read the payment again
    [(payment_id, tx, thread)] = recorded
    assert (payment_id, tx) == ("p1", "0x01") and thread.startswith("finish")


def test_finished_before_anyone_waits__answered_from_memory__recorded_once(chain, tmp_path):
    """On an automining node a transaction is often mined and recorded before its sender waits."""
    chain.mined["0x07"] = chain.block()
    recorded: list[str] = []

    def finish(payment_id: str, receipt: dict[str, Any]) -> str:
        recorded.append(payment_id)
        return "recorded"

    watcher = make_watcher(chain.url, tmp_path, finish)
    watcher.watch("0x07", "p7")
    deadline = time.monotonic() + 5
    while not recorded and time.monotonic() < deadline:
        time.sleep(0.01)
    asked = chain.asked["0x07"]
    finished = watcher.wait("0x07", 5, "p7")

    assert finished is not None and finished.outcome == "recorded"
    time.sleep(0.3)
    assert recorded == ["p7"] and chain.asked["0x07"] == asked  # not asked for, nor recorded, again


def test_sweep__hands_over_operations_in_flight_that_no_one_here_watches(chain, tmp_path):
    chain.mined["0x05"] = chain.block()
    recorded = threading.Event()
    make_watcher(chain.url, tmp_path, lambda payment_id, receipt: recorded.set(), lambda: [("0x05", "p5")])

    assert recorded.wait(3)


def test_recording_failed__the_next_sweep_hands_it_over_again_and_it_is_recorded(chain, tmp_path):
    chain.mined["0x03"] = chain.block()
    attempts: list[str] = []

    def finish(payment_id: str, receipt: dict[str, Any]) -> str:
        attempts.append(payment_id)
        if len(attempts) == 1:
            raise RuntimeError("the database is away")
        return "recorded"

    make_watcher(chain.url, tmp_path, finish, lambda: [("0x03", "p3")] if len(attempts) < 2 else [], 0.2)
    deadline = time.monotonic() + 3
    while len(attempts) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)

    assert attempts == ["p3", "p3"]


def test_idle_watcher__a_hash_handed_over_is_asked_for_without_a_block_number(chain, tmp_path):
    """The node mines on arrival (the common case): a hash's receipt is asked for at once, and with
    nothing older waiting the block number would decide nothing, so it is not asked."""
    watcher = make_watcher(chain.url, tmp_path)
    chain.mined["0x01"] = chain.block()

    assert watcher.wait("0x01", 3) is not None
    assert chain.requests["eth_blockNumber"] == 0
    assert chain.asked["0x01"] == 1
