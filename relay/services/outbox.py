"""Messages that leave the relay, written in the same transaction as the state change that causes
them: KIOSK callbacks (delivered by workers/callbacks.py) and app notifications (pushed by
workers/push.py and streamed over SSE)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from relay.db import Database
from relay.models import Callback, KioskClient, Notification

# Callback codes (spec §4.1).
SUCCESS, DENIED, CONTRACT_ERROR, TIMEOUT = 0, 1001, 1002, 2000
# What a commit that queued callbacks / notifications tells this process's workers (Database.on_commit).
CALLBACK_TOPIC, NOTIFICATION_TOPIC = "callbacks", "notifications"


def enqueue_callback(
    session: Session, kiosk_id: int, payment_id: str, type_: str, code: int, message: str, data: dict[str, Any]
) -> str | None:
    """Queues a callback; returns its id (the `webhook-id` header, the same on every retry), or None
    for a KIOSK without a callback URL (it polls instead)."""
    kiosk = session.get(KioskClient, kiosk_id)
    if kiosk is None or kiosk.callback_url is None:
        return None
    body = json.dumps({"type": type_, "code": code, "message": message, "data": data}, separators=(",", ":"))
    callback = Callback(
        id="msg_" + secrets.token_hex(16), kiosk_id=kiosk_id, payment_id=payment_id, type=type_, code=code, body=body
    )
    session.add(callback)
    Database.mark(session, CALLBACK_TOPIC)
    return callback.id


def notify(session: Session, account: str, kind: str, payment_id: str | None, payload: dict[str, Any]) -> None:
    """Queues a message for the app of `account` (push and live stream)."""
    session.execute(
        insert(Notification), {"account": account, "kind": kind, "payment_id": payment_id, "payload": payload}
    )
    Database.mark(session, NOTIFICATION_TOPIC)
