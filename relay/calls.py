"""Contract function calls encoded straight with eth-abi.

web3.py's `contract.functions.name(...)` searches the whole ABI, recomputing every function
selector, and re-validates each argument every time it is used: that was most of the relay's CPU
time per payment. Here each function's selector and types are worked out once per contract, and a
call is one `eth_abi.encode`, sent with relay.rpc; reverts raise web3.py's `ContractCustomError` /
`ContractLogicError` as before. Events are decoded the same way: each event's topic and types are
worked out once, and a log is one `eth_abi.decode` of its data plus one per indexed topic, with
the arguments web3.py's `process_log` would give (addresses checksummed, indexed arguments first).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_typing import ChecksumAddress, HexStr
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector, to_bytes, to_checksum_address
from eth_utils.abi import collapse_if_tuple
from web3.types import BlockIdentifier, TxParams, Wei

from relay.rpc import NodeRpc


def _normalizer(abi_type: dict[str, Any]) -> Callable[[Any], Any]:
    """Converts a Python argument to what eth-abi encodes: hex strings to bytes for `bytes*`
    types, recursively through tuples and arrays (web3.py accepted both, so callers pass both)."""
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


@lru_cache(maxsize=4096)
def checksum(address: str) -> ChecksumAddress:
    """`to_checksum_address`, remembered: the relay sees the same few addresses (its contracts,
    signers, kiosks' users) over and over, and each conversion is a keccak hash."""
    return to_checksum_address(address)


def log_bytes(value: Any) -> bytes:
    """A log's topic or data as bytes, whether formatted by web3.py (HexBytes) or raw JSON (hex)."""
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


@dataclass(frozen=True)
class Event:
    """One event of a contract's ABI, decoded without web3.py's per-log ABI search."""

    name: str
    topic: bytes
    indexed: list[tuple[str, str]]  # (argument, static ABI type), in topic order
    data_names: list[str]
    data_types: list[str]

    @classmethod
    def from_abi(cls, entry: dict[str, Any]) -> Event:
        inputs = entry["inputs"]
        indexed = [(i["name"], collapse_if_tuple(i)) for i in inputs if i["indexed"]]
        for name, kind in indexed:
            if kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("):
                raise ValueError(f"event {entry['name']}: indexed dynamic argument {name} is not supported")
        return cls(
            name=entry["name"],
            topic=event_abi_to_log_topic(entry),  # type: ignore[arg-type]
            indexed=indexed,
            data_names=[i["name"] for i in inputs if not i["indexed"]],
            data_types=[collapse_if_tuple(i) for i in inputs if not i["indexed"]],
        )

    def decode(self, log: Mapping[str, Any]) -> dict[str, Any]:
        """The log's arguments. ValueError if the log is not this event (another topic, or
        topics or data that do not fit its types)."""
        topics = [log_bytes(t) for t in log["topics"]]
        if not topics or topics[0] != self.topic or len(topics) != len(self.indexed) + 1:
            raise ValueError(f"the log is not a {self.name} event")
        try:
            args = {
                name: _output(kind, abi_decode([kind], topic)[0])
                for (name, kind), topic in zip(self.indexed, topics[1:], strict=True)
            }
            values = abi_decode(self.data_types, log_bytes(log["data"]))
        except (DecodingError, UnicodeDecodeError) as exc:  # short or malformed data, a string not UTF-8
            raise ValueError(f"the log does not decode as {self.name}: {exc}") from exc
        outputs = zip(self.data_names, self.data_types, values, strict=True)
        args.update((name, _output(kind, value)) for name, kind, value in outputs)
        return args


def _output(kind: str, value: Any) -> Any:
    if kind == "address":
        return checksum(value)
    if kind == "address[]":
        return [checksum(v) for v in value]
    return value


@dataclass(frozen=True)
class _Signature:
    selector: bytes
    input_types: list[str]
    output_types: list[str]
    normalize: list[Callable[[Any], Any]]


@dataclass(frozen=True)
class Call:
    """One encoded call of a contract function; used like web3's ContractFunction."""

    rpc: NodeRpc
    to: ChecksumAddress
    data: HexStr
    output_types: list[str]

    def call(self, block_identifier: BlockIdentifier = "latest") -> Any:
        block = hex(block_identifier) if isinstance(block_identifier, int) else block_identifier
        raw = self.rpc.simulation("eth_call", [{"to": self.to, "data": self.data}, block])
        values = abi_decode(self.output_types, bytes.fromhex(raw[2:]))
        return values[0] if len(values) == 1 else values

    def estimate_gas(self, params: TxParams) -> int:
        """Simulates the call on the pending state: a signature whose nonce follows one of the
        signer's transactions still waiting to be mined is valid there, not at "latest"."""
        request = {**params, "to": self.to, "data": self.data}
        return int(self.rpc.simulation("eth_estimateGas", [request, "pending"]), 16)

    def simulate(self, sender: str) -> None:
        """Runs the call as a transaction from `sender` on the pending state (see estimate_gas);
        a revert raises web3.py's contract errors."""
        self.rpc.simulation("eth_call", [{"from": sender, "to": self.to, "data": self.data}, "pending"])

    def build_transaction(self, params: TxParams) -> TxParams:
        return {**params, "to": self.to, "data": self.data, "value": Wei(0)}


class _Functions:
    def __init__(self, contract: FastContract) -> None:
        self._contract = contract

    def __getattr__(self, name: str) -> Callable[..., Call]:
        return lambda *args: self._contract.encode(name, *args)


class FastContract:
    """A deployed contract: `address`, `functions.<name>(*args)` returning a `Call`, and its
    events by name (`events`) and by topic (`topics`)."""

    def __init__(self, rpc: NodeRpc, address: str, abi: list[dict[str, Any]]) -> None:
        self.rpc = rpc
        self.address = to_checksum_address(address)
        self.functions = _Functions(self)
        self._signatures: dict[str, _Signature] = {}
        self.events: dict[str, Event] = {}
        for entry in abi:
            if entry["type"] == "event" and not entry.get("anonymous"):
                self.events[entry["name"]] = Event.from_abi(entry)
            if entry["type"] != "function":
                continue
            if entry["name"] in self._signatures:
                raise ValueError(f"overloaded function {entry['name']} is not supported")
            self._signatures[entry["name"]] = _Signature(
                selector=function_abi_to_4byte_selector(entry),  # type: ignore[arg-type]
                input_types=[collapse_if_tuple(i) for i in entry["inputs"]],
                output_types=[collapse_if_tuple(o) for o in entry["outputs"]],
                normalize=[_normalizer(i) for i in entry["inputs"]],
            )

    @property
    def topics(self) -> dict[bytes, Event]:
        return {event.topic: event for event in self.events.values()}

    def logs(self, receipt: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
        """The arguments of every `name` event this contract emitted in the receipt's transaction."""
        event = self.events[name]
        address = self.address.lower()
        return [
            event.decode(entry)
            for entry in receipt["logs"]
            if str(entry["address"]).lower() == address
            and entry["topics"]
            and log_bytes(entry["topics"][0]) == event.topic
        ]

    def encode(self, name: str, *args: Any) -> Call:
        signature = self._signatures.get(name)
        if signature is None:
            raise AttributeError(f"the contract has no function {name}")
        values = [f(a) for f, a in zip(signature.normalize, args, strict=True)]
        data = signature.selector + abi_encode(signature.input_types, values)
        return Call(self.rpc, self.address, HexStr("0x" + data.hex()), signature.output_types)
