"""Pushes app notifications through Expo. A push failure is logged and never blocks a payment."""

from __future__ import annotations

import logging
from typing import cast

import requests
from exponent_server_sdk import PushClient, PushMessage, PushServerError
from sqlalchemy import Table, bindparam, select, update

from relay.config import Settings
from relay.db import Database
from relay.models import Notification, PushToken

log = logging.getLogger(__name__)

TITLES = {
    "payment.new": "Approve a payment",
    "cancel.new": "Approve a cancellation",
}

_NOTIFICATIONS = cast(Table, Notification.__table__)
# The oldest notifications still to push, marked pushed and returned by one statement (rows another
# instance is claiming are skipped); a module constant, as it runs every worker interval.
_CLAIM = (
    update(_NOTIFICATIONS)
    .where(
        _NOTIFICATIONS.c.id.in_(
            select(_NOTIFICATIONS.c.id)
            .where(_NOTIFICATIONS.c.pushed == 0)
            .order_by(_NOTIFICATIONS.c.id)
            .limit(bindparam("batch"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(pushed=1)
    .returning(*(_NOTIFICATIONS.c[name] for name in ("id", "account", "kind", "payment_id", "payload")))
)


def token_hint(token: str) -> str:
    """Enough of a push token to tell devices apart in a log (the whole token lets anyone push)."""
    return token[:22] + "…" if len(token) > 22 else "…"


class Pusher:
    def __init__(self, db: Database, settings: Settings, batch: int = 100) -> None:
        self.db = db
        self.batch = batch
        self.client = PushClient(host=settings.expo_base_url, timeout=10)
        if settings.expo_access_token is not None:
            self.client.session.headers["authorization"] = f"Bearer {settings.expo_access_token.get_secret_value()}"

    def run_once(self) -> int:
        messages = self._claim()
        if messages:
            try:
                for response in self.client.publish_multiple(messages):
                    if not response.is_success():
                        token = response.push_message.to
                        hint = token_hint(token)
                        log.warning("push to %s failed: %s", hint, (response.message or "").replace(token, hint))
            except (PushServerError, requests.RequestException, ValueError) as exc:
                log.warning("push service error: %s", exc)
        return len(messages)

    def _claim(self) -> list[PushMessage]:
        with self.db.session() as session:
            rows = sorted(session.execute(_CLAIM, {"batch": self.batch}).all())  # in the order queued
            if not rows:
                return []
            accounts = {row.account for row in rows}
            tokens: dict[str, list[str]] = {}
            for account, token in session.execute(
                select(PushToken.account, PushToken.token).where(PushToken.account.in_(accounts))
            ):
                tokens.setdefault(account, []).append(token)
            return [
                PushMessage(
                    to=token,
                    title=TITLES.get(row.kind, "Loyalty payment"),
                    body=f"Payment {row.payment_id or ''}: {row.kind}",
                    data={"kind": row.kind, "paymentId": row.payment_id, **row.payload},
                )
                for row in rows
                for token in tokens.get(row.account, [])
            ]
