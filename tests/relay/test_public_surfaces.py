"""The benchmarks (bench/) and the end-to-end suite (tests/e2e/) reach the relay only as its users and
operators do: over HTTP through the SDK, the `loyalty` command line, relay.devnet to start
processes, and the database's models to read what the relay recorded. Its internals can then be
rewritten without touching them. The SDK imports nothing of the relay."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.relay.conftest import ROOT

PUBLIC = {"relay.devnet", "relay.config", "relay.db", "relay.models", "relay.typed_data"}


def _relay_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            # `from relay import db` imports the module relay.db
            found |= {f"{node.module}.{alias.name}" if node.module == "relay" else node.module for alias in node.names}
    return {name for name in found if name == "relay" or name.startswith("relay.")}


@pytest.mark.parametrize("folder", ["bench", "tests/e2e"])
def test_bench_and_e2e__import_only_the_relay_s_public_modules(folder):
    used = {path.relative_to(ROOT): _relay_imports(path) - PUBLIC for path in (ROOT / folder).rglob("*.py")}
    assert {path: names for path, names in used.items() if names} == {}


def test_sdk__imports_nothing_of_the_relay():
    assert {path.name: _relay_imports(path) for path in (ROOT / "sdk").rglob("*.py") if _relay_imports(path)} == {}
