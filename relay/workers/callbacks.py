"""Delivers queued KIOSK callbacks: Standard Webhooks signatures, exponential backoff, the same
`webhook-id` on every attempt, given up ("dead") after the retry period."""

from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import NamedTuple

import httpx
from sqlalchemy import exists, select, update
from sqlalchemy.orm import aliased
from standardwebhooks import Webhook

from relay.config import Settings
from relay.db import Database
from relay.models import Callback, CallbackState, KioskClient, now

log = logging.getLogger(__name__)


class Due(NamedTuple):
    id: str
    body: str
    attempts: int
    created_at: float
    url: str | None
    secret: str


class CallbackSender:
    def __init__(self, db: Database, settings: Settings, batch: int = 32, parallel: int = 8) -> None:
        self.db = db
        self.settings = settings
        self.batch = batch
        self.http = httpx.Client(timeout=settings.callback_timeout, follow_redirects=False)
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="callback")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def claim(self) -> list[Due]:
        """Locks due callbacks for one delivery attempt (a lease, so a crashed instance's claims
        come back after it expires). A payment's callbacks go out in the order they were queued:
        one waits while an earlier one of its payment is still to be delivered."""
        t = now()
        earlier = aliased(Callback)
        queued_before = (earlier.created_at < Callback.created_at) | (
            (earlier.created_at == Callback.created_at) & (earlier.id < Callback.id)
        )
        with self.db.session() as session:
            rows = session.execute(
                select(Callback, KioskClient.callback_url, KioskClient.callback_secret)
                .join(KioskClient, KioskClient.id == Callback.kiosk_id)
                .where(
                    Callback.state == CallbackState.PENDING,
                    Callback.next_attempt_at <= t,
                    Callback.locked_until <= t,
                    ~exists().where(
                        earlier.payment_id == Callback.payment_id,
                        earlier.state == CallbackState.PENDING,
                        queued_before,
                    ),
                )
                .order_by(Callback.next_attempt_at)
                .limit(self.batch)
                .with_for_update(skip_locked=True, of=Callback)
            ).all()
            for callback, _, _ in rows:
                callback.locked_until = t + self.settings.callback_lease
            return [Due(c.id, c.body, c.attempts, c.created_at, url, secret) for c, url, secret in rows]

    def run_once(self) -> int:
        due = self.claim()
        list(self.pool.map(self.deliver, due))
        return len(due)

    def deliver(self, due: Due) -> None:
        error = None
        if not due.url:
            error = "the KIOSK has no callback URL"
        else:
            stamp = datetime.now(tz=UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": due.id,
                "webhook-timestamp": str(int(stamp.timestamp())),
                "webhook-signature": Webhook(due.secret).sign(due.id, stamp, due.body),
            }
            try:
                response = self.http.post(due.url, content=due.body, headers=headers)
                if not 200 <= response.status_code < 300:
                    error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        self._record(due, error)

    def _record(self, due: Due, error: str | None) -> None:
        t = now()
        attempts = due.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "locked_until": 0.0, "last_error": error}
        if error is None:
            values |= {"state": CallbackState.DELIVERED, "delivered_at": t}
        else:
            delay = min(
                self.settings.callback_backoff_initial * 2 ** (attempts - 1), self.settings.callback_backoff_max
            )
            next_at = t + delay * random.uniform(1.0, 1.2)
            if not due.url or next_at - due.created_at > self.settings.callback_retry_period:
                values["state"] = CallbackState.DEAD
                log.warning("callback %s is dead after %d attempts: %s", due.id, attempts, error)
            values["next_attempt_at"] = next_at
        with self.db.session() as session:
            session.execute(
                update(Callback).where(Callback.id == due.id, Callback.state == CallbackState.PENDING).values(values)
            )
