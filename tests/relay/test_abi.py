"""The ABIs committed in relay/abi/ are those of the contracts as compiled now (tools/export_abi.py
writes them; a contract change without re-exporting fails here)."""

from __future__ import annotations

import json

import pytest
from eth_abi import encode as abi_encode

from relay.chain.abi import ABI_DIR, CONTRACTS, errors
from relay.chain.client import REJECTIONS, rejection
from tools.export_abi import compiled_abis


@pytest.fixture(scope="module")
def compiled(deployment):
    """The build output (`ape run deploy` compiled the contracts for the session's deployment)."""
    return compiled_abis()


def test_abi_files__one_per_contract_the_relay_uses(compiled):
    assert {path.stem for path in ABI_DIR.glob("*.json")} == set(CONTRACTS) == set(compiled)


@pytest.mark.parametrize("name", CONTRACTS)
def test_abi_file__equals_the_compiled_abi(compiled, name):
    committed = json.loads((ABI_DIR / f"{name}.json").read_text())
    assert committed == compiled[name]


@pytest.mark.parametrize("name", sorted(REJECTIONS))
def test_explained_error__declared_by_a_contract_and_explained_with_its_arguments(name):
    """A renamed contract error or argument would otherwise come back as a bare 4002, or a 500."""
    known = errors([json.loads((ABI_DIR / f"{contract}.json").read_text()) for contract in CONTRACTS])
    declared = [(selector, types) for selector, (error, _, types) in known.items() if error == name]
    assert declared, f"no contract declares {name}"
    for selector, types in declared:
        values = [b"\x01" * 32 if t == "bytes32" else "0x" + "02" * 20 if t == "address" else 3 for t in types]
        refused = rejection(known, selector + abi_encode(types, values))
        assert type(refused) is REJECTIONS[name]
        assert f"[{name}(" in refused.message and "{" not in refused.message
