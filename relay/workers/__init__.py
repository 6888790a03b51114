"""Background work, started by the app: each worker is safe to run in every relay instance at once
(rows are claimed with conditional updates or `SKIP LOCKED`, never with in-process flags)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


async def run_forever(name: str, step: Callable[[], object], interval: float) -> None:
    """Calls `step` in a thread every `interval` seconds until cancelled; errors are logged."""
    while True:
        try:
            await asyncio.to_thread(step)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s worker: %s", name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        await asyncio.sleep(interval)
