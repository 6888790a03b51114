"""The contracts' ABI, encoded and decoded straight with eth-abi.

web3.py's `contract.functions.name(...)` searches the whole ABI, recomputing every function
selector, and re-validates each argument every time it is used: that was most of the relay's CPU
per payment. Here each function's selector and types, each event's topic and types and each
error's selector are worked out once per contract; a call is one `eth_abi.encode`, a log one
`eth_abi.decode` of its data plus one per indexed topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector, keccak, to_bytes, to_checksum_address
from eth_utils.abi import collapse_if_tuple

ABI_DIR = Path(__file__).resolve().parent.parent / "abi"
CONTRACTS = ("LoyaltyToken", "CurrencyRate", "ShopRegistry", "Ledger", "LoyaltyPayment")


def load_abi(name: str) -> list[dict[str, Any]]:
    abi: list[dict[str, Any]] = json.loads((ABI_DIR / f"{name}.json").read_text())
    return abi


@lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """`to_checksum_address`, remembered: the relay sees the same few addresses over and over, and
    each conversion is a keccak hash."""
    return str(to_checksum_address(address))


def hex_bytes(value: Any) -> bytes:
    """A log's topic or data (hex from the node's JSON) as bytes."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def _normalizer(abi_type: dict[str, Any]) -> Callable[[Any], Any]:
    """Converts a Python argument to what eth-abi encodes: hex strings to bytes for `bytes*` types,
    recursively through tuples and arrays."""
    kind: str = abi_type["type"]
    if kind.endswith("]"):
        element = _normalizer({**abi_type, "type": kind[: kind.rindex("[")]})
        return lambda value: [element(v) for v in value]
    if kind == "tuple":
        fields = [_normalizer(component) for component in abi_type["components"]]
        return lambda value: tuple(f(v) for f, v in zip(fields, value, strict=True))
    if kind.startswith("bytes"):
        return lambda value: to_bytes(hexstr=value) if isinstance(value, str) else bytes(value)
    return lambda value: value


def _output(kind: str, value: Any) -> Any:
    return checksum(value) if kind == "address" else value


@dataclass(frozen=True)
class Event:
    name: str
    topic: bytes
    indexed: list[tuple[str, str]]  # (argument, static ABI type), in topic order
    data_names: list[str]
    data_types: list[str]

    @classmethod
    def from_abi(cls, entry: dict[str, Any]) -> Event:
        inputs = entry["inputs"]
        return cls(
            name=entry["name"],
            topic=event_abi_to_log_topic(entry),  # type: ignore[arg-type]
            indexed=[(i["name"], collapse_if_tuple(i)) for i in inputs if i["indexed"]],
            data_names=[i["name"] for i in inputs if not i["indexed"]],
            data_types=[collapse_if_tuple(i) for i in inputs if not i["indexed"]],
        )

    def decode(self, log: Mapping[str, Any]) -> dict[str, Any]:
        """The log's arguments, as web3.py's `process_log` gives them (addresses checksummed, in the
        ABI's order of indexed arguments first). ValueError if the log does not decode as this event."""
        topics = [hex_bytes(t) for t in log["topics"]]
        if not topics or topics[0] != self.topic or len(topics) != len(self.indexed) + 1:
            raise ValueError(f"the log is not a {self.name} event")
        try:
            args = {
                name: _output(kind, decode([kind], topic)[0])
                for (name, kind), topic in zip(self.indexed, topics[1:], strict=True)
            }
            values = decode(self.data_types, hex_bytes(log["data"]))
        except (DecodingError, UnicodeDecodeError) as exc:
            raise ValueError(f"the log does not decode as {self.name}: {exc}") from exc
        args.update(
            (name, _output(kind, value))
            for name, kind, value in zip(self.data_names, self.data_types, values, strict=True)
        )
        return args


@dataclass(frozen=True)
class Call:
    """One encoded call of a contract function."""

    to: str
    data: str
    output_types: list[str]

    def decode(self, raw: str) -> Any:
        values = decode(self.output_types, bytes.fromhex(raw[2:]))
        return values[0] if len(values) == 1 else values


@dataclass(frozen=True)
class _Function:
    selector: bytes
    input_types: list[str]
    output_types: list[str]
    normalize: list[Callable[[Any], Any]]


class Contract:
    """A deployed contract: `call(name, *args)` encodes a function call, `events` by name and by
    topic decode its logs."""

    def __init__(self, address: str, abi: list[dict[str, Any]]) -> None:
        self.address = checksum(address)
        self._functions: dict[str, _Function] = {}
        self.events: dict[str, Event] = {}
        for entry in abi:
            if entry["type"] == "event":
                self.events[entry["name"]] = Event.from_abi(entry)
            elif entry["type"] == "function":
                self._functions[entry["name"]] = _Function(
                    selector=function_abi_to_4byte_selector(entry),  # type: ignore[arg-type]
                    input_types=[collapse_if_tuple(i) for i in entry["inputs"]],
                    output_types=[collapse_if_tuple(o) for o in entry["outputs"]],
                    normalize=[_normalizer(i) for i in entry["inputs"]],
                )
        self.topics = {event.topic: event for event in self.events.values()}

    def call(self, name: str, *args: Any) -> Call:
        f = self._functions.get(name)
        if f is None:
            raise AttributeError(f"the contract has no function {name}")
        data = f.selector + encode(f.input_types, [n(a) for n, a in zip(f.normalize, args, strict=True)])
        return Call(self.address, "0x" + data.hex(), f.output_types)

    def logs(self, receipt: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
        """The arguments of every `name` event this contract emitted in the receipt's transaction."""
        event, address = self.events[name], self.address.lower()
        return [
            event.decode(entry)
            for entry in receipt["logs"]
            if entry["address"].lower() == address and entry["topics"] and hex_bytes(entry["topics"][0]) == event.topic
        ]


class ErrorDecoder:
    """Names the custom error in revert data, with its arguments, from every contract's ABI."""

    def __init__(self, abis: list[list[dict[str, Any]]]) -> None:
        self.errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item["type"] == "error":
                    types = [collapse_if_tuple(i) for i in item["inputs"]]
                    selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                    self.errors[selector] = (item["name"], [i["name"] for i in item["inputs"]], types)

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]] | None:
        """(error name, arguments), or None for revert data of no known error."""
        known = self.errors.get(data[:4]) if len(data) >= 4 else None
        if known is None:
            return None
        name, names, types = known
        try:
            values = decode(types, data[4:])
        except DecodingError:
            return name, {}
        hexed = ("0x" + v.hex() if isinstance(v, bytes) else _output(t, v) for t, v in zip(types, values, strict=True))
        return name, dict(zip(names, hexed, strict=True))
