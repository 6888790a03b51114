"""Relay CPU per database transaction on PostgreSQL for the payment update the relay runs on most
steps (a conditional UPDATE ... RETURNING of the whole row): built on every call through the ORM
(the first row, the baseline); built once with bind parameters through the ORM session; as the
relay runs it (`Payments._transition`: built once per shape, run as plain SQL by `relay.db.run`,
the row turned into a Payment); through Core with the row turned into a Payment, on a Core
connection and in an ORM session; an UPDATE without RETURNING; a primary-key read; and the same
UPDATE sent by the driver alone (psycopg on a connection of the same pool, no SQLAlchemy: the
floor under any use of SQLAlchemy). Says how much of a statement's client-side cost is building it
and its cache key, how much is the row and the session, and how much is SQLAlchemy's own execution.

    python -m bench.statements [--runs 2000]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import bindparam, update

from bench.harness import POSTGRES_ADMIN_URL
from relay import db as database
from relay import kiosks
from relay.models import Payment, now
from relay.models import PaymentStatus as S
from relay.payments import Payments

# The ORM variants' returned row replaces the session's copy of the payment.
RETURNING_ROW = {"populate_existing": True, "synchronize_session": False}
SHOP = "0x" + "00" * 32
ACCOUNT = "0x" + "11" * 20


@contextmanager
def scratch_database() -> Iterator[database.Database]:
    name = f"relay_statements_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    db = None
    try:
        database.upgrade(url)
        db = database.Database(url)
        yield db
    finally:
        if db is not None:
            db.engine.dispose()
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def variants(db: database.Database, payment_id: str) -> dict[str, Callable[[], object]]:
    table = Payment.metadata.tables[Payment.__tablename__]
    orm_built_once = (
        update(Payment)
        .where(Payment.payment_id == bindparam("id"), Payment.status == bindparam("from_status"))
        .values(updated_at=bindparam("stamp"), error=bindparam("new_error"))
        .returning(Payment)
        .execution_options(**RETURNING_ROW)
    )
    core_built_once = (
        update(table)
        .where(table.c.payment_id == bindparam("id"), table.c.status == bindparam("from_status"))
        .values(updated_at=bindparam("stamp"), error=bindparam("new_error"))
        .returning(*table.c)
    )
    no_returning = (
        update(table)
        .where(table.c.payment_id == bindparam("id"), table.c.status == bindparam("from_status"))
        .values(updated_at=bindparam("stamp"), error=bindparam("new_error"))
    )

    def params() -> dict[str, object]:
        return {"id": payment_id, "from_status": S.NEW, "stamp": now(), "new_error": None}

    def built_per_call() -> object:
        with db.session() as session:
            return session.execute(
                update(Payment)
                .where(Payment.payment_id == payment_id, Payment.status.in_({S.NEW}), Payment.chain_op.is_(None))
                .values(updated_at=now(), error=None)
                .returning(Payment)
                .execution_options(**RETURNING_ROW)
            ).scalar_one_or_none()

    def relay_transition() -> object:
        with db.session() as session:
            return Payments._transition(session, payment_id, {S.NEW}, error=None)

    def orm_once() -> object:
        with db.session() as session:
            return session.execute(orm_built_once, params()).scalar_one()

    def core_once() -> object:
        with db.engine.begin() as conn:
            return Payment(**conn.execute(core_built_once, params()).one()._mapping)

    def session_core_once() -> object:
        with db.session() as session:
            return Payment(**session.execute(core_built_once, params()).one()._mapping)

    def core_no_row() -> object:
        with db.engine.begin() as conn:
            return conn.execute(no_returning, params()).rowcount

    def read_by_key() -> object:
        with db.session() as session:
            return session.get(Payment, payment_id)

    driver_sql = str(core_built_once.compile(dialect=db.engine.dialect))

    def driver_only() -> object:
        connection = db.engine.raw_connection()
        cursor = connection.cursor()
        try:
            cursor.execute(driver_sql, params())
            row = cursor.fetchone()
            connection.commit()
            return row
        finally:
            cursor.close()
            connection.close()  # back to the pool

    return {
        "UPDATE…RETURNING row, built per call (ORM)": built_per_call,
        "the same, built once, ORM session": orm_once,
        "Payments._transition (the relay: plain SQL, relay.db.run)": relay_transition,
        "the same, built once, Core + Payment(**row)": core_once,
        "the same, in an ORM session, Core + Payment(**row)": session_core_once,
        "UPDATE without RETURNING, built once, Core": core_no_row,
        "read by primary key (ORM session.get)": read_by_key,
        "UPDATE…RETURNING row, psycopg alone (tuple)": driver_only,
    }


def measure(fns: dict[str, Callable[[], object]], runs: int, rounds: int = 5) -> dict[str, float]:
    """CPU ms per call of each variant: the median of `rounds` rounds that take turns, so a slow
    spell of the machine does not fall on one variant only."""
    for fn in fns.values():  # warm caches and prepared statements
        for _ in range(max(runs // 10, 10)):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.process_time()
            for _ in range(runs // rounds):
                fn()
            samples[name].append((time.process_time() - start) * 1000 / (runs // rounds))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    with scratch_database() as db:
        payment_id = "0x" + secrets.token_hex(32)
        with db.session() as session:
            kiosk_id = kiosks.add(session, "statements", [SHOP], None).kiosk.id
        with db.session() as session:
            units = ("point", "token", "value")
            amounts = {f"{kind}_{unit}": "0" for kind in ("paid", "fee", "total") for unit in units}
            session.add(
                Payment(
                    payment_id=payment_id,
                    purchase_id="statements",
                    amount="1",
                    currency="krw",
                    shop_id=SHOP,
                    account=ACCOUNT,
                    kiosk_account=ACCOUNT,
                    kiosk_id=kiosk_id,
                    loyalty_type=0,
                    status=S.NEW,
                    open_new_at=0,
                    **amounts,
                )
            )
        results = list(measure(variants(db, payment_id), args.runs).items())
    baseline = results[0][1]
    print(f"\nRelay CPU per database transaction (ms, median of 5 rounds, {args.runs} calls; PostgreSQL)")
    print(f"{'':<62}{'ms':>8}{'÷ first':>10}")
    for name, ms in results:
        print(f"{name:<62}{ms:>8.3f}{ms / baseline:>10.2f}")


if __name__ == "__main__":
    main()
