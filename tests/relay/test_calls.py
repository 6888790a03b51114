"""relay.calls encodes contract calls exactly as web3.py does, for every kind of argument the relay
passes (hex strings and bytes for bytes32, addresses, strings, a struct, booleans), and decodes
results the same way. No chain needed: both sides only encode."""

from __future__ import annotations

import dataclasses
import json
import secrets

import pytest
from eth_abi.abi import encode
from web3 import Web3

from relay.calls import FastContract
from relay.chain import ABI_DIR
from relay.rpc import NodeRpc

ADDRESS = "0x" + "11" * 20
ACCOUNT = Web3.to_checksum_address("0x" + "ab" * 20)


def _pair(name: str) -> tuple[FastContract, object]:
    abi = json.loads((ABI_DIR / f"{name}.json").read_text())
    w3 = Web3()
    unused = NodeRpc("http://127.0.0.1:9", timeout=1)  # never asked: these tests only encode and decode
    return FastContract(unused, ADDRESS, abi), w3.eth.contract(address=Web3.to_checksum_address(ADDRESS), abi=abi)


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
        lambda: ((_hex32(), "B-7", 10**18, "krw", _hex32(), ACCOUNT, 1_900_000_000), "0x" + "cd" * 65),
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
    call = fast.functions.__getattr__(function)(*values)
    assert call.data == expected
    assert call.to == reference.address
    assert call.build_transaction({"gas": 1})["data"] == expected


def test_encode__wrong_argument_count__raises():
    fast, _ = _pair("LoyaltyPayment")
    with pytest.raises(ValueError):
        fast.functions.closeNewPayment(_hex32())


def test_encode__unknown_function__raises():
    fast, _ = _pair("LoyaltyPayment")
    with pytest.raises(AttributeError):
        fast.functions.mint(ACCOUNT, 1)


class _FakeNode:
    """Answers every eth_call with fixed return data, and records the requests."""

    def __init__(self, result: bytes) -> None:
        self.result = result
        self.requests: list[tuple[str, list[object]]] = []

    def simulation(self, method, params):
        self.requests.append((method, params))
        return "0x" + self.result.hex()


def test_call__decodes_single_and_multiple_outputs():
    ledger, _ = _pair("Ledger")
    account_of = ledger.functions.accountOf(ACCOUNT)
    node = _FakeNode(encode(["uint8", "uint256"], [1, 42]))
    assert tuple(dataclasses.replace(account_of, rpc=node).call(block_identifier=255)) == (1, 42)
    assert node.requests == [("eth_call", [{"to": account_of.to, "data": account_of.data}, "0xff"])]
    payment, _ = _pair("LoyaltyPayment")
    nonces = dataclasses.replace(payment.functions.nonces(ACCOUNT), rpc=_FakeNode(encode(["uint256"], [7])))
    assert nonces.call() == 7
