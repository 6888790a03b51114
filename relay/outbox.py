"""Messages that leave the relay, written in the same transaction as the state change that causes
them: KIOSK callbacks (delivered by workers/callbacks.py) and app notifications (pushed by
workers/push.py and streamed over SSE)."""

from __future__ import annotations

import json
import secrets
from typing import Any, cast

from sqlalchemy import Insert, Table, bindparam, exists, insert, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from relay.db import Database, run
from relay.models import Callback, CallbackState, KioskClient, Notification, now

CALLBACKS = cast(Table, Callback.__table__)
NOTIFICATIONS = cast(Table, Notification.__table__)


def bound(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as the parameters of a statement that binds each as `v_<column>` (a bind
    parameter may not take a column's own name in an INSERT or UPDATE)."""
    return {f"v_{column}": value for column, value in values.items()}


def _insert(table: Table, *generated: str) -> Insert:
    """INSERT of every column but the `generated` ones, each value bound as `v_<column>`."""
    return insert(table).values({c.name: bindparam(f"v_{c.name}") for c in table.c if c.name not in generated})


def _insert_if_kiosk_listens(table: Table) -> Insert:
    """INSERT of a callback row (every column bound as `v_<column>`, typed: the values come through
    a SELECT) only if its KIOSK has a callback URL: one that has none polls instead, and its
    callbacks would have nowhere to go."""
    columns = list(table.c)
    values = [sql_cast(bindparam(f"v_{c.name}"), c.type).label(c.name) for c in columns]
    listens = exists().where(KioskClient.id == bindparam("v_kiosk_id"), KioskClient.callback_url.is_not(None))
    return insert(table).from_select([c.name for c in columns], select(*values).where(listens))


# Built once and run as plain SQL (relay.db.run): nearly every step of a payment queues one or
# both. run() applies no model defaults, so every value is given here.
_INSERT_CALLBACK = _insert_if_kiosk_listens(CALLBACKS)
_INSERT_NOTIFICATION = _insert(NOTIFICATIONS, "id")

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
) -> str | None:
    """Queues a callback; returns its id, which (as the `webhook-id` header) stays the same on every
    retry. Written as a plain INSERT in the session's transaction: nothing reads it back there.
    Nothing is queued (None) for a KIOSK without a callback URL: it learns of its payments by
    polling, and a callback for it could only be given up at its first attempt."""
    body = json.dumps({"type": type_, "code": code, "message": message, "data": data}, separators=(",", ":"))
    callback_id = "msg_" + secrets.token_hex(16)
    t = now()
    row = {
        "id": callback_id,
        "kiosk_id": kiosk_id,
        "payment_id": payment_id,
        "type": type_,
        "code": code,
        "body": body,
        "state": CallbackState.PENDING.value,
        "attempts": 0,
        "next_attempt_at": t,
        "locked_until": 0.0,
        "created_at": t,
        "delivered_at": None,
        "last_error": None,
    }
    if run(session, _INSERT_CALLBACK, bound(row)).rowcount == 0:
        return None
    Database.mark(session, CALLBACK_TOPIC)
    return callback_id


def notify(session: Session, account: str, kind: str, payment_id: str | None, payload: dict[str, Any]) -> None:
    """Queues a message for the app of `account` (push and live stream), as a plain INSERT in the
    session's transaction."""
    row = {
        "account": account,
        "kind": kind,
        "payment_id": payment_id,
        "payload": payload,
        "created_at": now(),
        "pushed": 0,
    }
    run(session, _INSERT_NOTIFICATION, bound(row))
    Database.mark(session, NOTIFICATION_TOPIC)
