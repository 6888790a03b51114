"""Assertion helpers: custom errors, events, the ledger's invariants and state changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ape
import pytest
from ape.contracts import ContractInstance
from ape.exceptions import ContractLogicError, CustomError, VirtualMachineError
from eth_abi import encode
from eth_utils import keccak

from tests.utils.constants import POINT, TOKEN

# ---------------------------------------------------------------- values


def norm(value: Any) -> Any:
    """A comparable form of what Ape returns or a test passes: accounts and contracts become
    addresses, bytes and hex strings become lower-case 0x-hex, integer-likes become ints."""
    if hasattr(value, "address") and not isinstance(value, str | bytes):
        value = value.address
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, list | tuple):
        return [norm(item) for item in value]
    return value


def _compare(kind: str, actual: dict[str, Any], expected: dict[str, Any]) -> None:
    unknown = set(expected) - set(actual)
    assert not unknown, f"{kind} has no inputs {sorted(unknown)}; it has {sorted(actual)}"
    got = {name: norm(actual[name]) for name in expected}
    want = {name: norm(value) for name, value in expected.items()}
    assert got == want, f"{kind}: expected {want}, got {got}"


# ---------------------------------------------------------------- custom errors


@contextmanager
def reverts(error: type[CustomError], **inputs: Any) -> Iterator[None]:
    """``ape.reverts(contract.ErrorName, arg=value)``, made strict.

    Ape skips input names the error does not have, compares bytes32 values as ``HexBytes`` (so a
    0x-string never matches) and accepts any revert it could not decode. Here every named input
    must exist and match after normalisation, and the revert must be exactly ``error``: decoded by
    Ape, or, where Ape cannot decode it (a constructor), as raw revert data.

    Ape does not decode custom errors of ``eth_call``s (anvil returns them as text): to check a
    view function's error, call it as a transaction, ``contract.view.transact(..., sender=...)``."""
    abi = error.abi
    try:
        yield
    except ContractLogicError as raised:
        exc = raised
    else:
        raise AssertionError(f"expected {abi.name}, the call did not revert")
    if isinstance(exc, CustomError):
        # By signature, not by class: an error that reaches the test through another contract (a
        # wallet's call) is decoded with the first ABI Ape knows that has it.
        assert exc.abi.selector == abi.selector, f"expected {abi.selector}, reverted with {exc.abi.selector}"
        _compare(abi.name, exc.inputs, inputs)
        return
    # Undecoded: compare the revert data with the encoded error (every input must be given).
    names = [ipt.name for ipt in abi.inputs]
    assert set(inputs) == set(names), f"give every input of {abi.name} ({names}) to check raw revert data"
    types = [ipt.canonical_type for ipt in abi.inputs]
    data = keccak(text=abi.selector)[:4] + encode(types, [inputs[name] for name in names])
    assert norm(exc.revert_message) == norm(data), f"expected {abi.name}, reverted with {exc.revert_message}"


@contextmanager
def panics(code: int) -> Iterator[Any]:
    """A Solidity panic (0x11 arithmetic over/underflow, 0x32 array index out of bounds, ...). Ape
    reports it differently for calls and transactions; both name the code."""
    with pytest.raises(VirtualMachineError) as info:
        yield info
    message = str(info.value).lower()
    assert "panic" in message and f"0x{code:02x}" in message, f"expected panic 0x{code:02x}, got {message!r}"


# ---------------------------------------------------------------- events


def logs_of(receipt: Any, event: Any) -> list[Any]:
    """The logs of `event` (``contract.EventName``) that `receipt`'s transaction emitted from that contract."""
    address = event.contract.address
    return [log for log in receipt.decode_logs(event) if log.contract_address == address]


def assert_event(receipt: Any, event: Any, **expected: Any) -> Any:
    """Asserts the transaction emitted `event` exactly once, with exactly these arguments (all of them)."""
    logs = logs_of(receipt, event)
    assert len(logs) == 1, f"expected one {event.name}, got {len(logs)}"
    args = dict(logs[0].event_arguments)
    missing = set(args) - set(expected)
    assert not missing, f"{event.name}: give every argument; missing {sorted(missing)}"
    _compare(event.name, args, expected)
    return logs[0]


def assert_no_event(receipt: Any, event: Any) -> None:
    assert not logs_of(receipt, event), f"unexpected {event.name}"


def event_names(receipt: Any, contract: ContractInstance) -> list[str]:
    """Names of the events `contract` emitted in `receipt`'s transaction, in order."""
    return [log.event_name for log in receipt.events if log.contract_address == contract.address]


# ---------------------------------------------------------------- state


SHOP_FIELDS = ("providedPoint", "usedPoint", "settledPoint", "withdrawnPoint", "withdrawAmount")
# Positions of SHOP_FIELDS in IShopRegistry.ShopInfo.
_SHOP_INFO_INDEX = {"providedPoint": 5, "usedPoint": 6, "settledPoint": 7, "withdrawnPoint": 8, "withdrawAmount": 9}
_web3_contracts: dict[str, Any] = {}


def _web3_contract(contract: ContractInstance) -> Any:
    key = f"{contract.contract_type.name}@{contract.address}"
    if key not in _web3_contracts:
        abi = contract.contract_type.model_dump(mode="json", by_alias=True)["abi"]
        _web3_contracts[key] = ape.chain.provider.web3.eth.contract(address=contract.address, abi=abi)
    return _web3_contracts[key].functions


def system_state(token: ContractInstance, ledger: ContractInstance, shops: ContractInstance, **named: Any) -> dict:
    """Every balance the system keeps, as a flat dict, for comparing before and after an operation.

    Always: ``escrow.point``, ``escrow.token``, ``fees.point``, ``fees.token``, ``reserve`` and
    ``ledger.tokens`` (the ledger's ERC-20 balance). For each named account (``user=user``):
    ``user`` (ledger balance, in its loyalty type), ``user.type`` and ``user.wallet`` (ERC-20
    balance). For each named shop id (``shop=shop_id``, a bytes32 hex string): ``shop.providedPoint``,
    ``shop.usedPoint``, ``shop.settledPoint``, ``shop.withdrawnPoint`` and ``shop.withdrawAmount``.

    Read in one JSON-RPC batch: a dozen separate calls through Ape would cost a few tenths of a second."""
    led, tok, reg = _web3_contract(ledger), _web3_contract(token), _web3_contract(shops)
    calls: list[tuple[Any, Any]] = [
        ("escrow.point", led.escrowOf(POINT)),
        ("escrow.token", led.escrowOf(TOKEN)),
        ("fees.point", led.feesOf(POINT)),
        ("fees.token", led.feesOf(TOKEN)),
        ("reserve", led.reserve()),
        ("ledger.tokens", tok.balanceOf(ledger.address)),
    ]
    for name, item in named.items():
        if isinstance(item, str | bytes) and len(norm(item)) == 66:
            calls.append(((name, "shop"), reg.shopOf(norm(item))))
        else:
            address = getattr(item, "address", item)
            calls += [((name, "account"), led.accountOf(address)), (f"{name}.wallet", tok.balanceOf(address))]
    with ape.chain.provider.web3.batch_requests() as batch:
        for _, call in calls:
            batch.add(call)
        results = batch.execute()
    state: dict[str, int] = {}
    for (key, _), result in zip(calls, results, strict=True):
        if isinstance(key, str):
            state[key] = result
        elif key[1] == "shop":
            state.update({f"{key[0]}.{field}": result[index] for field, index in _SHOP_INFO_INDEX.items()})
        else:
            state[f"{key[0]}.type"], state[key[0]] = result
    return {key: int(value) for key, value in state.items()}


def changes(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What changed between two `system_state` snapshots: key -> after - before (unchanged keys left out)."""
    return {key: after[key] - before[key] for key in before if after[key] != before[key]}


def ledger_tokens_balance(token: ContractInstance, ledger: ContractInstance, accounts) -> None:
    """Conservation of tokens: the ledger's ERC-20 balance equals everything it accounts for."""
    held = sum(ledger.accountOf(a)[1] for a in accounts if ledger.accountOf(a)[0] == TOKEN)
    accounted = held + ledger.escrowOf(TOKEN) + ledger.feesOf(TOKEN) + ledger.reserve()
    assert token.balanceOf(ledger) == accounted
