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
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as WaitedTooLong
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
        self._watched: dict[str, tuple[Any, float]] = {}  # not mined yet: tx hash -> (subject or None, until)
        # What waiters hear, from their first wait (or the hash being mined) until RECENT after it is recorded.
        self._outcomes: dict[str, Future[Finished]] = {}
        self._forget: dict[str, float] = {}  # recorded hashes -> when their outcome is dropped
        self._unasked: set[str] = set()
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
            if tx not in self._outcomes or tx in self._watched:  # else mined already
                self._watch(tx, subject, self.timeout)

    def _watch(self, tx: str, subject: Any, timeout: float) -> None:
        known, until = self._watched.get(tx, (None, 0.0))
        self._watched[tx] = (subject if subject is not None else known, max(until, time.monotonic() + timeout))
        self._unasked.add(tx)
        self._changed.notify()

    def wait(self, tx: str, timeout: float, subject: Any = None) -> Finished | None:
        """The receipt once the transaction is mined, and what recording its operation returned;
        None if it is not mined within `timeout`. ChainUnavailable if the node fails meanwhile."""
        with self._changed:
            outcome = self._outcomes.get(tx)
            if outcome is None or tx in self._watched:  # watched until this wait ends, at least
                outcome = self._outcomes.setdefault(tx, Future())
                self._watch(tx, subject, max(timeout, self.timeout))
        try:
            return outcome.result(timeout)
        except WaitedTooLong:
            return None
        except Exception as exc:
            raise ChainUnavailable(str(exc)) from exc

    def _run(self) -> None:
        last_block, interval, next_sweep = None, POLL_FIRST, 0.0
        while True:
            with self._changed:
                if self._stopped:
                    return
                t = time.monotonic()
                for tx, (_, until) in list(self._watched.items()):
                    if until < t:  # every wait for it is over
                        del self._watched[tx]
                        self._outcomes.pop(tx, None)
                for tx in [tx for tx, until in self._forget.items() if until < t]:
                    del self._forget[tx], self._outcomes[tx]
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
                    with self._changed:
                        if tx in watched or tx in self._outcomes:
                            continue
                        self._watched[tx] = (subject, time.monotonic() + self.timeout)
                    watched[tx] = subject
                    unasked.add(tx)
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
                        self._outcomes.setdefault(tx, Future())
                    self._finishers.submit(self._finished, tx, watched[tx], receipt)
            except Exception as exc:  # the node failed: requests waiting hear it now (and may wait again)
                log.warning("watcher: %s", exc)
                with self._changed:
                    failed = [self._outcomes.pop(tx) for tx in watched if tx in self._watched and tx in self._outcomes]
                for outcome in failed:
                    outcome.set_exception(exc)
            with self._changed:
                if not self._unasked and not self._stopped:
                    self._changed.wait(interval if self._watched else self.sweep_interval)
            interval = min(interval * POLL_GROWTH, POLL_MAX)

    def _finished(self, tx: str, subject: Any, receipt: Receipt) -> None:
        outcome, recorded = None, True
        try:
            if subject is not None:
                outcome = self.finish(subject, receipt)
        except Exception as exc:  # recorded by the next sweep, which must not find it remembered
            log.warning("recording transaction %s: %s", tx, exc)
            recorded = False
        with self._changed:
            finished = self._outcomes[tx] if recorded else self._outcomes.pop(tx)
            if recorded:
                self._forget[tx] = time.monotonic() + RECENT
        finished.set_result(Finished(receipt, outcome))
