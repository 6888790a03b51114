"""The relay's queries stay cheap as its tables grow: a relay runs in this process against a
PostgreSQL database that already holds a large history (terminal payments, delivered callbacks,
pushed notifications, indexed events, provided purchases, used temporary accounts); it serves
flows 1.1 to 1.4 and the read endpoints while its background workers poll; then every SELECT,
UPDATE and DELETE it issued is run again under EXPLAIN ANALYZE (in a transaction that is rolled
back) and no plan node may read more than a handful of rows of that history, nor the statement
more than a handful of pages.

A query without a fitting index reads the whole history on every call: unnoticed at a
thousand rows, a full-table scan per request or per poll at a few million."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine, event

from loyalty_sdk import AppClient, KioskClient
from relay.devnet import anvil_key
from tests.relay.conftest import (
    OWNER,
    POINT_USER,
    UNIT,
    CallbackReceiver,
    FakeExpo,
    postgres_with_kiosk,
    relay_in_this_process,
)

HISTORY = 50_000  # rows of each table's history
# What one statement may read of a table (rows returned by its scans plus rows they read and
# dropped): its own rows of the flow and a small page, never a fraction of the history.
MOST_ROWS_READ = 200
# And the pages (8 KiB) it may touch, indexes included: at most 25 seen for any statement of the
# flows; a walk through a whole index of the history reads over 300.
MOST_PAGES = 100
TEN_KRW = 10 * UNIT


@dataclass
class Statements:
    """The statements a database's engines run, recorded with their parameters."""

    database: str
    seen: list[tuple[str, Any]] = field(default_factory=list)

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if many or conn.engine.url.database != self.database:
            return
        if re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", statement, re.IGNORECASE):
            self.seen.append((statement, parameters))

    def distinct(self) -> dict[str, Any]:
        """One set of parameters for each statement text (the last one seen)."""
        return {statement: parameters for statement, parameters in self.seen}


def fill_history(url: str, kiosk_id: int, shop_id: str, rows: int) -> None:
    """`rows` finished records in each table the relay keeps, then fresh planner statistics."""
    hex_id = "'0x' || md5(i::text) || md5((i + 1)::text)"
    account = "'0x' || substr(md5('a' || mod(i, 997)::text), 1, 40)"
    old = "extract(epoch from now()) - 86400 - i"
    recent = "extract(epoch from now()) - 3600 - i"  # i < 82,800: within the last day
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(
            f"""INSERT INTO payments (payment_id, purchase_id, amount, currency, shop_id, account,
                kiosk_account, kiosk_id, loyalty_type, paid_point, paid_token, paid_value, fee_point,
                fee_token, fee_value, total_point, total_token, total_value, status, open_new_at,
                close_new_at, open_tx, close_tx, decided_at, updated_at)
            SELECT {hex_id}, 'H-' || i, '1000', 'krw', %(shop)s, {account}, {account}, %(kiosk)s, 0,
                '1000', '0', '1000', '10', '0', '10', '1010', '0', '1010',
                CASE WHEN mod(i, 10) = 0 THEN 8 WHEN mod(i, 10) = 1 THEN 9 ELSE 4 END,
                {old}, {old}, {hex_id}, {hex_id}, {old}, {old}
            FROM generate_series(1, %(rows)s) AS i""",
            {"shop": shop_id, "kiosk": kiosk_id, "rows": rows},
        )
        conn.execute(
            f"""INSERT INTO callbacks (id, kiosk_id, payment_id, type, code, body, state, attempts,
                next_attempt_at, locked_until, created_at, delivered_at)
            SELECT 'msg_' || md5(i::text), %(kiosk)s, {hex_id}, 'create', 0, '{{}}', 'delivered', 1,
                {old}, 0, {old}, {old}
            FROM generate_series(1, %(rows)s) AS i""",
            {"kiosk": kiosk_id, "rows": rows},
        )
        conn.execute(
            f"""INSERT INTO notifications (account, kind, payment_id, payload, created_at, pushed)
            SELECT {account}, 'payment.close', {hex_id}, '{{}}', {old}, 1
            FROM generate_series(1, %(rows)s) AS i""",
            {"rows": rows},
        )
        conn.execute(
            f"""INSERT INTO purchases (shop_id, purchase_id, account, kiosk_account, kiosk_id, amount,
                currency, status, provide_at, locked_until, tx, loyalty_type, reward, reward_point,
                created_at)
            SELECT %(shop)s, 'H-' || i, {account}, {account}, %(kiosk)s, '1000', 'krw', 1, {old}, 0,
                {hex_id}, 0, '10', '10', {old}
            FROM generate_series(1, %(rows)s) AS i""",
            {"shop": shop_id, "kiosk": kiosk_id, "rows": rows},
        )
        conn.execute(
            # Expired within the day: older ones are deleted (wallets.TEMPORARY_KEPT).
            f"""INSERT INTO temporary_accounts (address, account, expires_at, used_at)
            SELECT '0x' || substr(md5('t' || i::text), 1, 40), {account}, {recent}, {recent}
            FROM generate_series(1, %(rows)s) AS i""",
            {"rows": rows},
        )
        # Events of old blocks (the chain's own start at block 0 is indexed on top of them).
        conn.execute(
            f"""INSERT INTO chain_events (block_number, log_index, tx_hash, contract, event, payment_id,
                shop_id, account, args)
            SELECT 0, i, {hex_id}, 'LoyaltyPayment', 'PaymentClosed', {hex_id}, %(shop)s, {account}, '{{}}'
            FROM generate_series(1, %(rows)s) AS i""",
            {"shop": shop_id, "rows": rows},
        )
        conn.execute("ANALYZE")


def rows_read(plan: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(node type, relation, rows it read) for every scan node of an EXPLAIN ANALYZE plan."""
    if "Relation Name" in plan:
        loops = plan.get("Actual Loops", 1)
        read = plan.get("Actual Rows", 0) * loops
        read += plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
        yield plan["Node Type"], plan["Relation Name"], int(read)
    for child in plan.get("Plans", []):
        yield from rows_read(child)


def explain(url: str, statement: str, parameters: Any) -> dict[str, Any]:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        try:
            row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}", parameters).fetchone()
        finally:
            conn.rollback()  # EXPLAIN ANALYZE runs an UPDATE or DELETE: leave nothing changed
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return dict(plan[0]["Plan"])


@pytest.fixture(scope="module")
def in_process_relay(
    anvil: str,
    deployment: dict[str, Any],
    shop_id: str,
    new_database: Callable[[str], str],
    callbacks: CallbackReceiver,
    expo: FakeExpo,
) -> Iterator[tuple[str, str, Statements, KioskClient]]:
    """A relay served from this process on a database with a long history; yields its URL, its
    database URL, the statements recorded and a KIOSK client."""
    url, created = postgres_with_kiosk(new_database, callbacks, shop_id, "plans")
    fill_history(url, created.id, shop_id, HISTORY)
    recorded = Statements(url.rsplit("/", 1)[1])
    event.listen(Engine, "before_cursor_execute", recorded)
    try:
        with relay_in_this_process(url, anvil, deployment, expo, worker_interval=0.2) as relay_url:
            yield relay_url, url, recorded, KioskClient(relay_url, created.access_key)
    finally:
        event.remove(Engine, "before_cursor_execute", recorded)


@contextlib.contextmanager
def streaming(relay_url: str, wallet: AppClient, last_event_id: int) -> Iterator[None]:
    """The wallet's live notification stream, open for the duration (its events are left unread:
    the relay serves it all the same, and closing it from this thread ends it at once)."""
    headers = {"Last-Event-ID": str(last_event_id)} | wallet.auth_headers()
    with (
        httpx.Client(timeout=30) as http,
        http.stream("GET", f"{relay_url}/v1/payment/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        yield


def test_every_query_reads_only_its_own_rows_of_a_long_history(in_process_relay, shop_id):
    relay_url, db_url, recorded, kiosk = in_process_relay
    user = AppClient(relay_url, anvil_key(POINT_USER))
    owner = AppClient(relay_url, anvil_key(OWNER))
    stamp = int(time.time() * 1000)
    # The user's live notification stream is open throughout, resumed from an old event id.
    with streaming(relay_url, user, last_event_id=1):
        # 1.1 and 1.3: paid, cancelled by the KIOSK, the owner approves, the KIOSK closes the cancel.
        opened = kiosk.open_new(f"P-{stamp}-1", TEN_KRW, "krw", shop_id, user.address)
        user.item(opened.paymentId)
        user.approve(opened.paymentId)
        assert kiosk.close_new(opened.paymentId).paymentStatus == 4
        kiosk.open_cancel(opened.paymentId)
        owner.item(opened.paymentId)
        owner.approve(opened.paymentId)
        assert kiosk.close_cancel(opened.paymentId).paymentStatus == 8
        # 1.2: the user denies; 1.4: the owner denies a cancel.
        denied = kiosk.open_new(f"P-{stamp}-2", TEN_KRW, "krw", shop_id, user.address)
        user.deny(denied.paymentId)
        kept = kiosk.open_new(f"P-{stamp}-3", TEN_KRW, "krw", shop_id, user.address)
        user.approve(kept.paymentId)
        kiosk.close_new(kept.paymentId)
        kiosk.open_cancel(kept.paymentId)
        owner.deny(kept.paymentId)
        # Reads, a temporary account and a push token.
        kiosk.balance(user.address)
        kiosk.info(user.address, TEN_KRW, "krw")
        kiosk.shop_info(shop_id)
        kiosk.shop_withdrawal(shop_id)
        temporary = user.temporary_account()
        kiosk.balance(temporary.temporaryAccount)
        user.register_push_token("ExponentPushToken[plans]")
        kiosk.report_purchase(f"P-{stamp}-4", TEN_KRW, "krw", shop_id, user.address)
        # Let every worker poll a few times on what the flows left.
        time.sleep(2)

    statements = recorded.distinct()
    assert len(statements) >= 20, f"only {len(statements)} statements recorded"
    heavy = []
    for statement, parameters in statements.items():
        plan = explain(db_url, statement, parameters)
        for node, relation, read in rows_read(plan):
            if read > MOST_ROWS_READ:
                heavy.append(f"{node} on {relation} read {read} rows:\n  {' '.join(statement.split())[:400]}")
        # An index walked whole (its condition not on its first column) filters no row: only the
        # pages it read show it.
        pages = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
        if pages > MOST_PAGES:
            heavy.append(f"{pages} pages read by:\n  {' '.join(statement.split())[:400]}")
    assert not heavy, "queries that read the history:\n" + "\n".join(heavy)
