"""Delivers queued KIOSK callbacks: Standard Webhooks signatures, exponential backoff, the same
`webhook-id` on every attempt, given up ("dead") after the retry period."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from concurrent.futures import ALL_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx
from sqlalchemy import bindparam, exists, select, tuple_, update
from sqlalchemy.orm import aliased
from standardwebhooks import Webhook

from relay.config import Settings
from relay.db import Database
from relay.metrics import CALLBACK_DELAY
from relay.models import Callback, CallbackState, KioskClient, now
from relay.services.kiosks import callback_url_problem

log = logging.getLogger(__name__)

TOP_UP_AFTER = 0.1  # seconds a step waits for its deliveries before claiming more

_earlier = aliased(Callback)
# Due callbacks; one waits while an earlier one of its payment is pending. A module constant: it runs
# every worker interval in every relay process, and building it cost more CPU than running it.
_DUE = (
    select(
        Callback.id,
        Callback.kiosk_id,
        Callback.body,
        Callback.attempts,
        Callback.created_at,
        KioskClient.callback_url,
        KioskClient.callback_secret,
    )
    .join(KioskClient, KioskClient.id == Callback.kiosk_id)
    .where(
        Callback.state == CallbackState.PENDING,
        Callback.next_attempt_at <= bindparam("now"),
        Callback.locked_until <= bindparam("now"),
        ~exists().where(
            _earlier.payment_id == Callback.payment_id,
            _earlier.state == CallbackState.PENDING,
            tuple_(_earlier.created_at, _earlier.id) < tuple_(Callback.created_at, Callback.id),
        ),
    )
    .order_by(Callback.next_attempt_at)
    .limit(bindparam("batch"))
    .with_for_update(skip_locked=True, of=Callback)
)


class Due(NamedTuple):
    id: str
    kiosk_id: int
    body: str
    attempts: int
    created_at: float
    url: str
    secret: str
    leased_until: float


class CallbackSender:
    """Delivers on `parallel` threads, up to `batch` callbacks under way (running or queued). A
    KIOSK whose endpoint hangs holds at most `per_kiosk` of them, each for up to the callback
    timeout; the rest keep serving every other KIOSK, and a step claims more as deliveries finish
    instead of waiting for a whole batch."""

    def __init__(
        self, db: Database, settings: Settings, batch: int = 32, parallel: int = 8, per_kiosk: int = 2
    ) -> None:
        self.db = db
        self.settings = settings
        self.batch = batch
        self.per_kiosk = per_kiosk
        self.http = httpx.Client(timeout=settings.callback_timeout, follow_redirects=False)
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="callback")
        self._in_flight: dict[Future[None], Due] = {}  # deliveries under way

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.http.close()

    def claim(
        self, limit: int | None = None, busy: Counter[int] | None = None, sending: set[str] | None = None
    ) -> tuple[list[Due], bool]:
        """Leases due callbacks for one delivery attempt (a crashed instance's come back when the
        lease ends): at most `limit`, and for a KIOSK no more than `per_kiosk` less its deliveries
        already under way (`busy`); none still `sending` here (its lease ran out while its endpoint
        answers slowly). A payment's callbacks go out in the order they were queued. Returns them,
        and whether more may be due now (some were left for a limit)."""
        t = now()
        limit = self.batch if limit is None else limit
        taken = Counter(busy or {})
        lease = t + self.settings.callback_lease
        with self.db.session() as session:
            rows = session.execute(_DUE, {"now": t, "batch": self.batch}).all()
            more = len(rows) == self.batch
            claimed: list[Due] = []
            for row in rows:
                if len(claimed) == limit:
                    more = True
                    break
                if row.id in (sending or ()):
                    continue
                if taken[row.kiosk_id] >= self.per_kiosk:
                    more = True  # left unleased: due again once the KIOSK's deliveries finish
                    continue
                taken[row.kiosk_id] += 1
                claimed.append(Due._make((*row, lease)))
            if claimed:
                ids = [due.id for due in claimed]
                session.execute(update(Callback).where(Callback.id.in_(ids)).values(locked_until=lease))
            return claimed, more

    def run_once(self) -> int:
        """Starts the due deliveries there is room for, and more as they finish while more are
        due, for up to one worker interval; returns how many it started. Deliveries still under
        way when it returns go on, and count against their KIOSK at the next step."""
        started = 0
        deadline = time.monotonic() + self.settings.worker_interval
        while True:
            # A delivery that failed to record its outcome is sent again, same id, once its lease ends.
            for future in [f for f in self._in_flight if f.done()]:
                del self._in_flight[future]
                if not future.cancelled() and (error := future.exception()) is not None:
                    log.warning("callback delivery: %s", error)
            room = self.batch - len(self._in_flight)
            sending = list(self._in_flight.values())
            due, more = (
                self.claim(room, Counter(d.kiosk_id for d in sending), {d.id for d in sending})
                if room > 0
                else ([], True)
            )
            for callback in due:
                self._in_flight[self.pool.submit(self.deliver, callback)] = callback
            started += len(due)
            left = deadline - time.monotonic()
            if not more or left <= 0 or not self._in_flight:
                return started
            # More is due: claim again once the deliveries under way finish (or TOP_UP_AFTER passes).
            wait(self._in_flight, timeout=min(left, TOP_UP_AFTER), return_when=ALL_COMPLETED)

    def deliver(self, due: Due) -> None:
        if now() + self.settings.callback_timeout >= due.leased_until:
            # It waited so long for a thread that the attempt could outlast its lease (and go out
            # twice at once): it is claimed again when the lease ends, here or by another instance.
            return
        stamp = datetime.now(tz=UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": due.id,
            "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(due.secret).sign(due.id, stamp, due.body),
        }
        # Checked again as it is sent: the name may resolve elsewhere since the KIOSK was added.
        error = callback_url_problem(due.url, self.settings.allow_private_callbacks)
        try:
            if error is None:
                # Only the status counts: the body is never read (an endpoint may send any amount, slowly).
                with self.http.stream("POST", due.url, content=due.body, headers=headers) as response:
                    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._record(due, error)

    def _record(self, due: Due, error: str | None) -> None:
        t = now()
        attempts = due.attempts + 1
        values: dict[str, Any] = {"attempts": attempts, "locked_until": 0.0, "last_error": error}
        if error is None:
            values |= {"state": CallbackState.DELIVERED.value, "delivered_at": t}
            CALLBACK_DELAY.observe(t - due.created_at)
        else:
            settings = self.settings
            delay = min(settings.callback_backoff_initial * 2 ** (attempts - 1), settings.callback_backoff_max)
            values["next_attempt_at"] = t + delay * random.uniform(1.0, 1.2)
            if values["next_attempt_at"] - due.created_at > settings.callback_retry_period:
                values["state"] = CallbackState.DEAD.value
                log.warning("callback %s is dead after %d attempts: %s", due.id, attempts, error)
        with self.db.session() as session:
            pending = Callback.state == CallbackState.PENDING
            session.execute(update(Callback).where(Callback.id == due.id, pending).values(**values))
