"""Measures gas per operation on a fresh deployment and writes GAS.md.

ape run gas_table --network ethereum:local:foundry
"""

from pathlib import Path

import click
from ape import accounts
from ape.cli import ConnectedProviderCommand

from scripts._gas import BUDGETS, REFERENCE, measure
from scripts._system import deploy_system

OUTPUT = Path(__file__).resolve().parent.parent / "GAS.md"


def render(gas: dict[str, int]) -> str:
    lines = [
        "# Gas per operation",
        "",
        "Measured by `ape run gas_table --network ethereum:local:foundry` (anvil) on a fresh deployment:",
        "a point-paying user's second payment and the operations around it, each in its own transaction,",
        "sent by the relay. `tests/unit/test_gas.py` fails when an operation exceeds its budget.",
        "",
        "| operation | gas | budget | public implementation of the spec |",
        "|---|---:|---:|---:|",
    ]
    for op, used in gas.items():
        ref = REFERENCE.get(op)
        lines.append(f"| {op} | {used:,} | {BUDGETS[op]:,} | {f'{ref:,}' if ref else '—'} |")
    return "\n".join(lines) + "\n"


@click.command(cls=ConnectedProviderCommand)
def cli():
    test_accounts = accounts.test_accounts
    admin, relay, owner, user = test_accounts[0], test_accounts[1], test_accounts[2], test_accounts[3]
    system = deploy_system(admin, [relay])
    gas = measure(system, relay, owner, user)
    table = render(gas)
    OUTPUT.write_text(table)
    click.echo(table)
    over = [op for op, used in gas.items() if used > BUDGETS[op]]
    if over:
        raise click.ClickException(f"over budget: {', '.join(over)}")
