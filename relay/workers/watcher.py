"""The one mechanism that finishes on-chain operations: every transaction the relay waits for is
watched here, and a payment's operation is recorded from its receipt here, whoever sent it.

This process's transactions are handed over as they are sent (`watch`); the sweep hands over what
other processes or a restart left, and recovers operations whose transaction never reached the node.
Receipts are asked for in one batch per new block (block numbers polled from POLL_FIRST up to
POLL_MAX apart) and at once for a hash just handed over, so the node's load does not grow with the
requests waiting. A request that needs the outcome `wait`s for what recording it returned; one
finished a moment earlier is answered from memory instead of being asked for and recorded again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from relay.chain import Chain, Receipt
from relay.errors import ChainUnavailable

log = logging.getLogger(__name__)

POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.01, 1.5, 0.5  # seconds between asking for new blocks
FINISHERS = 4  # threads that record mined operations (each a few database statements)
RECENT = 10.0  # seconds a finished transaction is remembered for a late `wait`


class Finished(NamedTuple):
    receipt: Receipt
    outcome: Any  # what `finish` returned (None: nothing was recorded here)


class _Waiter:
    __slots__ = ("done", "error", "finished")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.finished: Finished | None = None
        self.error: Exception | None = None


class Watcher:
    def __init__(
        self,
        chain: Chain,
        finish: Callable[[Any, Receipt], object],
        sweep: Callable[[], list[tuple[str, Any]]],
        sweep_interval: float,
        timeout: float,
    ) -> None:
        self.chain = chain
        self.finish = finish  # records an operation (the subject watched with its hash) from its receipt
        self.sweep = sweep  # (tx, subject) of operations in flight that no one here watches
        self.sweep_interval = sweep_interval
        self.timeout = timeout  # a hash nobody waits for is dropped after this (the sweep finds it again)
        self._changed = threading.Condition()
        self._watched: dict[str, tuple[Any, float]] = {}  # tx hash -> (subject or None, until)
        self._finishing: set[str] = set()  # mined, being recorded
        self._recent: dict[str, tuple[Finished, float]] = {}  # tx hash -> (finished, until)
        self._unasked: set[str] = set()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._finishers = ThreadPoolExecutor(FINISHERS, thread_name_prefix="finish")
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify()
        self._finishers.shutdown(wait=False, cancel_futures=True)

    def watch(self, tx: str, subject: Any = None) -> None:
        """Watches `tx`; once it is mined, `finish(subject, receipt)` records it (if `subject`)."""
        with self._changed:
            self._watch(tx, subject)

    def _watch(self, tx: str, subject: Any) -> None:
        if subject is None and tx in self._watched:
            subject = self._watched[tx][0]
        self._watched[tx] = (subject, time.monotonic() + self.timeout)
        self._unasked.add(tx)
        self._changed.notify()

    def wait(self, tx: str, timeout: float, subject: Any = None) -> Finished | None:
        """The receipt once the transaction is mined, and what recording its operation returned;
        None if it is not mined within `timeout`. ChainUnavailable if the node fails meanwhile."""
        waiter = _Waiter()
        with self._changed:
            if tx in self._recent:
                return self._recent[tx][0]
            self._waiters.setdefault(tx, []).append(waiter)
            if tx not in self._finishing:
                self._watch(tx, subject)
        if not waiter.done.wait(timeout):
            with self._changed:
                waiting = self._waiters.get(tx, [])
                if waiter in waiting:
                    waiting.remove(waiter)
        if waiter.error is not None:
            raise ChainUnavailable(str(waiter.error)) from waiter.error
        return waiter.finished

    def _run(self) -> None:
        last_block, interval, next_sweep = None, POLL_FIRST, 0.0
        while True:
            with self._changed:
                if self._stopped:
                    return
                t = time.monotonic()
                for tx, (_, until) in list(self._watched.items()):
                    if until < t and not self._waiters.get(tx):
                        del self._watched[tx]
                self._recent = {tx: kept for tx, kept in self._recent.items() if kept[1] >= t}
                unasked, self._unasked = self._unasked & self._watched.keys(), set()
                watched = {tx: subject for tx, (subject, _) in self._watched.items()}
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_interval
                try:
                    swept = self.sweep()
                except Exception as exc:  # the node or the database: swept again next time
                    log.warning("watcher sweep: %s", exc)
                    swept = []
                for tx, subject in swept:
                    if tx not in watched:
                        watched[tx] = subject
                        unasked.add(tx)
                        with self._changed:
                            self._watched[tx] = (subject, time.monotonic() + self.timeout)
            try:
                if watched and unasked == set(watched):  # all new: the block number would decide nothing
                    ask = list(watched)
                elif watched:
                    block = self.chain.block_number()
                    ask = list(watched) if block != last_block else [tx for tx in watched if tx in unasked]
                    if block != last_block:
                        last_block, interval = block, POLL_FIRST
                else:
                    ask = []
                for tx, receipt in self.chain.receipts_of(ask).items():
                    with self._changed:  # taken off the watch: recorded once, by one finisher
                        self._watched.pop(tx, None)
                        self._unasked.discard(tx)
                        self._finishing.add(tx)
                    self._finishers.submit(self._finished, tx, watched[tx], receipt)
            except Exception as exc:  # the node failed: requests waiting hear it now
                log.warning("watcher: %s", exc)
                self._release(list(watched), None, exc)
            with self._changed:
                if not self._unasked and not self._stopped:
                    self._changed.wait(interval if self._watched else self.sweep_interval)
            interval = min(interval * POLL_GROWTH, POLL_MAX)

    def _finished(self, tx: str, subject: Any, receipt: Receipt) -> None:
        outcome = None
        try:
            if subject is not None:
                outcome = self.finish(subject, receipt)
        except Exception as exc:  # recorded by the next sweep
            log.warning("recording transaction %s: %s", tx, exc)
        finished = Finished(receipt, outcome)
        with self._changed:
            self._finishing.discard(tx)
            self._recent[tx] = (finished, time.monotonic() + RECENT)
        self._release([tx], finished, None)

    def _release(self, hashes: list[str], finished: Finished | None, error: Exception | None) -> None:
        with self._changed:
            waiters = [w for tx in hashes for w in self._waiters.pop(tx, [])]
        for waiter in waiters:
            waiter.finished, waiter.error = finished, error
            waiter.done.set()
