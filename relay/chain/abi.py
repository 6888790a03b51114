"""The contracts' ABI, encoded and decoded straight with eth-abi: each function's selector and types,
each event's topic and each error's selector worked out once per contract.

Kept over web3.py's contract objects, which search the whole ABI and re-validate every argument on
each use: the indexer's step over 385 events takes 22 ms of CPU here, 53 ms through web3.py
(docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, make_dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector, to_bytes, to_checksum_address
from eth_utils.abi import collapse_if_tuple
from pydantic.alias_generators import to_snake

ABI_DIR = Path(__file__).resolve().parent.parent / "abi"
CONTRACTS = ("LoyaltyToken", "CurrencyRate", "ShopRegistry", "Ledger", "LoyaltyPayment")
Errors = dict[bytes, tuple[str, list[str], list[str]]]  # selector -> (name, argument names, argument types)


@lru_cache(maxsize=4096)
def checksum(address: str) -> str:
    """`to_checksum_address`, remembered: the relay sees the same few addresses over and over."""
    return str(to_checksum_address(address))


def hex_bytes(value: Any) -> bytes:
    """A log's topic or data (hex from the node's JSON) as bytes."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def _to_abi(kind: str, value: Any) -> Any:
    """A Python argument as eth-abi encodes it: `bytes*` given as hex strings turned into bytes."""
    if kind.startswith("bytes"):
        return to_bytes(hexstr=value) if isinstance(value, str) else bytes(value)
    return value


def _from_abi(kind: str, value: Any) -> Any:
    """A decoded value as the relay uses it: addresses checksummed, `bytes*` as 0x-hex."""
    if kind == "address":
        return checksum(value)
    return "0x" + value.hex() if kind.startswith("bytes") else value


def _mapper(abi_type: Mapping[str, Any], leaf: Callable[[str, Any], Any]) -> Callable[[Any], Any]:
    """Applies `leaf(type, value)` to each value of an ABI type, through arrays and tuples."""
    kind: str = abi_type["type"]
    if kind.endswith("]"):
        element = _mapper({**abi_type, "type": kind[: kind.rindex("[")]}, leaf)
        return lambda value: [element(v) for v in value]
    if kind == "tuple":
        fields = [_mapper(component, leaf) for component in abi_type["components"]]
        return lambda value: tuple(f(v) for f, v in zip(fields, value, strict=True))
    return lambda value: leaf(kind, value)


def _of_event(kind: str, value: Any) -> Any:
    return checksum(value) if kind == "address" else value


class Event:
    """A contract's event: its topic, and `decode` for its logs."""

    def __init__(self, entry: dict[str, Any]) -> None:
        inputs = entry["inputs"]
        self.name: str = entry["name"]
        self.topic = event_abi_to_log_topic(entry)  # type: ignore[arg-type]
        self.indexed = [(i["name"], collapse_if_tuple(i)) for i in inputs if i["indexed"]]  # in topic order
        self.data_names = [i["name"] for i in inputs if not i["indexed"]]
        self.data_types = [collapse_if_tuple(i) for i in inputs if not i["indexed"]]

    def decode(self, log: Mapping[str, Any]) -> dict[str, Any]:
        """The log's arguments as web3.py's `process_log` gives them (indexed first, addresses
        checksummed). ValueError if the log does not decode as this event."""
        topics = [hex_bytes(t) for t in log["topics"]]
        if not topics or topics[0] != self.topic or len(topics) != len(self.indexed) + 1:
            raise ValueError(f"the log is not a {self.name} event")
        try:
            args = {
                name: _of_event(kind, decode([kind], topic)[0])
                for (name, kind), topic in zip(self.indexed, topics[1:], strict=True)
            }
            values = decode(self.data_types, hex_bytes(log["data"]))
        except (DecodingError, UnicodeDecodeError) as exc:
            raise ValueError(f"the log does not decode as {self.name}: {exc}") from exc
        args.update(
            (name, _of_event(kind, value))
            for name, kind, value in zip(self.data_names, self.data_types, values, strict=True)
        )
        return args


@dataclass(frozen=True)
class Call:
    """One encoded call of a contract function; `decode` turns its raw result into Python values:
    a single output as itself, a struct as a frozen dataclass of its fields in snake_case."""

    to: str
    data: str
    decode: Callable[[str], Any]


def _struct(output: dict[str, Any]) -> type | None:
    """A frozen dataclass of a struct output's fields in snake_case; None for another output."""
    if output["type"] != "tuple":
        return None
    name = output["internalType"].rpartition(".")[2]  # "struct IShopRegistry.ShopInfo"
    return make_dataclass(name, [to_snake(c["name"]) for c in output["components"]], frozen=True)


def _result_decoder(outputs: list[dict[str, Any]]) -> Callable[[str], Any]:
    types = [collapse_if_tuple(o) for o in outputs]
    convert = _mapper({"type": "tuple", "components": outputs}, _from_abi)
    structs = [_struct(o) for o in outputs]

    def decode_result(raw: str) -> Any:
        values = convert(decode(types, bytes.fromhex(raw[2:])))
        values = [v if struct is None else struct(*v) for struct, v in zip(structs, values, strict=True)]
        return values[0] if len(values) == 1 else values

    return decode_result


class Contract:
    """A deployed contract: `call(name, *args)` encodes a function call, `events` by name and
    `topics` by topic decode its logs."""

    def __init__(self, address: str, abi: list[dict[str, Any]]) -> None:
        self.address = checksum(address)
        self.events = {e["name"]: Event(e) for e in abi if e["type"] == "event"}
        self.topics = {event.topic: event for event in self.events.values()}
        self._functions = {
            f["name"]: (
                function_abi_to_4byte_selector(f),  # type: ignore[arg-type]
                [collapse_if_tuple(i) for i in f["inputs"]],
                _mapper({"type": "tuple", "components": f["inputs"]}, _to_abi),
                _result_decoder(f["outputs"]),
            )
            for f in abi
            if f["type"] == "function"
        }

    def call(self, name: str, *args: Any) -> Call:
        if name not in self._functions:
            raise AttributeError(f"the contract has no function {name}")
        selector, types, to_abi, decode_result = self._functions[name]
        return Call(self.address, "0x" + (selector + encode(types, to_abi(args))).hex(), decode_result)

    def logs(self, receipt: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
        """The arguments of every `name` event this contract emitted in the receipt's transaction."""
        event, address = self.events[name], self.address.lower()
        return [
            event.decode(entry)
            for entry in receipt["logs"]
            if entry["address"].lower() == address and entry["topics"] and hex_bytes(entry["topics"][0]) == event.topic
        ]


def errors(abis: Iterable[list[dict[str, Any]]]) -> Errors:
    """Every custom error of the ABIs by selector."""
    return {
        function_abi_to_4byte_selector(item): (  # type: ignore[arg-type]
            item["name"],
            [i["name"] for i in item["inputs"]],
            [collapse_if_tuple(i) for i in item["inputs"]],
        )
        for abi in abis
        for item in abi
        if item["type"] == "error"
    }


def decode_error(known: Errors, data: bytes) -> tuple[str, dict[str, Any]] | None:
    """(error name, arguments) of revert data, or None for revert data of no known error."""
    if (error := known.get(data[:4])) is None:
        return None
    name, names, types = error
    try:
        values = decode(types, data[4:])
    except DecodingError:
        return name, {}
    return name, {n: _from_abi(t, v) for n, t, v in zip(names, types, values, strict=True)}
