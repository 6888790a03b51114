"""relay.receipts against a scripted chain whose blocks are a fixed time apart: many requests
waiting at once cost the node calls per block, not per request; each still hears of its
transaction soon after the block that mines it; node errors, refused batch requests and waits
that run out of time."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from relay.receipts import RECEIPT_POLL_MAX, ReceiptWatcher
from relay.rpc import NodeRpc
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
            result = None if mined is None or mined > self.block() else {"transactionHash": tx, "status": "0x1"}
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


def _wait_all(watcher: ReceiptWatcher, hashes: list[str], timeout: float) -> dict[str, tuple[Any, float]]:
    """Waits for every hash at once; each one's receipt and the time it came."""

    def one(tx: str) -> tuple[Any, float]:
        receipt = watcher.wait(tx, timeout)
        return receipt, time.monotonic()

    with ThreadPoolExecutor(len(hashes)) as pool:
        return dict(zip(hashes, pool.map(one, hashes), strict=True))


def test_many_waiting_requests__node_asked_per_block_not_per_request(chain):
    watcher = ReceiptWatcher(NodeRpc(chain.url, 5))
    hashes = [f"0x{i:064x}" for i in range(60)]
    first = chain.block() + 1
    for i, tx in enumerate(hashes):
        chain.mined[tx] = first + i % 5  # twelve in each of the next five blocks

    results = _wait_all(watcher, hashes, 10)

    for tx in hashes:
        receipt, came = results[tx]
        assert receipt["transactionHash"] == tx
        mined_at = chain.start + chain.mined[tx] * BLOCK_TIME
        assert mined_at - 0.05 <= came < mined_at + RECEIPT_POLL_MAX
    # Each request asked twice itself; the rest is the watcher's: block numbers at growing
    # intervals (a dozen per block at most) and a batch (a single call for one hash) when there
    # is a new block or a new request. Asking for each request every poll would take thousands
    # of calls.
    assert chain.requests["eth_getTransactionReceipt"] <= 2 * len(hashes) + 10
    assert chain.requests["eth_blockNumber"] <= 12 * 6
    assert chain.requests["batch"] <= 2 * 6 + 10
    # A hash is asked for twice by its request, once when handed over, and once per new block
    # (five, and one that came while it was handed over).
    assert max(chain.asked.values()) <= 9
    assert watcher.waiting() == 0


def test_node_mining_on_arrival__the_request_asks_itself_and_no_watcher_runs(chain):
    watcher = ReceiptWatcher(NodeRpc(chain.url, 5))
    chain.mined["0xaa"] = 0

    assert watcher.wait("0xaa", 5)["status"] == "0x1"
    assert chain.requests == Counter({"eth_getTransactionReceipt": 1})

    # Mining took the node a moment: the request asks once more itself.
    chain.mined["0xab"] = 0
    chain.unseen_for["0xab"] = 1
    assert watcher.wait("0xab", 5)["status"] == "0x1"
    assert chain.requests == Counter({"eth_getTransactionReceipt": 3})
    assert watcher._thread is None


def test_never_mined__none_after_the_timeout_and_the_node_left_alone(chain):
    watcher = ReceiptWatcher(NodeRpc(chain.url, 5))
    start = time.monotonic()

    assert watcher.wait("0xbb", 1.0) is None

    assert 1.0 <= time.monotonic() - start < 1.3
    assert watcher.waiting() == 0
    time.sleep(0.6)  # the watcher's longest interval: it has gone idle
    calls = sum(chain.requests.values())
    time.sleep(1.0)
    assert sum(chain.requests.values()) == calls


def test_node_failing__every_wait_ends_with_the_error_at_once(chain):
    watcher = ReceiptWatcher(NodeRpc(chain.url, 5))
    with ThreadPoolExecutor(3) as pool:
        waits = [pool.submit(watcher.wait, f"0x{i:02x}", 30) for i in range(3)]
        time.sleep(0.3)
        chain.down = True
        start = time.monotonic()
        for waiting in waits:
            with pytest.raises(ConnectionError):
                waiting.result(timeout=5)
        assert time.monotonic() - start < RECEIPT_POLL_MAX + 0.3
    assert watcher.waiting() == 0


def test_node_refusing_batch_requests__receipts_asked_one_by_one():
    chain = ScriptedChain(batches=False)
    try:
        watcher = ReceiptWatcher(NodeRpc(chain.url, 5))
        hashes = [f"0x{i:064x}" for i in range(6)]
        for tx in hashes:
            chain.mined[tx] = chain.block() + 2

        results = _wait_all(watcher, hashes, 10)

        assert all(receipt["transactionHash"] == tx for tx, (receipt, _) in results.items())
        assert chain.requests["batch"] == 1  # refused once, then not tried again
    finally:
        chain.http.close()


def test_follow__runs_once_mined_on_the_watcher_s_threads__dropped_when_time_is_up(chain):
    watcher = ReceiptWatcher(NodeRpc(chain.url, 5))
    chain.mined["0x01"] = chain.mined["0x03"] = chain.block() + 1
    done: list[tuple[str, float, str]] = []

    def record(receipt: dict[str, Any]) -> None:
        done.append((receipt["transactionHash"], time.monotonic(), threading.current_thread().name))

    def fails(receipt: dict[str, Any]) -> None:
        raise RuntimeError("the database is away")

    watcher.follow("0x03", 5, fails)  # logged; the others still run
    watcher.follow("0x01", 5, record)
    watcher.follow("0x02", 0.5, record)  # never mined
    assert watcher.waiting() == 3

    deadline = time.monotonic() + 3
    while not done and time.monotonic() < deadline:
        time.sleep(0.01)
    [(tx, at, thread)] = done
    assert tx == "0x01" and thread.startswith("mined")
    assert at < chain.start + chain.mined["0x01"] * BLOCK_TIME + RECEIPT_POLL_MAX
    time.sleep(0.7)
    assert watcher.waiting() == 0 and len(done) == 1


def test_follow__a_hash_handed_to_an_idle_watcher_is_asked_for_without_a_block_number(chain):
    """The node mines on arrival (the common case): a follow-up's receipt is asked for at once, and
    with nothing older waiting the block number would decide nothing, so it is not asked."""
    watcher = ReceiptWatcher(NodeRpc(chain.url, 5))
    chain.mined["0x01"] = chain.block()
    done = threading.Event()

    watcher.follow("0x01", 5, lambda receipt: done.set())

    assert done.wait(3)
    assert chain.requests["eth_blockNumber"] == 0
    assert chain.asked["0x01"] == 1
