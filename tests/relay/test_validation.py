"""Bad input gets 400 with code 1000 and a message saying what is wrong, and changes nothing; the
OpenAPI document lists every endpoint of the spec. On the SQLite relay (validation happens before
any database access)."""

from __future__ import annotations

import secrets

import pytest
from eth_utils import to_checksum_address

from relay.models import PaymentStatus as S
from tests.relay.checks import (
    APP_PATHS,
    KIOSK_PATHS,
    call,
    count_payments,
    fails,
    item,
    ok,
    sqlite_only,
)
from tests.relay.conftest import UNIT, address

pytestmark = sqlite_only

USER = address(2)
TEN_KRW = str(10 * UNIT)


def _bad_checksum(checksummed: str) -> str:
    """The address with the case of its first letter flipped: still hex, wrong EIP-55 checksum."""
    i = next(i for i, c in enumerate(checksummed[2:], 2) if c.isalpha())
    return checksummed[:i] + checksummed[i].swapcase() + checksummed[i + 1 :]


BAD_ADDRESSES = {
    "short": USER[:-2],
    "long": USER + "00",
    "non-hex": "0x" + "zz" * 20,
    "no-prefix": USER[2:],
    "bad-checksum": _bad_checksum(USER),
    "empty": "",
}
BAD_AMOUNTS = {
    "negative": "-1",
    "fractional": "1.5",
    "non-numeric": "ten",
    "exponent": "1e18",
    "zero": "0",
    "2**256": str(2**256),
    "huge": "9" * 100,
    "spaces": " 10",
    "inner-space": "1 0",
    "hex": "0x10",
    "empty": "",
    "json-number": 10,
    "final-newline": "10\n",
}
BAD_PURCHASE_IDS = {
    "65-chars": "P" * 65,
    "nul": "P\x00",
    "newline": "P\n1",
    "tab": "P\t1",
    "delete": "P\x7f",
    "non-ascii": "P\u00e9",
    "empty": "",
    "final-newline": "P1\n",
}
BAD_HEX32 = {
    "short": "0x" + "ab" * 31,
    "long": "0x" + "ab" * 33,
    "final-newline": "0x" + "ab" * 32 + "\n",
    "non-hex": "0x" + "zz" * 32,
    "no-prefix": "ab" * 32,
    "empty": "",
}
BAD_CURRENCIES = {
    "punctuation": "krw!",
    "space": "k rw",
    "empty": "",
    "leading-digit": "1krw",
    "too-long": "k" * 17,
    "non-ascii": "\uc6d0",
}


@pytest.fixture
def open_body(kiosk, shop_id):
    def body(**changes):
        return {
            "accessKey": kiosk.access_key,
            "purchaseId": f"P-{secrets.token_hex(6)}",
            "amount": TEN_KRW,
            "currency": "krw",
            "shopId": shop_id,
            "account": USER,
        } | changes

    return body


def _rejected(relay, method, path, field, **kwargs):
    """Asserts a 400 / 1000 answer that names `field` and writes no payment."""
    before = count_payments(relay)
    message = fails(call(relay.url, method, path, **kwargs), 400, 1000)
    assert field in message, message
    assert count_payments(relay) == before
    return message


# ----------------------------------------------------------------------------- openNew


def test_open_new__valid_body_is_accepted(relay, open_body):
    """The baseline the cases below change one field of."""
    assert ok(call(relay.url, "POST", "/v1/payment/openNew", json=open_body()))["paymentStatus"] == S.NEW


@pytest.mark.parametrize("value", BAD_ADDRESSES.values(), ids=BAD_ADDRESSES.keys())
def test_open_new__malformed_account__400_1000(relay, open_body, value):
    _rejected(relay, "POST", "/v1/payment/openNew", "account", json=open_body(account=value))


@pytest.mark.parametrize("value", BAD_AMOUNTS.values(), ids=BAD_AMOUNTS.keys())
def test_open_new__malformed_amount__400_1000(relay, open_body, value):
    _rejected(relay, "POST", "/v1/payment/openNew", "amount", json=open_body(amount=value))


@pytest.mark.parametrize("value", BAD_PURCHASE_IDS.values(), ids=BAD_PURCHASE_IDS.keys())
def test_open_new__malformed_purchase_id__400_1000(relay, open_body, value):
    _rejected(relay, "POST", "/v1/payment/openNew", "purchaseId", json=open_body(purchaseId=value))


@pytest.mark.parametrize("value", BAD_HEX32.values(), ids=BAD_HEX32.keys())
def test_open_new__malformed_shop_id__400_1000(relay, open_body, value):
    _rejected(relay, "POST", "/v1/payment/openNew", "shopId", json=open_body(shopId=value))


@pytest.mark.parametrize("value", BAD_CURRENCIES.values(), ids=BAD_CURRENCIES.keys())
def test_open_new__malformed_currency__400_1000(relay, open_body, value):
    _rejected(relay, "POST", "/v1/payment/openNew", "currency", json=open_body(currency=value))


@pytest.mark.parametrize("field", ["purchaseId", "amount", "currency", "shopId", "account"])
def test_open_new__missing_field__400_1000(relay, open_body, field):
    body = open_body()
    del body[field]
    _rejected(relay, "POST", "/v1/payment/openNew", field, json=body)


def test_open_new__unknown_extra_field__400_1000(relay, open_body):
    _rejected(relay, "POST", "/v1/payment/openNew", "memo", json=open_body(memo="hello"))


def test_open_new__not_json__400_1000(relay, kiosk):
    before = count_payments(relay)
    headers = {"content-type": "application/json"}
    fails(call(relay.url, "POST", "/v1/payment/openNew", content=b"{not json", headers=headers), 400, 1000)
    fails(call(relay.url, "POST", "/v1/payment/openNew", json=["a", "list"]), 400, 1000)
    assert count_payments(relay) == before


def test_open_new__body_over_64_kib__413_and_nothing_written(relay, open_body):
    before = count_payments(relay)
    padded = open_body() | {"pad": "x" * 70_000}
    assert "65536 bytes" in fails(call(relay.url, "POST", "/v1/payment/openNew", json=padded), 413, 1000)

    def chunks():  # no Content-Length: the body is counted as it arrives
        yield b'{"pad": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}'

    headers = {"content-type": "application/json"}
    fails(call(relay.url, "POST", "/v1/payment/openNew", content=chunks(), headers=headers), 413, 1000)
    assert count_payments(relay) == before


def test_open_new__boundaries_are_accepted(relay, open_body):
    """What the rules allow: a 64-character printable purchase id, a lower-case or upper-case
    address, an upper-case currency (the relay lower-cases it)."""
    long_id = "P-" + "x" * 60 + "~!"
    data = ok(call(relay.url, "POST", "/v1/payment/openNew", json=open_body(purchaseId=long_id, currency="KRW")))
    assert (data["purchaseId"], data["currency"]) == (long_id, "krw")
    for account in (USER.lower(), "0x" + USER[2:].upper()):
        data = ok(call(relay.url, "POST", "/v1/payment/openNew", json=open_body(account=account)))
        assert data["account"] == to_checksum_address(USER)


@pytest.mark.parametrize(
    ("field", "value", "explanation"),
    [
        ("account", _bad_checksum(USER), "EIP-55 checksum"),
        ("amount", "0", "greater than zero"),
        ("amount", str(2**256), "less than 2**256"),
        ("amount", "1.5", "decimal integer string"),
        ("purchaseId", "P\x00", "printable"),
        ("purchaseId", "P" * 65, "at most 64"),
        ("memo", "hello", "not permitted"),
    ],
)
def test_open_new__the_message_says_what_is_wrong(relay, open_body, field, value, explanation):
    message = _rejected(relay, "POST", "/v1/payment/openNew", field, json=open_body(**{field: value}))
    assert explanation in message


# ----------------------------------------------------------------------------- other endpoints


@pytest.mark.parametrize("value", BAD_ADDRESSES.values(), ids=BAD_ADDRESSES.keys())
def test_balance_and_info__malformed_account__400_1000(relay, value):
    _rejected(relay, "GET", "/v1/payment/user/balance", "account", params={"account": value})
    params = {"account": value, "amount": TEN_KRW, "currency": "krw"}
    _rejected(relay, "GET", "/v1/payment/info", "account", params=params)


@pytest.mark.parametrize("value", [v for v in BAD_AMOUNTS.values() if isinstance(v, str)])
def test_info__malformed_amount__400_1000(relay, value):
    params = {"account": USER, "amount": value, "currency": "krw"}
    _rejected(relay, "GET", "/v1/payment/info", "amount", params=params)


def test_info__malformed_currency_and_unknown_query_parameter__400_1000(relay):
    _rejected(relay, "GET", "/v1/payment/info", "currency", params={"account": USER, "amount": "1", "currency": "kr w"})
    _rejected(relay, "GET", "/v1/payment/user/balance", "extra", params={"account": USER, "extra": "1"})
    _rejected(relay, "GET", "/v1/payment/info", "amount", params={"account": USER, "currency": "krw"})


@pytest.mark.parametrize("value", BAD_HEX32.values(), ids=BAD_HEX32.keys())
def test_malformed_payment_or_shop_id__400_1000(relay, kiosk, value):
    for endpoint in ("closeNew", "openCancel", "closeCancel"):
        body = {"accessKey": kiosk.access_key, "paymentId": value}
        _rejected(relay, "POST", f"/v1/payment/{endpoint}", "paymentId", json=body)
    _rejected(relay, "GET", "/v1/payment/item", "paymentId", params={"paymentId": value})
    for path in ("create/confirm", "create/deny", "cancel/confirm", "cancel/deny"):
        body = {"paymentId": value, "signature": "0x" + "11" * 65}
        _rejected(relay, "POST", f"/v1/payment/{path}", "paymentId", json=body)
    for path in ("shop/info", "shop/withdrawal"):
        _rejected(relay, "GET", f"/v1/payment/{path}", "shopId", params={"shopId": value})


def test_close_new__confirm_not_a_boolean__400_1000_and_the_payment_is_untouched(relay, kiosk, open_body):
    payment = ok(call(relay.url, "POST", "/v1/payment/openNew", json=open_body()))
    body = {"accessKey": kiosk.access_key, "paymentId": payment["paymentId"], "confirm": "maybe"}
    _rejected(relay, "POST", "/v1/payment/closeNew", "confirm", json=body)
    assert item(relay.url, payment["paymentId"])["paymentStatus"] == S.NEW


def test_temporary_account__malformed_body__400_1000(relay):
    signature = "0x" + "11" * 65
    cases = {
        "account": {"account": "0x1234", "deadline": 1, "signature": signature},
        "deadline": {"account": USER, "deadline": -1, "signature": signature},
        "signature": {"account": USER, "deadline": 1, "signature": "0x12"},
    }
    for field, body in cases.items():
        _rejected(relay, "POST", "/v1/payment/account/temporary", field, json=body)


# ----------------------------------------------------------------------------- API document


@pytest.mark.parametrize(
    "name",
    ["", "   ", "Shop\x00", "Shop\nName", "Shop\t", "S" * 101],
    ids=["empty", "blank", "nul", "newline", "tab", "101-chars"],
)
def test_shop_name__blank_control_characters_or_too_long__400_1000(relay, name):
    """The name is stored on chain for good: typed data for it is not even handed out."""
    fields = {"action": "AddShop", "shopId": "0x" + "ab" * 32, "account": USER, "name": name}
    message = fails(
        call(
            relay.url,
            "GET",
            "/v1/payment/shop/typedData",
            params=fields | {"provideWaitTime": 0, "providePercent": 100},
        ),
        400,
        1000,
    )
    assert "name" in message, message


def test_openapi__lists_every_endpoint_of_the_spec(relay):
    response = call(relay.url, "GET", "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    paths = document["paths"]

    for path in KIOSK_PATHS + APP_PATHS:
        assert path in paths, path
    methods = {path: set(paths[path]) for path in KIOSK_PATHS + APP_PATHS}
    assert {p for p, m in methods.items() if m == {"get"}} == {
        "/v1/payment/user/balance",
        "/v1/payment/info",
        "/v1/payment/shop/info",
        "/v1/payment/shop/withdrawal",
        "/v1/payment/item",
    }
    assert all(m in ({"get"}, {"post"}) for m in methods.values())
    # The error-code table is in the description.
    for code in (1000, 1001, 1002, 2001, 2002, 2003, 2004, 3001, 3002, 3003, 3004, 3005, 4001, 4002):
        assert f"| {code} |" in document["info"]["description"]


def test_docs__serves_html(relay):
    response = call(relay.url, "GET", "/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in response.text
