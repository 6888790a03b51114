"""The Python SDK (sdk/, `loyalty_sdk`): a distribution of its own that a KIOSK installs without the
server's dependencies, and that agrees with the relay on error codes, typed data and answers. The
endpoint tests drive the relay through it; here is what is the SDK's own."""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import sys
import time
import tomllib
from importlib import metadata
from typing import Any

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import BaseModel

import loyalty_sdk
from loyalty_sdk import client, models
from loyalty_sdk import typed_data as sdk_typed_data
from relay import errors as relay_errors
from relay import typed_data as relay_typed_data
from relay.devnet import anvil_key
from tests.relay.conftest import ROOT, UNIT

SERVER_ONLY = {"sqlalchemy", "fastapi", "web3", "psycopg", "alembic", "uvicorn", "starlette", "relay"}
ALLOWED = {"httpx", "eth-account", "pydantic"}

# ----------------------------------------------------------------------------- a light distribution


def test_distribution__depends_on_httpx_eth_account_and_pydantic_only():
    project = tomllib.loads((ROOT / "sdk" / "pyproject.toml").read_text())["project"]
    assert {canonicalize_name(Requirement(r).name) for r in project["dependencies"]} <= ALLOWED


def test_distribution__installed_closure_holds_no_server_package():
    closure: set[str] = set()
    todo = ["loyalty-payment-sdk"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    assert {"httpx", "eth-account", "pydantic"} <= closure
    assert not closure & {canonicalize_name(n) for n in SERVER_ONLY | {"psycopg-binary"}}


def test_import__loads_no_server_module():
    probe = "import sys, loyalty_sdk; print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    # From a neutral directory, so that the repository's own packages are not on the path.
    loaded = subprocess.run([sys.executable, "-c", probe], cwd="/", capture_output=True, text=True, check=True)
    assert not set(loaded.stdout.split()) & SERVER_ONLY


# ----------------------------------------------------------------------------- agrees with the relay


def _table(classes: list[type[Any]], base: type[Any]) -> dict[int, tuple[str, int | None]]:
    """code -> (class name, the code of the class it specialises); the base class named "base"."""
    return {cls.code: ("base", None) if cls is base else (cls.__name__, cls.__mro__[1].code) for cls in classes}


def test_error_classes__the_relay_code_table():
    assert _table(loyalty_sdk.ERRORS, loyalty_sdk.LoyaltyError) == _table(relay_errors.ERRORS, relay_errors.RelayError)


def test_typed_data__the_relay_types_of_what_the_app_signs_itself():
    for name, fields in sdk_typed_data.TYPES.items():
        assert [(f["name"], f["type"]) for f in fields] == relay_typed_data.TYPES[name], name
    assert sdk_typed_data.DOMAIN_FIELDS == relay_typed_data.DOMAIN_FIELDS
    domain = relay_typed_data.domain(relay_typed_data.PAYMENT_DOMAIN, 31337, "0x" + "ab" * 20)
    message = {"account": "0x" + "cd" * 20, "token": "ExponentPushToken[x]", "deadline": 2**40}
    for name, fields in sdk_typed_data.TYPES.items():
        own = {f["name"]: message[f["name"]] for f in fields}
        assert sdk_typed_data.build(name, domain, own) == relay_typed_data.build(name, domain, own)


# Each SDK answer model and the endpoints that answer it.
ANSWERS: dict[type[BaseModel], list[tuple[str, str]]] = {
    models.Balance: [("get", "/v1/payment/user/balance")],
    models.PaymentInfo: [("get", "/v1/payment/info")],
    models.OpenNewResult: [("post", "/v1/payment/openNew")],
    models.CloseNewResult: [("post", "/v1/payment/closeNew")],
    models.OpenCancelResult: [("post", "/v1/payment/openCancel")],
    models.CloseCancelResult: [("post", "/v1/payment/closeCancel")],
    models.Item: [("get", "/v1/payment/item")],
    models.TxResult: [("post", "/v1/payment/create/confirm"), ("post", "/v1/payment/cancel/confirm")],
    models.Payment: [("post", "/v1/payment/create/deny"), ("post", "/v1/payment/cancel/deny")],
    models.ShopInfo: [("get", "/v1/payment/shop/info")],
    models.ShopWithdrawal: [("get", "/v1/payment/shop/withdrawal")],
    models.ShopTx: [
        ("post", "/v1/payment/shop/add"),
        ("post", "/v1/payment/shop/update"),
        ("post", "/v1/payment/shop/withdrawal/open"),
        ("post", "/v1/payment/shop/withdrawal/close"),
    ],
    models.Purchase: [("post", "/v1/payment/purchase"), ("get", "/v1/payment/purchase")],
    models.TemporaryAccount: [("post", "/v1/payment/account/temporary")],
    models.PushToken: [("post", "/v1/payment/push/token")],
    models.AppSession: [("post", "/v1/payment/account/session")],
    models.SessionEnded: [("delete", "/v1/payment/account/session")],
    models.ChainInfo: [("get", "/v1/payment/chain")],
}
# Answers the SDK keeps as JSON: a typed-data document, signed as served.
DOCUMENTS = {("get", "/v1/payment/shop/typedData")}


@pytest.fixture(scope="module")
def openapi(relays) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{relays('sqlite').url}/openapi.json").json()
    return document


def _fields(document: dict[str, Any], method: str, path: str) -> set[str]:
    """The property names of the `data` the relay documents for a successful answer."""

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            target: Any = document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            schema = target
        return schema

    answer = document["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    return set(resolve(resolve(answer)["properties"]["data"])["properties"])


@pytest.mark.parametrize("model", list(ANSWERS), ids=lambda model: model.__name__)
def test_answer_models__the_fields_the_relay_documents(openapi, model):
    for method, path in ANSWERS[model]:
        assert set(model.model_fields) == _fields(openapi, method, path), f"{method.upper()} {path}"


def test_answer_models__every_documented_json_answer_has_one(openapi):
    covered = {endpoint for endpoints in ANSWERS.values() for endpoint in endpoints}
    answered = {
        (method, path)
        for path, operations in openapi["paths"].items()
        for method, operation in operations.items()
        if path.startswith("/v1/") and "application/json" in operation["responses"].get("200", {}).get("content", {})
    }
    assert answered - covered == DOCUMENTS


# ----------------------------------------------------------------------------- against a real relay


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_refusals__raise_the_class_of_the_relay_code(relay, kiosk, shop_id, new_wallet, purchase_id):
    poor = new_wallet(relay, 1 * UNIT)
    with pytest.raises(loyalty_sdk.InsufficientBalance) as refused:
        kiosk.client.open_new(purchase_id, 10 * UNIT, "krw", shop_id, poor.address)
    assert (refused.value.code, refused.value.status) == (3004, 422)
    with pytest.raises(loyalty_sdk.InvalidAccessKey) as refused:
        loyalty_sdk.KioskClient(relay.url, "not-a-key").open_new(purchase_id, 1, "krw", shop_id, poor.address)
    assert refused.value.status == 401
    with pytest.raises(loyalty_sdk.PaymentNotFound):
        poor.item("0x" + secrets.token_hex(32))
    with pytest.raises(loyalty_sdk.UnknownCurrency):
        kiosk.client.info(poor.address, 1, "xyz")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_notifications__the_wallet_s_events_after_an_id(relay, kiosk, shop_id, new_wallet, purchase_id):
    wallet = new_wallet(relay, 100 * UNIT)
    opened = kiosk.client.open_new(purchase_id, 10 * UNIT, "krw", shop_id, wallet.address)

    stream = wallet.notifications(after=0)
    try:
        first = next(stream)
    finally:
        stream.close()

    assert first.event == "payment.new" and first.id > 0
    assert (first.data["paymentId"], first.data["account"]) == (opened.paymentId, wallet.address)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_item__through_a_temporary_address__the_wallet_s_own_view_with_a_session(
    relay, kiosk, shop_id, new_wallet, purchase_id
):
    wallet = new_wallet(relay, 100 * UNIT)
    temporary = wallet.temporary_account().temporaryAccount
    opened = kiosk.client.open_new(purchase_id, 10 * UNIT, "krw", shop_id, temporary)

    seen_by_kiosk = kiosk.client.item(opened.paymentId)
    own = wallet.item(opened.paymentId)  # opens the wallet's session

    assert (seen_by_kiosk.account, seen_by_kiosk.typedData) == (temporary, None)
    assert own.account == wallet.address and own.typedData is not None
    wallet.end_session()  # the next read opens another
    assert wallet.deny(opened.paymentId).paymentStatus == 3


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_cancel_through_a_temporary_address__the_owner_s_client_decides_it(
    relay, kiosk, owner, shop_id, new_wallet, purchase_id
):
    wallet = new_wallet(relay, 100 * UNIT)
    opened = kiosk.client.open_new(purchase_id, 10 * UNIT, "krw", shop_id, wallet.temporary_account().temporaryAccount)
    wallet.approve(opened.paymentId)
    kiosk.client.close_new(opened.paymentId)
    kiosk.client.open_cancel(opened.paymentId)

    approved = owner.approve(opened.paymentId)  # reads the cancel's documents with the owner's session

    assert approved.paymentStatus == 6 and approved.account == opened.account
    assert kiosk.client.close_cancel(opened.paymentId).paymentStatus == 8


def _fake_relay(sent: list[dict[str, Any]]) -> httpx.MockTransport:
    """A relay that answers the wallet's own signed requests, recording their bodies."""
    domain = relay_typed_data.domain(relay_typed_data.PAYMENT_DOMAIN, 31337, "0x" + "ab" * 20)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/payment/chain":
            data: dict[str, Any] = {"chainId": 31337, "contracts": {}, "domains": {"payment": domain}}
        else:
            body = json.loads(request.content)
            sent.append(body)
            data = {"account": body["account"], "temporaryAccount": "0x" + "cd" * 20, "token": "as_x"}
            data |= {"expiresAt": int(time.time()) + 60}
        return httpx.Response(200, json={"code": 0, "data": data})

    return httpx.MockTransport(answer)


def test_app_client__signs_each_message_once_with_a_deadline_under_5_minutes():
    sent: list[dict[str, Any]] = []
    http = httpx.Client(base_url="https://relay.example", transport=_fake_relay(sent))
    wallet = loyalty_sdk.AppClient("https://relay.example", anvil_key(2), http=http)
    signed_at = time.time()

    for _ in range(3):
        wallet.temporary_account()
    wallet.register_push_token("ExponentPushToken[x]")
    wallet.session()

    deadlines = [body["deadline"] for body in sent]
    assert len(deadlines) == 5 and len(set(deadlines)) == 5  # one second holds several: each its own
    assert all(signed_at < deadline <= signed_at + 300 for deadline in deadlines)


def test_answer_not_from_the_relay__an_error_with_its_status():
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    http = httpx.Client(base_url="https://relay.example", transport=httpx.MockTransport(proxy))
    with pytest.raises(loyalty_sdk.LoyaltyError) as failed:
        loyalty_sdk.KioskClient("https://relay.example", "key", http=http).balance("0x" + "11" * 20)
    assert type(failed.value) is loyalty_sdk.LoyaltyError
    assert (failed.value.status, failed.value.code) == (502, 5000) and "Bad Gateway" in failed.value.message


def test_code_unknown_to_the_sdk__kept_on_a_plain_error():
    def newer_relay(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"code": 3999, "error": {"message": "Something new."}})

    http = httpx.Client(base_url="https://relay.example", transport=httpx.MockTransport(newer_relay))
    with pytest.raises(loyalty_sdk.LoyaltyError, match="Something new") as failed:
        loyalty_sdk.KioskClient("https://relay.example", "key", http=http).balance("0x" + "11" * 20)
    assert (type(failed.value), failed.value.code, failed.value.status) == (loyalty_sdk.LoyaltyError, 3999, 409)


def test_clients__share_one_verifying_tls_context(monkeypatch):
    made = []
    real = httpx.create_ssl_context

    def create_ssl_context(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(httpx, "create_ssl_context", create_ssl_context)
    client._tls.cache_clear()
    try:
        clients = [
            loyalty_sdk.KioskClient("https://relay.example", "key"),
            loyalty_sdk.AppClient("https://relay.example", anvil_key(2)),
            loyalty_sdk.AppClient("https://relay.example", anvil_key(3)),
        ]
        assert len(made) == 1
        [context] = made
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        for each in clients:
            each.close()
    finally:
        client._tls.cache_clear()
