"""A lean JSON-RPC path to the anvil node Ape started, for the state machine's many transactions.

Ape's contract calls are what unit tests should read, but they cost ~70 ms per transaction and
~400 ms per revert (ape-foundry fetches, enriches and prints a call trace for every revert), and
the long property run sends tens of thousands of both. This module encodes calls with the
contracts' own compiled ABIs (from Ape's project), sends them to the same node, and decodes
return values and custom errors, so a revert is checked by name and arguments in ~2 ms.

Expected reverts are evaluated with `eth_estimateGas` against the pending block: the exact
environment (state, sender, timestamp) the transaction would be mined in, without mining it.
Transactions are mined with `evm_mine` (the state machine turns automine off while it runs:
anvil's automine mines after the RPC call returns, so a receipt could be asked for too early).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import requests
from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address

# Enough for every call in the system; given explicitly so anvil does not estimate it.
GAS = 1_500_000


class RpcError(Exception):
    """A JSON-RPC error that is not a contract revert."""


@dataclass
class Reverted(Exception):
    """A contract call reverted with a custom error `name(*args)` (args decoded, addresses checksummed)."""

    name: str
    args: tuple

    def __str__(self) -> str:
        return f"{self.name}{self.args}"


def _normalize(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    if isinstance(value, tuple | list):
        return tuple(_normalize(v) for v in value)
    return value


def _named(abi_type: Any, value: Any) -> Any:
    """A decoded struct as a namespace with the struct's field names."""
    if abi_type.components and all(c.name for c in abi_type.components):
        return SimpleNamespace(**{c.name: v for c, v in zip(abi_type.components, value, strict=True)})
    return value


class Rpc:
    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.session = requests.Session()
        self._ids = itertools.count()
        self.errors: dict[bytes, tuple[str, list[str]]] = {}

    def register_errors(self, contract_type: Any) -> None:
        for item in contract_type.abi:
            if item.type == "error":
                selector = keccak(text=item.selector)[:4]
                self.errors[selector] = (item.name, [i.canonical_type for i in item.inputs])

    def request(self, method: str, params: list) -> Any:
        reply = self.session.post(
            self.uri, json={"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        ).json()
        if "error" in reply:
            raise self._error(reply["error"])
        return reply["result"]

    def batch(self, calls: list[tuple[str, list]]) -> list[Any]:
        """Sends `calls` in one HTTP request; returns their results in order (raises the first error)."""
        first = next(self._ids) * 10_000
        payload = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        replies = sorted(self.session.post(self.uri, json=payload).json(), key=lambda r: r["id"])
        for reply in replies:
            if "error" in reply:
                raise self._error(reply["error"])
        return [reply["result"] for reply in replies]

    def decode_revert(self, data: str | None) -> Reverted:
        raw = bytes.fromhex((data or "0x")[2:])
        if len(raw) < 4 or raw[:4] not in self.errors:
            return Reverted("<unknown revert>", (raw.hex(),))
        name, types = self.errors[raw[:4]]
        return Reverted(name, _normalize(decode(types, raw[4:])))

    def _error(self, error: dict) -> Exception:
        # anvil reports a revert as code 3 with the revert data.
        if error.get("code") == 3 or "revert" in str(error.get("message", "")):
            return self.decode_revert(error.get("data"))
        return RpcError(error)


class Method:
    def __init__(self, rpc: Rpc, address: str, abi: Any) -> None:
        self.rpc, self.address, self.abi = rpc, address, abi
        self.selector = keccak(text=abi.selector)[:4]
        self.input_types = [i.canonical_type for i in abi.inputs]
        self.output_types = [o.canonical_type for o in abi.outputs]

    def data(self, *args: Any) -> str:
        return "0x" + (self.selector + encode(self.input_types, list(args))).hex()

    def decode(self, result: str) -> Any:
        values = _normalize(decode(self.output_types, bytes.fromhex(result[2:])))
        if len(values) == 1:
            return _named(self.abi.outputs[0], values[0])
        return values

    # views

    def request(self, *args: Any) -> tuple[str, list]:
        return "eth_call", [{"to": self.address, "data": self.data(*args)}, "latest"]

    def __call__(self, *args: Any) -> Any:
        return self.decode(self.rpc.request(*self.request(*args)))

    # transactions

    def _tx(self, args: tuple, sender: str) -> dict:
        return {"from": sender, "to": self.address, "data": self.data(*args)}

    def transact(self, *args: Any, sender: str) -> dict:
        """Mines the transaction; raises `Reverted` (decoded) if it fails."""
        tx = self._tx(args, sender)
        tx_hash = self.rpc.request("eth_sendTransaction", [{**tx, "gas": hex(GAS)}])
        # Automine is off (see the module docstring): evm_mine mines the one pending transaction.
        self.rpc.request("evm_mine", [])
        receipts = self.rpc.request("eth_getBlockReceipts", ["latest"])
        assert [r["transactionHash"] for r in receipts] == [tx_hash], "the transaction was not mined alone"
        (receipt,) = receipts
        if int(receipt["status"], 16) != 1:
            # Replay against the mined block's parent state for the reason (diagnostics only).
            parent = hex(int(receipt["blockNumber"], 16) - 1)
            try:
                self.rpc.request("eth_call", [tx, parent])
            except Reverted as reverted:
                raise reverted from None
            raise Reverted("<reverted>", (tx_hash,))
        return receipt

    def revert_of(self, *args: Any, sender: str) -> Reverted | None:
        """How the transaction would revert if sent now (pending block), or None if it would succeed."""
        try:
            self.rpc.request("eth_estimateGas", [self._tx(args, sender)])
        except Reverted as reverted:
            return reverted
        return None


class Contract:
    """A contract's functions by name, bound to the lean RPC path."""

    def __init__(self, rpc: Rpc, ape_contract: Any) -> None:
        self.address = str(ape_contract.address)
        rpc.register_errors(ape_contract.contract_type)
        for item in ape_contract.contract_type.abi:
            if item.type == "function":
                setattr(self, item.name, Method(rpc, self.address, item))
