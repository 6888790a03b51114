"""Deploys and wires the loyalty contracts, then writes deployments/<network>.json.

    ape run deploy --network ethereum:local:foundry               # throwaway anvil
    ape run deploy --network ethereum:local:node                  # the anvil of `make run` (127.0.0.1:8545)
    ape run deploy --network ethereum:sepolia:node --account me --admin 0xAdmin --relay 0xRelay1 --relay 0xRelay2

On a local network the deployer defaults to test account 0 and is admin and relay. On a live
network the admin and the relay signer(s) must be given, and must differ: the relay key is online
and the admin key should not be. The deployer keeps no role unless named.
"""

import click
from ape import accounts, chain, networks
from ape.cli import ConnectedProviderCommand, account_option
from eth_utils import is_address, to_checksum_address

from scripts._system import ADMIN_DELAY, DEFAULT_LIMITS, UNIT, Limits, deploy_system, write_deployment


def deployment_name() -> str:
    network = networks.provider.network
    return "local" if network.name == "local" else f"{network.ecosystem.name}-{network.name}"


def checked_address(value: str, option: str) -> str:
    if not is_address(value):
        raise click.BadParameter(f"{value!r} is not an address", param_hint=option)
    return to_checksum_address(value)


def resolve_roles(
    local: bool, deployer: str, admin: str | None, relays: list[str], rate_setter: str | None
) -> tuple[str, list[str], str]:
    """Who gets which role: (admin, relays, rate setter). A live network needs an explicit admin and
    relay signer(s), all distinct: the relay key is online, the admin key should not be."""
    if not local and (not admin or not relays):
        raise click.UsageError("a live network needs explicit --admin and --relay addresses")
    admin = checked_address(admin, "--admin") if admin else deployer
    relay_addresses = [checked_address(r, "--relay") for r in relays] or [deployer]
    rate_setter = checked_address(rate_setter, "--rate-setter") if rate_setter else admin
    if not local and admin in relay_addresses:
        raise click.UsageError("the admin must not be a relay signer on a live network")
    return admin, relay_addresses, rate_setter


@click.command(cls=ConnectedProviderCommand)
@account_option(prompt=False)
@click.option("--admin", help="Default admin and granter (required on a live network). Local default: the deployer.")
@click.option(
    "--relay",
    "relays",
    multiple=True,
    help="Relay signer (repeatable; required on a live network). Local default: the deployer.",
)
@click.option("--rate-setter", help="Holder of the rate-setter role. Default: the admin.")
@click.option(
    "--admin-delay", type=int, default=ADMIN_DELAY, show_default=True, help="Seconds an admin transfer waits."
)
@click.option(
    "--reward-cap",
    type=int,
    default=DEFAULT_LIMITS.reward_cap // UNIT,
    show_default=True,
    help="Purchase rewards per day, in points.",
)
@click.option(
    "--grant-cap",
    type=int,
    default=DEFAULT_LIMITS.grant_cap // UNIT,
    show_default=True,
    help="Grants per day, in points.",
)
@click.option(
    "--credit-limit",
    type=int,
    default=DEFAULT_LIMITS.credit_limit // UNIT,
    show_default=True,
    help="Each new shop's credit limit, in points.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation on a live network.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the deployment here instead.")
def cli(account, admin, relays, rate_setter, admin_delay, reward_cap, grant_cap, credit_limit, yes, out):
    local = networks.provider.network.name == "local"
    if not local and account is None:
        raise click.UsageError("--account is required on a live network")
    account = account or accounts.test_accounts[0]
    admin, relay_addresses, rate_setter = resolve_roles(local, account.address, admin, list(relays), rate_setter)
    if admin_delay < 0 or min(reward_cap, grant_cap, credit_limit) < 0:
        raise click.UsageError("delays, caps and limits cannot be negative")

    click.echo(f"Network: {networks.provider.network.choice}  deployer: {account.address}")
    click.echo(f"Admin (and granter): {admin}  admin transfer delay: {admin_delay} s")
    click.echo(f"Rate setter: {rate_setter}")
    click.echo(f"Relay signer(s): {', '.join(relay_addresses)}")
    limits = Limits(reward_cap * UNIT, grant_cap * UNIT, credit_limit * UNIT)
    if not local and not yes:
        click.confirm("Deploy and wire the contracts?", abort=True)

    start_block = chain.blocks.head.number + 1
    system = deploy_system(
        account, relay_addresses, admin=admin, rate_setter=rate_setter, admin_delay=admin_delay, limits=limits
    )
    path = write_deployment(deployment_name(), system, admin, rate_setter, relay_addresses, start_block, path=out)
    for name, contract in system.contracts().items():
        click.echo(f"  {name:15} {contract.address}")
    click.echo(f"Wrote {path}")
    if rate_setter != account.address:
        click.echo(f"Next: the rate setter {rate_setter} sets the currency rates (CurrencyRate.setRates).")
    if admin != account.address:
        click.echo(
            f"Next: the admin {admin} sets the reward and grant caps (Ledger.setRewardCap, setGrantCap) and the "
            "default credit limit (ShopRegistry.setDefaultCreditLimit); until then rewards and grants revert."
        )
