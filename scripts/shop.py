"""Registers, updates or hands over a shop: the owner signs the EIP-712 action, a relay account submits it.

    ape run shop add --network ethereum:local:node --owner TEST::1 --name "My Shop" --percent 100 --wait 0
    ape run shop update --network ethereum:local:node --owner TEST::1 --shop-id 0x.. --name "My Shop" --percent 200
    ape run shop transfer --network ethereum:local:node --owner TEST::1 --shop-id 0x.. --new-owner 0x..
    ape run shop accept --network ethereum:local:node --owner NEW_OWNER_ALIAS --shop-id 0x..

On a local network the relay account defaults to test account 0; elsewhere pass --relay-account.
The shop id defaults to keccak256(abi.encode(name, owner)).
"""

import json
import time

import click
from ape import accounts, networks, project
from ape.cli import ConnectedProviderCommand, account_option
from eth_abi import encode
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from relay import typed_data
from scripts._system import DEPLOYMENTS, domain_of


def _registry(deployment: str | None):
    path = deployment or DEPLOYMENTS / "local.json"
    return project.ShopRegistry.at(json.loads(open(path).read())["contracts"]["ShopRegistry"])


def _sign(owner, shops, primary_type: str, message: dict) -> str:
    typed = typed_data.build(primary_type, domain_of(shops), message)
    signable = encode_typed_data(full_message=typed)
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    signature = owner.sign_raw_msghash(digest)
    if signature is None:
        raise click.ClickException(f"{owner.alias or owner.address} cannot sign raw hashes")
    return "0x" + signature.encode_rsv().hex()


def _sender(relay_account):
    if relay_account is not None:
        return relay_account
    if networks.provider.network.name != "local":
        raise click.UsageError("--relay-account is required on a live network")
    return accounts.test_accounts[0]


owner_option = account_option("--owner", prompt=False)
relay_option = account_option("--relay-account", prompt=False)
common = [
    click.option("--name", required=True, help="Shop name"),
    click.option("--percent", type=click.IntRange(0, 10_000), default=100, help="Reward rate, percent x 100"),
    click.option("--wait", type=click.IntRange(0, 2**32 - 1), default=0, help="Seconds before a reward"),
    click.option("--deployment", type=click.Path(dir_okay=False), help="Deployment file"),
]


def with_common(fn):
    for option in reversed(common):
        fn = option(fn)
    return fn


@click.group()
def cli():
    """Shop registry actions signed by the shop owner."""


@cli.command(cls=ConnectedProviderCommand)
@owner_option
@relay_option
@click.option("--shop-id", help="0x-prefixed 32-byte id (default: derived from name and owner)")
@with_common
def add(owner, relay_account, shop_id, name, percent, wait, deployment):
    """Registers a shop owned by --owner."""
    if owner is None:
        raise click.UsageError("--owner is required")
    shops = _registry(deployment)
    shop_id = shop_id or "0x" + keccak(encode(["string", "address"], [name, owner.address])).hex()
    deadline = int(time.time()) + 600
    message = {
        "shopId": shop_id,
        "name": name,
        "provideWaitTime": wait,
        "providePercent": percent,
        "account": owner.address,
        "nonce": shops.nonces(owner),
        "deadline": deadline,
    }
    signature = _sign(owner, shops, "AddShop", message)
    shops.addShop(shop_id, name, wait, percent, owner, deadline, signature, sender=_sender(relay_account))
    click.echo(f"Shop {name!r} registered: {shop_id}")


@cli.command(cls=ConnectedProviderCommand)
@owner_option
@relay_option
@click.option("--shop-id", required=True)
@with_common
def update(owner, relay_account, shop_id, name, percent, wait, deployment):
    """Changes a shop's name and reward settings."""
    if owner is None:
        raise click.UsageError("--owner is required")
    shops = _registry(deployment)
    deadline = int(time.time()) + 600
    message = {
        "shopId": shop_id,
        "name": name,
        "provideWaitTime": wait,
        "providePercent": percent,
        "account": owner.address,
        "nonce": shops.nonces(owner),
        "deadline": deadline,
    }
    signature = _sign(owner, shops, "UpdateShop", message)
    shops.updateShop(shop_id, name, wait, percent, deadline, signature, sender=_sender(relay_account))
    click.echo(f"Shop {shop_id} updated")


@cli.command(cls=ConnectedProviderCommand)
@owner_option
@relay_option
@click.option("--shop-id", required=True)
@click.option("--new-owner", required=True, help="The next owner's address (the zero address withdraws a transfer)")
@click.option("--deployment", type=click.Path(dir_okay=False), help="Deployment file")
def transfer(owner, relay_account, shop_id, new_owner, deployment):
    """Names the shop's next owner; the shop moves when that owner accepts (`accept`)."""
    if owner is None:
        raise click.UsageError("--owner is required (the current owner)")
    shops = _registry(deployment)
    deadline = int(time.time()) + 600
    message = {
        "shopId": shop_id,
        "newOwner": new_owner,
        "account": owner.address,
        "nonce": shops.nonces(owner),
        "deadline": deadline,
    }
    signature = _sign(owner, shops, "TransferShop", message)
    shops.transferShop(shop_id, new_owner, deadline, signature, sender=_sender(relay_account))
    click.echo(f"Shop {shop_id}: {new_owner} may now accept it")


@cli.command(cls=ConnectedProviderCommand)
@owner_option
@relay_option
@click.option("--shop-id", required=True)
@click.option("--deployment", type=click.Path(dir_okay=False), help="Deployment file")
def accept(owner, relay_account, shop_id, deployment):
    """Accepts a shop the current owner handed over to --owner."""
    if owner is None:
        raise click.UsageError("--owner is required (the new owner)")
    shops = _registry(deployment)
    deadline = int(time.time()) + 600
    message = {"shopId": shop_id, "account": owner.address, "nonce": shops.nonces(owner), "deadline": deadline}
    signature = _sign(owner, shops, "AcceptShop", message)
    shops.acceptShop(shop_id, deadline, signature, sender=_sender(relay_account))
    click.echo(f"Shop {shop_id} now belongs to {owner.address}")
