"""Measures gas per operation on a fresh deployment and writes GAS.md.

ape run gas_table --network ethereum:local:foundry
"""

from pathlib import Path

import click
from ape import accounts, config
from ape.cli import ConnectedProviderCommand

from scripts._gas import CASES, REFERENCE, measure
from scripts._system import UNIT, deploy_system

OUTPUT = Path(__file__).resolve().parent.parent / "GAS.md"


def render(gas: dict[tuple[str, str], int]) -> str:
    solc = config.get_config("solidity")
    lines = [
        "# Gas per operation",
        "",
        "Measured by `make gas` (`ape run gas_table --network ethereum:local:foundry`, anvil) on a fresh",
        "deployment, each operation in its own transaction as the relay sends it: the best case (a",
        "running system, a returning user) and the worst cases users commonly hit. The first write of a",
        "storage slot costs 20,000 gas instead of 2,900, which is what separates the cases (a user's",
        "first nonce and balance, a shop's first withdrawn total, the system's first escrow and fees).",
        "`tests/unit/test_gas.py` runs the same scenario and fails when a case exceeds its budget.",
        f"Compiled by solc {solc.version} with the optimizer at {solc.optimization_runs:,} runs (ape-config.yaml):",
        "cheaper calls for a larger deployment.",
        "",
        "| operation | case | gas | budget | public implementation of the spec |",
        "|---|---|---:|---:|---:|",
    ]
    for c in CASES:
        used = gas[(c.operation, c.case)]
        reference = REFERENCE.get(c.operation)
        ref = f"{reference:,} ({reference / used:.1f}x ours)" if reference else "—"
        lines.append(f"| {c.operation} | {c.case} | {used:,} | {c.budget:,} | {ref} |")
    return "\n".join(lines) + "\n"


@click.command(cls=ConnectedProviderCommand)
def cli():
    test_accounts = accounts.test_accounts
    admin, relay, owner = test_accounts[0], test_accounts[1], test_accounts[2]
    system = deploy_system(admin, [relay])
    system.token.approve(system.ledger, 10_000_000 * UNIT, sender=admin)
    system.ledger.fundReserve(10_000_000 * UNIT, sender=admin)
    gas = measure(system, admin, relay, owner, list(test_accounts[3:8]))
    table = render(gas)
    OUTPUT.write_text(table)
    click.echo(table)
    over = [f"{c.operation} ({c.case})" for c in CASES if gas[(c.operation, c.case)] > c.budget]
    if over:
        raise click.ClickException(f"over budget: {', '.join(over)}")
