"""Pushes app notifications through Expo. A push failure is logged and never blocks a payment."""

from __future__ import annotations

import functools
import logging

import requests
from exponent_server_sdk import PushClient, PushMessage, PushServerError
from sqlalchemy import Select, select, update

from relay.config import Settings
from relay.db import Database
from relay.models import Notification, PushToken

log = logging.getLogger(__name__)

TITLES = {
    "payment.new": "Approve a payment",
    "cancel.new": "Approve a cancellation",
}


def token_hint(token: str) -> str:
    """Enough of a push token to tell devices apart in a log; the whole token lets anyone push to
    the device."""
    return token[:22] + "…" if len(token) > 22 else "…"


@functools.lru_cache(maxsize=4)
def _unpushed_statement(batch: int) -> Select[Notification]:
    """The claim's query, built once: it runs every worker interval in every relay process."""
    return (
        select(Notification)
        .where(Notification.pushed == 0)
        .order_by(Notification.id)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )


class Pusher:
    def __init__(self, db: Database, settings: Settings, batch: int = 100) -> None:
        self.db = db
        self.batch = batch
        session = requests.Session()
        session.headers.update({"accept": "application/json", "content-type": "application/json"})
        if settings.expo_access_token is not None:
            session.headers["authorization"] = f"Bearer {settings.expo_access_token.get_secret_value()}"
        self.client = PushClient(host=settings.expo_base_url, session=session, timeout=10)

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
            rows = session.execute(_unpushed_statement(self.batch)).scalars().all()
            if not rows:
                return []
            session.execute(update(Notification).where(Notification.id.in_([r.id for r in rows])).values(pushed=1))
            accounts = {r.account for r in rows}
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
