"""Deploys and wires the loyalty contracts, then writes deployments/<network>.json.

    ape run deploy --network ethereum:local:foundry               # throwaway anvil
    ape run deploy --network ethereum:local:node                  # the anvil of `make run` (127.0.0.1:8545)
    ape run deploy --network ethereum:sepolia:node --account me --relay 0xRelay1 --relay 0xRelay2

On a local network the deployer defaults to test account 0 and the relay to the deployer.
"""

import click
from ape import accounts, chain, networks
from ape.cli import ConnectedProviderCommand, account_option

from scripts._system import deploy_system, write_deployment


def deployment_name() -> str:
    network = networks.provider.network
    return "local" if network.name == "local" else f"{network.ecosystem.name}-{network.name}"


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option("--relay", "relays", multiple=True, help="Relay signer address (repeatable). Default: the deployer.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a live network.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the deployment here instead.")
def cli(account, relays, yes, out):
    local = networks.provider.network.name == "local"
    if account is None:
        if not local:
            raise click.UsageError("--account is required on a live network")
        account = accounts.test_accounts[0]
    relay_addresses = list(relays) or [account.address]
    click.echo(f"Network: {networks.provider.network.choice}  deployer: {account.address}")
    click.echo(f"Relay signer(s): {', '.join(relay_addresses)}")
    if not local and not yes:
        click.confirm("Deploy and wire the contracts?", abort=True)

    start_block = chain.blocks.head.number + 1
    system = deploy_system(account, relay_addresses)
    path = write_deployment(deployment_name(), system, account.address, relay_addresses, start_block, path=out)
    for name, contract in system.contracts().items():
        click.echo(f"  {name:15} {contract.address}")
    click.echo(f"Wrote {path}")
