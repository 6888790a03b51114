"""What the spec says the relay answers, and helpers to call it over plain HTTP and check the answers.

The field lists are the result tables of spec §3-§5 (`spec/loyalty-payment.ko.md`), transcribed:
the relay's JSON keys must be exactly these names, so they are compared as sets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web3 import Web3
from web3.contract import Contract

from relay.chain import ABI_DIR
from relay.models import Payment

# Tests that do not depend on the database run against the SQLite relay only.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

# ----------------------------------------------------------------------------- spec result tables

AMOUNTS = {
    "paidPoint",
    "paidToken",
    "paidValue",
    "feePoint",
    "feeToken",
    "feeValue",
    "totalPoint",
    "totalToken",
    "totalValue",
}
PAYMENT = {"paymentId", "purchaseId", "amount", "currency", "shopId", "account", "loyaltyType", *AMOUNTS}

SPEC = {
    "3.1 user/balance": {"account", "loyaltyType", "balance"},
    "3.2 info": {"account", "loyaltyType", "amount", "currency", "balance", *AMOUNTS},
    "3.3 openNew": PAYMENT | {"paymentStatus", "openNewTimestamp"},
    "3.4 closeNew": PAYMENT | {"paymentStatus", "openNewTimestamp", "closeNewTimestamp"},
    "3.5 openCancel": PAYMENT | {"paymentStatus", "openNewTimestamp", "closeNewTimestamp", "openCancelTimestamp"},
    "3.6 closeCancel": PAYMENT
    | {"paymentStatus", "openNewTimestamp", "closeNewTimestamp", "openCancelTimestamp", "closeCancelTimestamp"},
    "3.7 shop/info": {
        "shopId",
        "name",
        "provideWaitTime",
        "providePercent",
        "account",
        "providedPoint",
        "usedPoint",
        "settledPoint",
        "withdrawnPoint",
    },
    "3.8 shop/withdrawal": {"shopId", "withdrawAmount", "withdrawStatus"},
    "4.1 callback": {"type", "code", "message", "data"},
    "4.1 callback data": PAYMENT,  # plus the optional `balance`
    "5.1 item": PAYMENT | {"paymentStatus", "createTimestamp", "cancelTimestamp"},
    "5.2 create/confirm": PAYMENT | {"paymentStatus", "txHash"},
    "5.3 create/deny": PAYMENT | {"paymentStatus"},
    "5.4 cancel/confirm": PAYMENT | {"paymentStatus", "txHash"},
    "5.5 cancel/deny": PAYMENT | {"paymentStatus"},
}
# What the relay adds to 5.1 (DESIGN.md §4): the EIP-712 documents of a pending decision.
ITEM_EXTRA = {"typedData"}

# Fields that are amounts: decimal integer strings, 18 decimals, no decimal point.
AMOUNT_FIELDS = AMOUNTS | {
    "amount",
    "balance",
    "providedPoint",
    "usedPoint",
    "settledPoint",
    "withdrawnPoint",
    "withdrawAmount",
}

KIOSK_PATHS = [
    "/v1/payment/user/balance",
    "/v1/payment/info",
    "/v1/payment/openNew",
    "/v1/payment/closeNew",
    "/v1/payment/openCancel",
    "/v1/payment/closeCancel",
    "/v1/payment/shop/info",
    "/v1/payment/shop/withdrawal",
]
APP_PATHS = [
    "/v1/payment/item",
    "/v1/payment/create/confirm",
    "/v1/payment/create/deny",
    "/v1/payment/cancel/confirm",
    "/v1/payment/cancel/deny",
]

_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")
_HEX32 = re.compile(r"^0x[0-9a-f]{64}$")


def assert_amounts_are_decimal_strings(data: dict[str, Any]) -> None:
    for name in AMOUNT_FIELDS & data.keys():
        value = data[name]
        assert isinstance(value, str) and _DECIMAL.match(value), f"{name} = {value!r} is not a decimal string"


def assert_spec_fields(data: dict[str, Any], section: str, extra: set[str] | frozenset[str] = frozenset()) -> None:
    assert set(data) == SPEC[section] | extra, f"{section}: {sorted(set(data) ^ (SPEC[section] | extra))}"
    assert_amounts_are_decimal_strings(data)


def is_bytes32(value: str) -> bool:
    return bool(_HEX32.match(value))


# ----------------------------------------------------------------------------- HTTP


def call(base_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, base_url + path, timeout=60, **kwargs)


def ok(response: httpx.Response) -> dict[str, Any]:
    """The `data` of a successful answer."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"code", "data"} and body["code"] == 0, body
    return dict(body["data"])


def fails(response: httpx.Response, status: int, code: int) -> str:
    """Checks an error answer (HTTP status, error code, a message); returns the message."""
    assert (response.status_code, response.json().get("code")) == (status, code), response.text
    body = response.json()
    assert set(body) == {"code", "error"}, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message.strip(), body
    return str(message)


def open_new(
    base_url: str,
    access_key: str | None,
    purchase_id: str,
    amount: int | str,
    shop_id: str,
    account: str,
    currency: str = "krw",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {
        "purchaseId": purchase_id,
        "amount": str(amount),
        "currency": currency,
        "shopId": shop_id,
        "account": account,
    }
    if access_key is not None:
        body["accessKey"] = access_key
    return call(base_url, "POST", "/v1/payment/openNew", json=body, headers=headers)


def kiosk_post(base_url: str, endpoint: str, access_key: str | None, payment_id: str, **extra: Any) -> httpx.Response:
    """POST closeNew / openCancel / closeCancel."""
    body: dict[str, Any] = {"paymentId": payment_id, **extra}
    if access_key is not None:
        body["accessKey"] = access_key
    return call(base_url, "POST", f"/v1/payment/{endpoint}", json=body)


def item(base_url: str, payment_id: str) -> dict[str, Any]:
    return ok(call(base_url, "GET", "/v1/payment/item", params={"paymentId": payment_id}))


def decide(base_url: str, path: str, payment_id: str, signature: str) -> httpx.Response:
    """POST create/confirm, create/deny, cancel/confirm or cancel/deny."""
    return call(base_url, "POST", f"/v1/payment/{path}", json={"paymentId": payment_id, "signature": signature})


def balance_of(base_url: str, account: str) -> int:
    return int(ok(call(base_url, "GET", "/v1/payment/user/balance", params={"account": account}))["balance"])


# ----------------------------------------------------------------------------- database and chain


@contextmanager
def session_of(relay: Any) -> Iterator[Session]:
    """A session on the relay's own database (its engine is disposed afterwards)."""
    db = relay.db()
    try:
        with db.session() as session:
            yield session
    finally:
        db.engine.dispose()


def count_rows(relay: Any, model: Any, *where: Any) -> int:
    with session_of(relay) as session:
        return int(session.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def count_payments(relay: Any) -> int:
    return count_rows(relay, Payment)


def contract(anvil: str, deployment: dict[str, Any], name: str) -> Contract:
    """A deployed contract, read straight from the node (not through the relay)."""
    w3 = Web3(Web3.HTTPProvider(anvil))
    abi = json.loads((ABI_DIR / f"{name}.json").read_text())
    return w3.eth.contract(address=deployment["contracts"][name], abi=abi)


def _named(contract_: Contract, function: str, *args: Any) -> dict[str, Any]:
    """A view returning one struct, as a dict keyed by the struct's field names from the ABI."""
    [output] = next(f for f in contract_.abi if f.get("name") == function)["outputs"]
    values = getattr(contract_.functions, function)(*args).call()
    return dict(zip([c["name"] for c in output["components"]], values, strict=True))


def shop_on_chain(anvil: str, deployment: dict[str, Any], shop_id: str) -> dict[str, Any]:
    """ShopRegistry.shopOf(shopId): name, account, usedPoint, withdrawOpen, ..."""
    return _named(contract(anvil, deployment, "ShopRegistry"), "shopOf", shop_id)


def payment_on_chain(anvil: str, deployment: dict[str, Any], payment_id: str) -> dict[str, Any]:
    """LoyaltyPayment.paymentOf(paymentId): status (relay.chain.NONE, OPEN, ...), paid, fee, ..."""
    return _named(contract(anvil, deployment, "LoyaltyPayment"), "paymentOf", payment_id)
