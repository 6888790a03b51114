"""The ABIs committed in relay/abi/ are those of the contracts as compiled now (tools/export_abi.py
writes them; a contract change without re-exporting fails here)."""

from __future__ import annotations

import json

import pytest

from relay.chain import ABI_DIR, CONTRACTS
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
