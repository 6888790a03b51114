"""Creates the demo fixture of DESIGN.md §8 on a local chain where `ape run deploy` has deployed:

    shop owner  test account 1   "Demo Shop", providePercent 1 %, provideWaitTime 0
    user        test account 2   1,000,000 points
    user        test account 3   10,000 THE9 tokens (loyaltyType 1)

and records the demo shop id in deployments/local.json.

    ape run demo_data --network ethereum:local:node
"""

import json
from pathlib import Path

import click
from ape import accounts, networks, project
from ape.cli import ConnectedProviderCommand
from eth_abi import encode
from eth_utils import keccak

from scripts._system import DEPLOYMENTS, UNIT, sign_next

SHOP_NAME = "Demo Shop"
PROVIDE_PERCENT = 100  # percent x 100: 1 %
POINT_USER_BALANCE = 1_000_000 * UNIT
TOKEN_USER_BALANCE = 10_000 * UNIT
RESERVE = 10_000_000 * UNIT


def demo_shop_id(owner: str) -> str:
    """Deterministic, so documentation and external tests can rely on it."""
    return "0x" + keccak(encode(["string", "address"], [SHOP_NAME, owner])).hex()


@click.command(cls=ConnectedProviderCommand)
@click.option("--deployment", type=click.Path(dir_okay=False), help="Deployment file (default deployments/local.json).")
def cli(deployment):
    if networks.provider.network.name != "local":
        raise click.UsageError("the demo fixture is for local networks only")
    path = Path(deployment) if deployment else DEPLOYMENTS / "local.json"
    data = json.loads(path.read_text())
    c = data["contracts"]
    token = project.LoyaltyToken.at(c["LoyaltyToken"])
    shops = project.ShopRegistry.at(c["ShopRegistry"])
    ledger = project.Ledger.at(c["Ledger"])
    admin, owner, point_user, token_user = accounts.test_accounts[:4]
    relay = admin  # the demo relay signer is the deployer

    shop_id = demo_shop_id(owner.address)
    if shops.shopCount() == 0:
        deadline = networks.provider.get_block("latest").timestamp + 3600
        fields = dict(shopId=shop_id, name=SHOP_NAME, provideWaitTime=0, providePercent=PROVIDE_PERCENT)
        sig = sign_next(owner, shops, "AddShop", deadline, **fields)
        shops.addShop(shop_id, SHOP_NAME, 0, PROVIDE_PERCENT, owner, deadline, sig, sender=relay)

        token.approve(ledger, RESERVE + TOKEN_USER_BALANCE, sender=admin)
        ledger.fundReserve(RESERVE, sender=admin)
        ledger.grant(point_user, POINT_USER_BALANCE, sender=admin)
        ledger.switchToToken(0, sender=token_user)
        ledger.deposit(token_user, TOKEN_USER_BALANCE, sender=admin)

    data["demo"] = {
        "shopId": shop_id,
        "shopName": SHOP_NAME,
        "shopOwner": owner.address,
        "pointUser": point_user.address,
        "tokenUser": token_user.address,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    click.echo(f"Demo shop {SHOP_NAME!r}: {shop_id} (owner {owner.address})")
    click.echo(f"Point user {point_user.address}: {ledger.accountOf(point_user)[1] / UNIT:,.0f} points")
    click.echo(f"Token user {token_user.address}: {ledger.accountOf(token_user)[1] / UNIT:,.0f} THE9")
