"""relay.chain.abi encodes contract calls exactly as web3.py does, for every kind of argument the relay
passes (hex strings and bytes for bytes32, addresses, strings, a struct, booleans), and decodes
results and event logs the same way. No chain needed: both sides only encode and decode."""

from __future__ import annotations

import json
import secrets

import pytest
from eth_abi.abi import encode
from hexbytes import HexBytes
from web3 import Web3

from relay.chain.abi import ABI_DIR, Contract

ADDRESS = "0x" + "11" * 20
ACCOUNT = Web3.to_checksum_address("0x" + "ab" * 20)


def _pair(name: str) -> tuple[Contract, object]:
    abi = json.loads((ABI_DIR / f"{name}.json").read_text())
    return Contract(ADDRESS, abi), Web3().eth.contract(address=Web3.to_checksum_address(ADDRESS), abi=abi)


def _hex32() -> str:
    return "0x" + secrets.token_hex(32)


CASES = [
    ("LoyaltyPayment", "closeNewPayment", lambda: (_hex32(), True)),
    ("LoyaltyPayment", "closeCancelPayment", lambda: (bytes.fromhex(secrets.token_hex(32)), False)),
    ("LoyaltyPayment", "estimate", lambda: (ACCOUNT, 10 * 10**18, "krw")),
    ("LoyaltyPayment", "openCancelPayment", lambda: (_hex32(), "P-1", 1_900_000_000, "0x" + "ee" * 65)),
    (
        "LoyaltyPayment",
        "openNewPayment",
        lambda: ((_hex32(), "B-7", 10**18, "krw", _hex32(), ACCOUNT, 1, 105 * 10**16, 1_900_000_000), "0x" + "cd" * 65),
    ),
    ("ShopRegistry", "addShop", lambda: (_hex32(), "Shop ✓", 0, 100, ACCOUNT, 1_900_000_000, b"\x01" * 65)),
    ("ShopRegistry", "shopOf", lambda: (_hex32(),)),
    ("Ledger", "provide", lambda: (ACCOUNT, _hex32(), "P-9", 12345, "usd")),
]


@pytest.mark.parametrize(("contract", "function", "args"), CASES, ids=[f"{c}.{f}" for c, f, _ in CASES])
def test_encode__same_calldata_as_web3(contract, function, args):
    fast, reference = _pair(contract)
    values = args()
    expected = reference.functions[function](*values)._encode_transaction_data()
    call = fast.call(function, *values)
    assert call.data == expected
    assert call.to == reference.address


def test_encode__wrong_argument_count__raises():
    fast, _ = _pair("LoyaltyPayment")
    with pytest.raises(ValueError):
        fast.call("closeNewPayment", _hex32())


def test_encode__unknown_function__raises():
    fast, _ = _pair("LoyaltyPayment")
    with pytest.raises(AttributeError):
        fast.call("mint", ACCOUNT, 1)


def test_call__decodes_single_and_multiple_outputs():
    ledger, _ = _pair("Ledger")
    assert tuple(ledger.call("accountOf", ACCOUNT).decode("0x" + encode(["uint8", "uint256"], [1, 42]).hex())) == (
        1,
        42,
    )
    payment, _ = _pair("LoyaltyPayment")
    assert payment.call("nonces", ACCOUNT).decode("0x" + encode(["uint256"], [7]).hex()) == 7


def _value(kind: str):
    if kind == "address":
        return Web3.to_checksum_address("0x" + secrets.token_hex(20))
    if kind == "bytes32":
        return secrets.token_bytes(32)
    if kind == "string":
        return "상점 " + secrets.token_hex(3)
    if kind == "bool":
        return secrets.randbelow(2) == 1
    bits = int(kind.removeprefix("uint") or 256)
    return secrets.randbelow(2**bits)


def _log(address: str, abi: dict, values: dict, hexed: bool) -> dict:
    """A log of the event as a node returns it: formatted by web3.py (HexBytes) or raw (hex)."""
    indexed = [i for i in abi["inputs"] if i["indexed"]]
    data_inputs = [i for i in abi["inputs"] if not i["indexed"]]
    topics = [bytes(Web3.keccak(text=f"{abi['name']}({','.join(i['type'] for i in abi['inputs'])})"))]
    topics += [encode([i["type"]], [values[i["name"]]]) for i in indexed]
    data = encode([i["type"] for i in data_inputs], [values[i["name"]] for i in data_inputs])
    convert = (lambda b: "0x" + b.hex()) if hexed else HexBytes
    return {
        "address": address,
        "topics": [convert(t) for t in topics],
        "data": convert(data),
        "logIndex": 0,
        "transactionIndex": 0,
        "transactionHash": HexBytes(b"\x01" * 32),
        "blockHash": HexBytes(b"\x02" * 32),
        "blockNumber": 1,
    }


EVENTS = [
    (name, entry)
    for name in ("LoyaltyPayment", "Ledger", "ShopRegistry", "CurrencyRate", "LoyaltyToken")
    for entry in json.loads((ABI_DIR / f"{name}.json").read_text())
    if entry["type"] == "event"
]


@pytest.mark.parametrize(("contract", "abi"), EVENTS, ids=[f"{c}.{e['name']}" for c, e in EVENTS])
def test_event_decode__same_arguments_as_web3(contract, abi):
    fast, reference = _pair(contract)
    values = {i["name"]: _value(i["type"]) for i in abi["inputs"]}
    for hexed in (False, True):
        log = _log(reference.address, abi, values, hexed)
        expected = reference.events[abi["name"]]().process_log(_log(reference.address, abi, values, False))["args"]
        decoded = fast.events[abi["name"]].decode(log)
        assert decoded == dict(expected)
        assert list(decoded) == list(expected)  # the same order: stored as JSON
        assert decoded == values


def test_event_decode__another_event_or_short_data__value_error():
    fast, _ = _pair("LoyaltyPayment")
    abi = next(e for c, e in EVENTS if c == "LoyaltyPayment" and e["name"] == "PaymentClosed")
    log = _log(fast.address, abi, {"paymentId": b"\x07" * 32, "paid": 5, "fee": 1}, hexed=True)
    assert fast.events["PaymentClosed"].decode(log)["paid"] == 5
    with pytest.raises(ValueError, match="not a PaymentRefunded"):
        fast.events["PaymentRefunded"].decode(log)
    with pytest.raises(ValueError, match="does not decode"):
        fast.events["PaymentClosed"].decode({**log, "data": log["data"][:66]})
    with pytest.raises(ValueError, match="not a PaymentClosed"):
        fast.events["PaymentClosed"].decode({**log, "topics": log["topics"][:1]})

    registry, _ = _pair("ShopRegistry")
    updated = next(e for c, e in EVENTS if c == "ShopRegistry" and e["name"] == "ShopUpdated")
    values = {"shopId": b"\x01" * 32, "name": "ab", "provideWaitTime": 1, "providePercent": 2}
    log = _log(registry.address, updated, values, hexed=False)
    data = bytes(log["data"])
    not_utf8 = data.replace(b"ab" + b"\x00" * 30, b"\xff\xfe" + b"\x00" * 30)
    assert not_utf8 != data
    with pytest.raises(ValueError, match="does not decode as ShopUpdated"):
        registry.events["ShopUpdated"].decode({**log, "data": HexBytes(not_utf8)})


def test_receipt_logs__only_the_contracts_own_events_of_that_name():
    fast, _ = _pair("LoyaltyPayment")
    closed = next(e for c, e in EVENTS if c == "LoyaltyPayment" and e["name"] == "PaymentClosed")
    refunded = next(e for c, e in EVENTS if c == "LoyaltyPayment" and e["name"] == "PaymentRefunded")
    mine = _log(fast.address.lower(), closed, {"paymentId": b"\x01" * 32, "paid": 3, "fee": 0}, hexed=False)
    other_contract = _log("0x" + "22" * 20, closed, {"paymentId": b"\x02" * 32, "paid": 4, "fee": 0}, hexed=False)
    other_event = _log(fast.address, refunded, {"paymentId": b"\x03" * 32, "total": 5}, hexed=False)
    receipt = {"logs": [other_contract, mine, other_event, {**mine, "topics": []}]}
    assert fast.logs(receipt, "PaymentClosed") == [{"paymentId": b"\x01" * 32, "paid": 3, "fee": 0}]
