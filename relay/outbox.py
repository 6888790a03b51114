"""Messages that leave the relay, written in the same transaction as the state change that causes
them: KIOSK callbacks (delivered by workers/callbacks.py) and app notifications (pushed by
workers/push.py and streamed over SSE)."""

from __future__ import annotations

import json
import secrets
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from relay.db import Database
from relay.models import Callback, Notification

CALLBACKS = cast(Table, Callback.__table__)
NOTIFICATIONS = cast(Table, Notification.__table__)

# Built once, the values bound per call: nearly every step of a payment queues one or both.
_INSERT_CALLBACK = insert(CALLBACKS)
_INSERT_NOTIFICATION = insert(NOTIFICATIONS)

# What a commit that queued callbacks / notifications tells this process's workers (Database.on_commit).
CALLBACK_TOPIC = "callbacks"
NOTIFICATION_TOPIC = "notifications"

# Callback codes (spec §4.1).
SUCCESS, DENIED, CONTRACT_ERROR, SERVER_ERROR, TIMEOUT = 0, 1001, 1002, 1003, 2000


def enqueue_callback(
    session: Session,
    kiosk_id: int,
    payment_id: str,
    type_: str,
    code: int,
    message: str,
    data: dict[str, Any],
) -> str:
    """Queues a callback; returns its id, which (as the `webhook-id` header) stays the same on every
    retry. Written as a plain INSERT in the session's transaction: nothing reads it back there."""
    body = json.dumps({"type": type_, "code": code, "message": message, "data": data}, separators=(",", ":"))
    callback_id = "msg_" + secrets.token_hex(16)
    row = {"id": callback_id, "kiosk_id": kiosk_id, "payment_id": payment_id, "type": type_, "code": code, "body": body}
    session.connection().execute(_INSERT_CALLBACK, row)
    Database.mark(session, CALLBACK_TOPIC)
    return callback_id


def notify(session: Session, account: str, kind: str, payment_id: str | None, payload: dict[str, Any]) -> None:
    """Queues a message for the app of `account` (push and live stream), as a plain INSERT in the
    session's transaction."""
    row = {"account": account, "kind": kind, "payment_id": payment_id, "payload": payload}
    session.connection().execute(_INSERT_NOTIFICATION, row)
    Database.mark(session, NOTIFICATION_TOPIC)
