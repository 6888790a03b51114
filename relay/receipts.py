"""Waiting for transactions to be mined, for every request of a process at once.

A request that waits for its transaction asks the node for the receipt once itself (a node that
mines on arrival has it already). If it is not there, the request hands the hash to the process's
`ReceiptWatcher` and sleeps. The watcher asks the node for the newest block number at growing
intervals (RECEIPT_POLL_FIRST up to RECEIPT_POLL_MAX, from the first again after each new block),
and asks for receipts only when there is a new block, for every hash waiting then, in one batch
request; a hash handed over since its last round is asked for at once, whatever the block. So a
chain with blocks seconds apart costs the node about a dozen calls per block, however many
requests wait, instead of a few per second for each of them.

A node error ends every wait under way with that error (the requests answer 503, as each would
had it asked itself); a wait that runs out of time returns None.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from web3.exceptions import Web3RPCError

from relay.rpc import NodeRpc

log = logging.getLogger(__name__)

# Polling for new blocks: first interval, growth per poll, longest interval (seconds).
RECEIPT_POLL_FIRST = 0.01
RECEIPT_POLL_GROWTH = 1.5
RECEIPT_POLL_MAX = 0.5
# Receipts asked for in one batch request (nodes cap batch sizes; 50 is under every common cap).
BATCH_SIZE = 50


class _Waiter:
    __slots__ = ("done", "error", "receipt")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.receipt: dict[str, Any] | None = None
        self.error: BaseException | None = None


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

    def wait(self, tx_hash: str, timeout: float) -> dict[str, Any] | None:
        """The raw receipt once the transaction is mined; None if it is not within `timeout`.
        ConnectionError / TimeoutError if the node cannot be asked."""
        deadline = time.monotonic() + timeout
        receipt = self._receipt(tx_hash)
        if receipt is not None or timeout <= 0:
            return receipt
        waiter = _Waiter()
        with self._changed:
            self._waiters.setdefault(tx_hash, []).append(waiter)
            self._unasked.add(tx_hash)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="receipts", daemon=True)
                self._thread.start()
            self._changed.notify()
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

    def waiting(self) -> int:
        """How many transactions are waited for."""
        with self._changed:
            return len(self._waiters)

    def _run(self) -> None:
        last_block = None
        interval = self.first
        while True:
            with self._changed:
                while not self._waiters:
                    self._changed.wait()
                    interval = self.first
                unasked, self._unasked = self._unasked, set()
                watched = list(self._waiters)
            try:
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

    def _receipt(self, tx_hash: str) -> dict[str, Any] | None:
        receipt: dict[str, Any] | None = self.rpc.result("eth_getTransactionReceipt", [tx_hash])
        return receipt

    def _receipts(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """The receipts of those of `hashes` that are mined."""
        found: dict[str, dict[str, Any]] = {}
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

    def _deliver(self, receipts: dict[str, dict[str, Any]]) -> None:
        with self._changed:
            for tx, receipt in receipts.items():
                for waiter in self._waiters.pop(tx, []):
                    waiter.receipt = receipt
                    waiter.done.set()

    def _fail(self, hashes: list[str], error: BaseException) -> None:
        with self._changed:
            for tx in hashes:
                for waiter in self._waiters.pop(tx, []):
                    waiter.error = error
                    waiter.done.set()
