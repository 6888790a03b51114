"""Live notification streams (GET /v1/payment/events): one query per interval in each relay process
hands every new notification to the streams of its account, however many streams are open.

Notification ids are taken when rows are inserted, not when they commit, so a row may become
visible after a newer one: each read also looks back over the last LOOKBACK ids, and skips the
ids already handed out."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from relay.errors import RateLimited
from relay.models import Notification
from relay.services.wallets import Wallets
from relay.workers import Wakeup, rest

log = logging.getLogger(__name__)

LOOKBACK = 100  # ids re-read behind the cursor (rows committed out of id order)
BATCH = 1000  # most rows read at once
QUEUE = 1000  # notifications a stream may have waiting; a stream that falls further behind is ended
STREAMS_PER_WALLET = 5  # open at once in one process (a phone and a few tabs)


@dataclass(eq=False)
class Subscription:
    account: str
    queue: asyncio.Queue[Notification] = field(default_factory=lambda: asyncio.Queue(QUEUE))
    overflowed: bool = False  # the client reads too slowly: the stream ends; it resumes from the database


class NotificationHub:
    def __init__(self, wallets: Wallets, interval: float, wakeup: Wakeup | None = None) -> None:
        self.wallets = wallets
        self.interval = interval
        self.wakeup = wakeup  # set when this process commits a notification
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._floor = 0  # ids up to this one existed before the hub started reading
        self._cursor: int | None = None  # the highest id read; None while no stream is open
        self._handed: set[int] = set()  # ids above cursor - LOOKBACK already handed out
        self._start = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, account: str) -> Subscription:
        """A stream of `account`'s notifications from now on (the caller reads earlier ones itself);
        RateLimited if the wallet has as many streams open here as it may (checked under the lock:
        streams opened at once count one after the other)."""
        async with self._start:
            if len(self._subscriptions.get(account, ())) >= STREAMS_PER_WALLET:
                raise RateLimited(f"At most {STREAMS_PER_WALLET} live streams of one wallet at once: close one.", 15)
            if self._cursor is None:
                self._cursor = self._floor = await asyncio.to_thread(self.wallets.latest_notification_id)
                self._handed = set()
            subscription = Subscription(account)
            self._subscriptions.setdefault(account, set()).add(subscription)
            if self._task is None:
                self._task = asyncio.create_task(self._run())
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscriptions = self._subscriptions.get(subscription.account, set())
        subscriptions.discard(subscription)
        if not subscriptions:
            self._subscriptions.pop(subscription.account, None)

    async def _run(self) -> None:
        """Reads and hands out new notifications while any stream is open."""
        try:
            while self._subscriptions:
                await rest(self.interval, self.wakeup)
                try:
                    await self._read()
                except Exception as exc:  # the database is away: the streams wait, and read again
                    log.warning("notification streams: %s", exc)
        finally:
            self._cursor, self._task = None, None

    async def _read(self) -> None:
        assert self._cursor is not None
        since = max(self._floor, self._cursor - LOOKBACK)
        rows = await asyncio.to_thread(self.wallets.notifications, since, BATCH)
        for row in rows:
            if row.id in self._handed:
                continue
            self._handed.add(row.id)
            for subscription in self._subscriptions.get(row.account, set()):
                try:
                    subscription.queue.put_nowait(row)
                except asyncio.QueueFull:
                    subscription.overflowed = True
        if rows:
            self._cursor = max(self._cursor, rows[-1].id)
        self._handed = {i for i in self._handed if i > self._cursor - LOOKBACK}
