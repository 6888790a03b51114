"""`relay.db.run`, the plain-SQL path of the payment statements, on both database backends: it
returns what the ORM reads, converts parameters as SQLAlchemy would, keeps SQLAlchemy's errors
and statement events, and refuses what it cannot run before anything reaches the database."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, event, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from relay import db as database
from relay import kiosks
from relay.models import Callback, CallbackState, Notification, Payment, PaymentStatus
from relay.outbox import enqueue_callback, notify
from relay.payments import _BY_ID, _INSERT, PAYMENTS, _update_payment

SHOP = "0x" + "ab" * 32
ACCOUNT = "0x" + "cd" * 20


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, new_database: Callable[[str], str]) -> Iterator[database.Database]:
    url = new_database(request.param)
    database.upgrade(url)
    db = database.Database(url)
    yield db
    db.engine.dispose()


def new_payment(db: database.Database, callback_url: str | None = "http://127.0.0.1:9/callback") -> dict[str, Any]:
    with db.session() as session:
        kiosk_id = kiosks.add(session, "plain", [SHOP], callback_url).kiosk.id
    amounts = {f"{kind}_{unit}": "7" for kind in ("paid", "fee", "total") for unit in ("point", "token", "value")}
    row = dict.fromkeys(PAYMENTS.c.keys()) | {
        "payment_id": "0x" + secrets.token_hex(32),
        "purchase_id": "P-" + secrets.token_hex(4),
        "amount": "10",
        "currency": "krw",
        "shop_id": SHOP,
        "account": ACCOUNT,
        "kiosk_account": ACCOUNT,
        "kiosk_id": kiosk_id,
        "loyalty_type": 0,
        "status": PaymentStatus.NEW,
        "open_new_at": 1_700_000_000,
        "chain_op_at": 12.5,
        "updated_at": 1_700_000_000.25,
        **amounts,
    }
    with db.session() as session:
        database.run(session, _INSERT, row)
    return row


def columns(payment: Payment) -> dict[str, Any]:
    return {column.key: getattr(payment, column.key) for column in PAYMENTS.c}


def test_rows_read_and_written_as_plain_sql_are_what_the_orm_reads(db: database.Database) -> None:
    row = new_payment(db)
    with db.session() as session:
        orm = session.get(Payment, row["payment_id"])
        assert orm is not None
        assert columns(orm) == row
        plain = database.run(session, _BY_ID, {"payment": row["payment_id"]}).one()
        assert dict(plain._mapping) == row

    # A conditional update with a set of statuses (written as OR: run takes no expanding IN).
    with db.session() as session:
        changed = _update_payment(
            session,
            row["payment_id"],
            {"status": {PaymentStatus.NEW, PaymentStatus.APPROVED}, "chain_op": None},
            {"status": PaymentStatus.APPROVED, "error": "e"},
        )
    assert changed is not None
    assert inspect(changed).transient  # of no session: nothing it does can write the row
    assert (changed.status, changed.error, changed.amount) == (PaymentStatus.APPROVED, "e", "10")
    assert changed.updated_at > row["updated_at"]
    with db.session() as session:
        stored = session.get(Payment, row["payment_id"])
        assert stored is not None and columns(stored) == columns(changed)

    # The condition no longer holds: nothing changes, and there is no row.
    with db.session() as session:
        assert _update_payment(session, row["payment_id"], {"status": {PaymentStatus.NEW}}, {"error": "x"}) is None
        unchanged = session.get(Payment, row["payment_id"])
        assert unchanged is not None and unchanged.error == "e"


def test_errors_and_statement_events_stay_sqlalchemys(db: database.Database) -> None:
    row = new_payment(db)
    seen: list[str] = []

    def statement(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        seen.append(text)

    event.listen(Engine, "before_cursor_execute", statement)
    try:
        with pytest.raises(IntegrityError), db.session() as session:
            database.run(session, _INSERT, row)  # the same primary key again
    finally:
        event.remove(Engine, "before_cursor_execute", statement)
    assert any(text.startswith("INSERT INTO payments") for text in seen)
    # The failed transaction left the table as it was, and the pool serves the next one.
    with db.session() as session:
        assert session.execute(select(PAYMENTS.c.payment_id)).scalars().all() == [row["payment_id"]]


def test_parameters_are_converted_for_the_driver_as_sqlalchemy_would(db: database.Database) -> None:
    table = Notification.__table__
    statement = insert(table).values(
        {name: bindparam(name) for name in ("account", "kind", "payment_id", "payload", "created_at", "pushed")}
    )
    payload = {"paymentStatus": 4, "nested": {"list": [1, "two", None]}}
    with db.session() as session:
        database.run(
            session,
            statement,
            {"account": ACCOUNT, "kind": "k", "payment_id": None, "payload": payload, "created_at": 1, "pushed": False},
        )
    with db.session() as session:
        stored = session.execute(select(Notification)).scalar_one()
        assert (stored.payload, stored.created_at, stored.pushed) == (payload, 1.0, False)
        assert isinstance(stored.created_at, float)


@pytest.mark.parametrize(
    ("statement", "params", "refusal"),
    [
        (select(PAYMENTS).where(PAYMENTS.c.status.in_([1, 2])), {}, "expanding"),
        (_BY_ID, {}, "no value for payment"),
        (select(PAYMENTS).where(PAYMENTS.c.shop_id == bindparam("shop")), {"shop": "0x00", "extra": 2}, None),
    ],
)
def test_statements_run_cannot_take_as_they_are_are_refused_before_the_database(
    db: database.Database, statement: Any, params: dict[str, Any], refusal: str | None
) -> None:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, text: str, *args: Any) -> None:
        seen.append(text)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        with db.session() as session:
            if refusal is None:
                assert database.run(session, statement, params).all() == []
            else:
                with pytest.raises(ValueError, match=refusal):
                    database.run(session, statement, params)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert len(seen) == (1 if refusal is None else 0)


def test_outbox_rows_written_as_plain_sql_hold_what_the_models_defaults_gave(db: database.Database) -> None:
    """enqueue_callback and notify give every value themselves (run applies no model defaults):
    a callback is pending, never tried, due now and unleased; a notification is still to push."""
    row = new_payment(db)
    before = time.time()
    with db.session() as session:
        callback_id = enqueue_callback(session, row["kiosk_id"], row["payment_id"], "create", 0, "ok", {"a": 1})
        notify(session, ACCOUNT, "payment.new", row["payment_id"], {"paymentStatus": 1})
    after = time.time()
    with db.session() as session:
        callback = session.get(Callback, callback_id)
        assert callback is not None
        assert (callback.state, callback.attempts, callback.locked_until) == (CallbackState.PENDING, 0, 0.0)
        assert (callback.delivered_at, callback.last_error) == (None, None)
        assert before <= callback.created_at == callback.next_attempt_at <= after
        assert json.loads(callback.body) == {"type": "create", "code": 0, "message": "ok", "data": {"a": 1}}
        notification = session.execute(select(Notification)).scalar_one()
        assert (notification.account, notification.kind, notification.payment_id) == (
            ACCOUNT,
            "payment.new",
            row["payment_id"],
        )
        assert (notification.payload, notification.pushed) == ({"paymentStatus": 1}, 0)
        assert before <= notification.created_at <= after


def test_no_callback_is_queued_for_a_kiosk_without_a_callback_url(db: database.Database) -> None:
    """A KIOSK with no callback URL polls: its callbacks are not queued (they could only be given
    up at the first attempt, with a warning for every payment); the app's notification still is."""
    polling = new_payment(db, callback_url=None)
    listening = new_payment(db)
    with db.session() as session:
        skipped = enqueue_callback(session, polling["kiosk_id"], polling["payment_id"], "create", 0, "ok", {})
        queued = enqueue_callback(session, listening["kiosk_id"], listening["payment_id"], "create", 0, "ok", {})
        notify(session, ACCOUNT, "payment.approved", polling["payment_id"], {"paymentStatus": 2})
    assert skipped is None and queued is not None
    with db.session() as session:
        rows = session.execute(select(Callback.id, Callback.payment_id)).all()
        assert [tuple(r) for r in rows] == [(queued, listening["payment_id"])]
        assert session.execute(select(Notification.payment_id)).scalars().all() == [polling["payment_id"]]
