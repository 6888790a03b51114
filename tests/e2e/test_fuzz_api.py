"""Hostile input: Schemathesis generates requests for every operation of the relay's OpenAPI
document (valid and invalid, with real and random access keys, shops and accounts mixed in).
Every response must conform to the document, none may be a 5xx, and a 4xx must change nothing in
the database. The examples per operation are the Hypothesis profile's (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from eth_account import Account
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from bench.harness import UNIT, System
from relay import db as database
from relay.models import Callback, KioskClient, Notification, Payment, Purchase, PushToken, TemporaryAccount

# Requests the whole run must send at least (with the profiles' examples per operation).
MINIMUM, MINIMUM_QUICK = 1_000, 100
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)
STATS: Counter[str] = Counter()
REAL: dict[str, Any] = {}


@pytest.fixture(scope="module")
def relay_under_fuzz(bench: System, quick: bool, figure: Any) -> Iterator[dict[str, Any]]:
    # No timeouts or deliveries may change the database behind the fingerprint's back.
    url, db_url, process = bench.start_relay(backend="sqlite", payment_timeout=10**6, close_timeout=10**6)
    [user_key] = bench.fund_users(1, 1_000 * UNIT)
    REAL.update(accessKey=bench.add_kiosk(db_url), shopId=bench.shop_id, account=Account.from_key(user_key).address)
    db = database.Database(db_url)
    try:
        yield {"url": url, "db": db}
    finally:
        db.engine.dispose()
        process.terminate()
    sent = sum(STATS.values())
    figure("Schemathesis requests", f"{sent}: " + ", ".join(f"{k} {v}" for k, v in sorted(STATS.items())))
    minimum = MINIMUM_QUICK if quick else MINIMUM
    assert sent >= minimum, f"Schemathesis sent {sent} requests, fewer than {minimum}"


@pytest.fixture(scope="module")
def api_schema(relay_under_fuzz: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_url(f"{relay_under_fuzz['url']}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _half(generated: dict[str, Any]) -> bool:
    """True for about half of the generated values, the same each time a value is generated again
    (so that Hypothesis can replay and shrink a failing example)."""
    return zlib.crc32(json.dumps(generated, sort_keys=True, default=str).encode()) % 2 == 0


@schemathesis.hook
def map_body(ctx: Any, body: Any) -> Any:
    """Half the time, use the real access key, shop and account, so generated requests get past
    authentication and lookups and reach the deeper code paths."""
    if isinstance(body, dict) and REAL and _half(body):
        for key in ("accessKey", "shopId", "account"):
            if key in body:
                body[key] = REAL[key]
    return body


@schemathesis.hook
def map_query(ctx: Any, query: Any) -> Any:
    if isinstance(query, dict) and REAL and _half(query):
        for key in ("shopId", "account"):
            if key in query:
                query[key] = REAL[key]
    return query


def fingerprint(db: database.Database) -> tuple[Any, ...]:
    with db.session() as session:
        counts = tuple(
            session.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (Payment, Purchase, TemporaryAccount, PushToken, Notification, Callback, KioskClient)
        )
        latest = session.execute(select(func.max(Payment.updated_at))).scalar()
    return (*counts, latest)


@schema.parametrize()
@settings(derandomize=True)
def test_api__conforms_and_rejects_without_side_effects(case: Any, relay_under_fuzz: dict[str, Any]) -> None:
    if case.path == "/v1/payment/events":
        return  # an endless event stream; covered by tests/relay/test_app_endpoints.py
    db = relay_under_fuzz["db"]
    before = fingerprint(db)
    response = case.call(base_url=relay_under_fuzz["url"], timeout=30)
    STATS[f"{response.status_code // 100}xx"] += 1
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        assert fingerprint(db) == before, f"{case.method} {case.path} answered {response.status_code} but changed state"
