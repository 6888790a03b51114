"""Messages that leave the relay, written in the same transaction as the state change that causes
them: KIOSK callbacks (delivered by workers/callbacks.py) and app notifications (pushed by
workers/push.py and streamed over SSE)."""

from __future__ import annotations

import json
import secrets
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, insert, select
from sqlalchemy.orm import Session

from relay.db import Database
from relay.models import Callback, CallbackState, KioskClient, Notification, now

# Callback codes (spec §4.1).
SUCCESS, DENIED, CONTRACT_ERROR, TIMEOUT = 0, 1001, 1002, 2000
# What a commit that queued callbacks / notifications tells this process's workers (Database.on_commit).
CALLBACK_TOPIC, NOTIFICATION_TOPIC = "callbacks", "notifications"

# A callback is queued only if its KIOSK has a callback URL: one that has none polls instead. An
# INSERT from a SELECT applies no column defaults: every value is given.
_COLUMNS = ["id", "kiosk_id", "payment_id", "type", "code", "body", "state", "attempts", "next_attempt_at"]
_COLUMNS += ["locked_until", "created_at"]
_CALLBACKS = cast(Table, Callback.__table__)  # the table itself: an ORM insert cannot take a SELECT
_INSERT_CALLBACK = insert(_CALLBACKS).from_select(
    _COLUMNS,
    select(*(bindparam(c, type_=_CALLBACKS.c[c].type) for c in _COLUMNS)).where(
        exists().where(KioskClient.id == bindparam("kiosk_id"), KioskClient.callback_url.is_not(None))
    ),
)
# The table's own INSERT: an ORM-enabled one costs several times the CPU for a row nobody reads back.
_INSERT_NOTIFICATION = insert(cast(Table, Notification.__table__))


def enqueue_callback(
    session: Session, kiosk_id: int, payment_id: str, type_: str, code: int, message: str, data: dict[str, Any]
) -> str | None:
    """Queues a callback; returns its id (the `webhook-id` header, the same on every retry), or None
    for a KIOSK without a callback URL."""
    body = json.dumps({"type": type_, "code": code, "message": message, "data": data}, separators=(",", ":"))
    t = now()
    row = {"id": "msg_" + secrets.token_hex(16), "kiosk_id": kiosk_id, "payment_id": payment_id, "type": type_}
    row |= {"code": code, "body": body, "state": CallbackState.PENDING.value, "attempts": 0, "next_attempt_at": t}
    if not session.execute(_INSERT_CALLBACK, row | {"locked_until": 0.0, "created_at": t}).rowcount:  # type: ignore[attr-defined]
        return None
    Database.mark(session, CALLBACK_TOPIC)
    return str(row["id"])


def notify(session: Session, account: str, kind: str, payment_id: str | None, payload: dict[str, Any]) -> None:
    """Queues a message for the app of `account` (push and live stream)."""
    row = {"account": account, "kind": kind, "payment_id": payment_id, "payload": payload}
    session.execute(_INSERT_NOTIFICATION, row)
    Database.mark(session, NOTIFICATION_TOPIC)
