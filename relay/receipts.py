"""Waiting for transactions to be mined, for every request of a process at once.

A request that waits for its transaction asks the node for the receipt itself, at once and once
more a moment later (a node that mines on arrival has it by then). If it is not there, the request
hands the hash to the process's
`ReceiptWatcher` and sleeps. The watcher asks the node for the newest block number at growing
intervals (RECEIPT_POLL_FIRST up to RECEIPT_POLL_MAX, from the first again after each new block),
and asks for receipts only when there is a new block, for every hash waiting then, in one batch
request; a hash handed over since its last round is asked for at once, whatever the block (and
when every hash waiting is such a one, without asking for the block number). So a
chain with blocks seconds apart costs the node about a dozen calls per block, however many
requests wait, instead of a few per second for each of them.

A node error ends every wait under way with that error (the requests answer 503, as each would
had it asked itself); a wait that runs out of time returns None.

`follow` is the same without a waiting thread: what to do once the transaction is mined (a
request that answers as soon as its transaction is sent leaves the rest to it). The watcher runs
it on one of a few threads of its own. A follow-up that runs out of time, or whose node fails, is
dropped: the chain watcher (relay.main) finishes every operation left unfinished.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from web3.exceptions import Web3RPCError

from relay.rpc import NodeRpc

log = logging.getLogger(__name__)

# Polling for new blocks: first interval, growth per poll, longest interval (seconds).
RECEIPT_POLL_FIRST = 0.01
RECEIPT_POLL_GROWTH = 1.5
RECEIPT_POLL_MAX = 0.5
# Times a request asks for its receipt itself (at once, then after RECEIPT_POLL_FIRST) before it
# hands the hash to the watcher: a node that mines on arrival may take a few milliseconds.
OWN_POLLS = 2
# Receipts asked for in one batch request (nodes cap batch sizes; 50 is under every common cap).
BATCH_SIZE = 50


# Threads that run follow-ups (each a few database statements).
FOLLOW_UP_THREADS = 4

Receipt = dict[str, Any]


class _Waiter:
    __slots__ = ("deadline", "done", "error", "receipt", "then")

    def __init__(self, then: Callable[[Receipt], object] | None = None, deadline: float = 0.0) -> None:
        self.done = threading.Event()
        self.receipt: Receipt | None = None
        self.error: BaseException | None = None
        self.then = then  # a follow-up (nobody waits on `done`), and when it is dropped
        self.deadline = deadline


class ReceiptWatcher:
    def __init__(
        self,
        rpc: NodeRpc,
        first: float = RECEIPT_POLL_FIRST,
        growth: float = RECEIPT_POLL_GROWTH,
        longest: float = RECEIPT_POLL_MAX,
    ) -> None:
        self.rpc = rpc
        self.first = first
        self.growth = growth
        self.longest = longest
        self._changed = threading.Condition()
        self._waiters: dict[str, list[_Waiter]] = {}  # by transaction hash
        self._unasked: set[str] = set()  # handed over since the watcher last asked for receipts
        self._thread: threading.Thread | None = None
        self._batches = True  # False once the node has refused a batch request
        self._follow_ups = ThreadPoolExecutor(FOLLOW_UP_THREADS, thread_name_prefix="mined")

    def wait(self, tx_hash: str, timeout: float) -> Receipt | None:
        """The raw receipt once the transaction is mined; None if it is not within `timeout`.
        ConnectionError / TimeoutError if the node cannot be asked."""
        deadline = time.monotonic() + timeout
        receipt = self._receipt(tx_hash)
        for _ in range(OWN_POLLS - 1):
            left = deadline - time.monotonic()
            if receipt is not None or left <= 0:
                return receipt
            time.sleep(min(self.first, left))
            receipt = self._receipt(tx_hash)
        if receipt is not None or deadline <= time.monotonic():
            return receipt
        waiter = _Waiter()
        self._watch(tx_hash, waiter)
        try:
            waiter.done.wait(max(0.0, deadline - time.monotonic()))
        finally:
            with self._changed:
                waiting = self._waiters.get(tx_hash, [])
                if waiter in waiting:
                    waiting.remove(waiter)
                if not waiting:
                    self._waiters.pop(tx_hash, None)
                    self._unasked.discard(tx_hash)
        if waiter.error is not None:
            raise waiter.error
        return waiter.receipt

    def follow(self, tx_hash: str, timeout: float, then: Callable[[Receipt], object]) -> None:
        """Runs `then(receipt)` once the transaction is mined, if within `timeout`; returns at once."""
        self._watch(tx_hash, _Waiter(then, time.monotonic() + timeout))

    def waiting(self) -> int:
        """How many transactions are waited for (or followed)."""
        with self._changed:
            return len(self._waiters)

    def _watch(self, tx_hash: str, waiter: _Waiter) -> None:
        with self._changed:
            self._waiters.setdefault(tx_hash, []).append(waiter)
            self._unasked.add(tx_hash)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="receipts", daemon=True)
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        last_block = None
        interval = self.first
        while True:
            with self._changed:
                while not self._waiters:
                    self._changed.wait()
                    interval = self.first
                self._drop_expired()
                unasked, self._unasked = self._unasked, set()
                watched = list(self._waiters)
            try:
                if len(unasked) == len(watched):
                    # Every hash waiting was just handed over (unasked is a subset of watched):
                    # they are asked for anyway, so the block number would decide nothing.
                    ask = watched
                else:
                    block = int(self.rpc.result("eth_blockNumber", []), 16)
                    if block != last_block:
                        last_block, interval = block, self.first
                        ask = watched
                    else:
                        ask = [tx for tx in watched if tx in unasked]
                self._deliver(self._receipts(ask))
            except Exception as exc:  # the node failed: every wait under way ends with the error
                self._fail(watched, exc if isinstance(exc, ConnectionError | TimeoutError) else ConnectionError(exc))
            with self._changed:
                if not self._unasked:
                    self._changed.wait(interval)  # or until a new hash is handed over
            interval = min(interval * self.growth, self.longest)

    def _receipt(self, tx_hash: str) -> Receipt | None:
        receipt: Receipt | None = self.rpc.result("eth_getTransactionReceipt", [tx_hash])
        return receipt

    def _receipts(self, hashes: list[str]) -> dict[str, Receipt]:
        """The receipts of those of `hashes` that are mined."""
        found: dict[str, Receipt] = {}
        for start in range(0, len(hashes), BATCH_SIZE):
            chunk = hashes[start : start + BATCH_SIZE]
            if self._batches and len(chunk) > 1:
                try:
                    replies = self.rpc.batch("eth_getTransactionReceipt", [[tx] for tx in chunk])
                except Web3RPCError as exc:
                    log.warning("the chain node refused a batch request; asking for receipts one by one: %s", exc)
                    self._batches = False
                else:
                    answered = zip(chunk, replies, strict=True)
                    found |= {tx: reply["result"] for tx, reply in answered if reply.get("result")}
                    continue
            for tx in chunk:
                receipt = self._receipt(tx)
                if receipt is not None:
                    found[tx] = receipt
        return found

    def _deliver(self, receipts: dict[str, Receipt]) -> None:
        with self._changed:
            for tx, receipt in receipts.items():
                for waiter in self._waiters.pop(tx, []):
                    waiter.receipt = receipt
                    waiter.done.set()
                    if waiter.then is not None:
                        self._follow_ups.submit(_follow_up, waiter.then, receipt)

    def _fail(self, hashes: list[str], error: BaseException) -> None:
        with self._changed:
            for tx in hashes:
                for waiter in self._waiters.pop(tx, []):
                    waiter.error = error
                    waiter.done.set()
                    if waiter.then is not None:
                        log.info("transaction %s: not followed up (the chain watcher will): %s", tx, error)

    def _drop_expired(self) -> None:
        """Drops follow-ups whose time is up (the caller holds the lock)."""
        t = time.monotonic()
        for tx in list(self._waiters):
            kept = [w for w in self._waiters[tx] if w.then is None or w.deadline > t]
            if kept:
                self._waiters[tx] = kept
            else:
                del self._waiters[tx]
                self._unasked.discard(tx)


def _follow_up(then: Callable[[Receipt], object], receipt: Receipt) -> None:
    try:
        then(receipt)
    except Exception as exc:  # the chain watcher finishes what a failed follow-up left
        log.warning("following up transaction %s: %s", receipt.get("transactionHash"), exc)
