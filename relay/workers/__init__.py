"""Background work, started by the app: each worker is safe to run in every relay instance at once
(rows are claimed with conditional updates or `SKIP LOCKED`, never with in-process flags)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# A worker woken early still rests this long after a step: a burst of commits is served by one step.
WAKE_AFTER = 0.1


class Wakeup:
    """Cuts a worker's rest short. Created on the worker's event loop; `set` may be called from any
    thread (a request's commit)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed (shutting down)
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> None:
        """Returns when woken, or after `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()


async def run_forever(name: str, step: Callable[[], object], interval: float, wakeup: Wakeup | None = None) -> None:
    """Calls `step` in a thread every `interval` seconds, or sooner when woken, until cancelled;
    errors are logged."""
    while True:
        try:
            await asyncio.to_thread(step)
        except Exception as exc:
            log.warning("%s worker: %s", name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        await rest(interval, wakeup)


async def rest(interval: float, wakeup: Wakeup | None = None) -> None:
    """Waits `interval` seconds, or less if `wakeup` is set meanwhile (but at least WAKE_AFTER)."""
    if wakeup is None:
        await asyncio.sleep(interval)
    else:
        await asyncio.sleep(WAKE_AFTER)
        await wakeup.wait(max(0.0, interval - WAKE_AFTER))
