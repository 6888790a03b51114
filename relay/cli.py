"""`loyalty`: run the relay and manage it.

loyalty serve                      run the relay (settings from RELAY_* variables)
loyalty db upgrade                 apply database migrations
loyalty kiosk add --name N --shop 0x.. --callback-url URL
loyalty kiosk list | revoke ID
loyalty shop requests | approve SHOP_ID | reject SHOP_ID
loyalty devnet                     `make run`: anvil + contracts + demo data + relay
loyalty demo                       play flows 1.1-1.4 against a running devnet
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from relay.config import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Run the loyalty relay and manage it.")
kiosk_app = typer.Typer(no_args_is_help=True, help="KIOSK clients: access keys, shops, callbacks.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
pos_app = typer.Typer(no_args_is_help=True, help="KIOSK actions against a relay (as a point of sale).")
wallet_app = typer.Typer(no_args_is_help=True, help="Wallet actions against a relay, signed with a local key.")
shop_app = typer.Typer(no_args_is_help=True, help="Shop registrations waiting for the operator's approval.")
app.add_typer(kiosk_app, name="kiosk")
app.add_typer(db_app, name="db")
app.add_typer(pos_app, name="pos")
app.add_typer(wallet_app, name="wallet")
app.add_typer(shop_app, name="shop")

Url = Annotated[str, typer.Option("--url", envvar="LOYALTY_RELAY_URL", help="Relay base URL")]
AccessKey = Annotated[str, typer.Option("--access-key", envvar="LOYALTY_ACCESS_KEY", help="KIOSK access key")]
PrivateKey = Annotated[
    str, typer.Option("--key", envvar="LOYALTY_PRIVATE_KEY", help="Wallet private key (0x...)", show_default=False)
]
DEFAULT_URL = "http://127.0.0.1:8000"


def units(value: str) -> int:
    """'10.5' -> 10.5 x 10**18, exactly."""
    try:
        amount = Decimal(value) * 10**18
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not a number") from None
    if amount != amount.to_integral_value() or amount <= 0:
        raise typer.BadParameter(f"{value!r} must be positive with at most 18 decimals")
    return int(amount)


def show(result: BaseModel | dict[str, Any]) -> None:
    data = result.model_dump() if isinstance(result, BaseModel) else result
    typer.echo(json.dumps(data, indent=2))


def _call(fn: Any, *args: Any) -> Any:
    import httpx

    from loyalty_sdk import LoyaltyError

    try:
        return fn(*args)
    except LoyaltyError as exc:
        typer.echo(f"error {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except httpx.HTTPError as exc:
        typer.echo(f"cannot reach the relay: {exc}", err=True)
        raise typer.Exit(2) from None


def _db() -> Any:
    from relay import db as database

    settings = get_settings()
    database.upgrade(settings.database_url)
    return database.Database(settings.database_url)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (use PostgreSQL for more than one)")] = 1,
) -> None:
    """Runs the relay."""
    import uvicorn
    from sqlalchemy.engine import make_url

    if workers < 1:
        typer.echo("--workers must be at least 1", err=True)
        raise typer.Exit(2)
    if workers > 1 and make_url(get_settings().database_url).get_backend_name() == "sqlite":
        # Processes on one SQLite file would migrate it at once and contend for its single
        # writer; background work is made safe for several processes with PostgreSQL's row locks.
        typer.echo(
            f"--workers {workers} needs PostgreSQL (RELAY_DATABASE_URL=postgresql+psycopg://...); "
            "a SQLite database serves one process",
            err=True,
        )
        raise typer.Exit(2)

    # Idle keep-alive connections are kept longer than clients and load balancers keep theirs
    # (httpx 5 s, typical balancers 60 s): otherwise a client may send a request on a connection
    # the server is just closing, and see "connection reset" instead of an answer.
    uvicorn.run(
        "relay.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        timeout_keep_alive=65,
    )


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Applies all migrations to RELAY_DATABASE_URL / DATABASE_URL."""
    from relay import db as database

    database.upgrade(get_settings().database_url)
    typer.echo("database is up to date")


def new_callback_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class NewKiosk:
    id: int
    access_key: str
    callback_secret: str


def add_kiosk(
    session: Any,
    name: str,
    shops: list[str],
    callback_url: str | None,
    access_key: str | None = None,
    callback_secret: str | None = None,
) -> NewKiosk:
    """Stores a KIOSK client (its key as SHA-256) and the shops it may act for."""
    from relay.models import KioskClient, KioskShop

    access_key = access_key or "kk_" + secrets.token_urlsafe(32)
    secret = callback_secret or new_callback_secret()
    key_hash = hashlib.sha256(access_key.encode()).hexdigest()
    client = KioskClient(name=name, key_hash=key_hash, key_hint=access_key[:8], callback_url=callback_url,
                         callback_secret=secret)  # fmt: skip
    session.add(client)
    session.flush()
    session.add_all(KioskShop(kiosk_id=client.id, shop_id=shop) for shop in sorted({s.lower() for s in shops}))
    return NewKiosk(client.id, access_key, secret)


@kiosk_app.command("add")
def kiosk_add(
    name: Annotated[str, typer.Option(help="A name for operators")],
    shop: Annotated[list[str], typer.Option(help="Shop id the KIOSK may act for (repeatable)")],
    callback_url: Annotated[
        str | None, typer.Option(help="Where callbacks are POSTed (without one the KIOSK polls and is sent none)")
    ] = None,
    access_key: Annotated[str | None, typer.Option(help="Use this key instead of a random one")] = None,
) -> None:
    """Creates a KIOSK client and prints its access key and callback secret (shown once)."""
    from sqlalchemy.exc import IntegrityError

    from relay.services.kiosks import callback_url_problem

    if callback_url and (problem := callback_url_problem(callback_url, get_settings().allow_private_callbacks)):
        raise typer.BadParameter(problem, param_hint="--callback-url")
    if access_key is not None and len(access_key) < 20:  # operators see its first 8 characters
        raise typer.BadParameter("at least 20 characters (leave it out for a random key)", param_hint="--access-key")
    if bad := [s for s in shop if not re.fullmatch(r"0x[0-9a-fA-F]{64}", s)]:
        raise typer.BadParameter(f"{', '.join(map(repr, bad))}: a shop id is 0x and 64 hex digits", param_hint="--shop")
    try:
        with _db().session() as session:
            created = add_kiosk(session, name, shop, callback_url, access_key)
    except IntegrityError:
        raise typer.BadParameter("another KIOSK has this access key", param_hint="--access-key") from None
    typer.echo(f"kiosk id:        {created.id}")
    typer.echo(f"access key:      {created.access_key}")
    typer.echo(f"callback secret: {created.callback_secret}")


@kiosk_app.command("list")
def kiosk_list() -> None:
    """Lists KIOSK clients (never their keys)."""
    from sqlalchemy import select

    from relay.models import KioskClient, KioskShop

    with _db().session() as session:
        for client in session.scalars(select(KioskClient).order_by(KioskClient.id)):
            shops = session.scalars(select(KioskShop.shop_id).where(KioskShop.kiosk_id == client.id))
            state = "revoked" if client.revoked_at else "active"
            typer.echo(f"{client.id:4}  {client.name:20} {client.key_hint}…  {state:8} {client.callback_url or '-'}")
            for shop in shops:
                typer.echo(f"      shop {shop}")


@kiosk_app.command("revoke")
def kiosk_revoke(kiosk_id: int) -> None:
    """Revokes a KIOSK client's access key."""
    with _db().session() as session:
        if not revoke_kiosk(session, kiosk_id):
            typer.echo(f"no active KIOSK client {kiosk_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"revoked KIOSK client {kiosk_id}")


def revoke_kiosk(session: Any, kiosk_id: int) -> bool:
    from relay.models import KioskClient, now

    client = session.get(KioskClient, kiosk_id)
    if client is None or client.revoked_at is not None:
        return False
    client.revoked_at = now()
    return True


@shop_app.command("requests")
def shop_requests(
    status: Annotated[str, typer.Option(help="pending, approved or rejected")] = "pending",
) -> None:
    """Lists shop registrations (default: those waiting for approval), oldest first."""
    import time

    from relay.services import shops

    if status not in (shops.PENDING, shops.APPROVED, shops.REJECTED):
        raise typer.BadParameter("pending, approved or rejected", param_hint="--status")
    with _db().session() as session:
        for r in shops.registrations(session, status):
            requested = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.requested_at))
            typer.echo(f"{r.shop_id}  {r.owner}  {r.client_ip:15}  {requested} UTC  {r.name}")


def _decide(shop_id: str, approve: bool) -> None:
    import getpass

    from relay.services import shops

    with _db().session() as session:
        decided = shops.decide(session, shop_id.lower(), approve, f"cli:{getpass.getuser()}")
    if not decided:
        typer.echo(f"no registration of shop {shop_id} waits for approval", err=True)
        raise typer.Exit(1)
    typer.echo(f"{'approved' if approve else 'rejected'} shop {shop_id}")


@shop_app.command("approve")
def shop_approve(shop_id: str) -> None:
    """Approves a shop registration: the owner's next registration of it is sent (the relay pays its gas)."""
    _decide(shop_id, True)


@shop_app.command("reject")
def shop_reject(shop_id: str) -> None:
    """Rejects a shop registration: the owner's registrations of it are refused."""
    _decide(shop_id, False)


# ---------------------------------------------------------------- KIOSK (point of sale)


def _kiosk(url: str, access_key: str) -> Any:
    from loyalty_sdk import KioskClient

    return KioskClient(url, access_key)


@pos_app.command("balance")
def pos_balance(account: str, url: Url = DEFAULT_URL) -> None:
    """A wallet's (or temporary address's) loyalty balance."""
    show(_call(_kiosk(url, "").balance, account))


@pos_app.command("pay")
def pos_pay(
    purchase_id: str,
    amount: str,
    shop: Annotated[str, typer.Option(help="Shop id")],
    account: Annotated[str, typer.Option(help="Wallet or temporary address")],
    currency: str = "krw",
    access_key: AccessKey = "",
    url: Url = DEFAULT_URL,
) -> None:
    """Opens a new payment (the user then approves it in the app)."""
    show(_call(_kiosk(url, access_key).open_new, purchase_id, units(amount), currency, shop, account))


@pos_app.command("close")
def pos_close(
    payment_id: str,
    refund: Annotated[bool, typer.Option(help="Refund instead of completing")] = False,
    access_key: AccessKey = "",
    url: Url = DEFAULT_URL,
) -> None:
    """Completes (or refunds) an approved payment."""
    show(_call(_kiosk(url, access_key).close_new, payment_id, not refund))


@pos_app.command("cancel")
def pos_cancel(payment_id: str, access_key: AccessKey = "", url: Url = DEFAULT_URL) -> None:
    """Asks the shop owner to cancel a completed payment."""
    show(_call(_kiosk(url, access_key).open_cancel, payment_id))


@pos_app.command("close-cancel")
def pos_close_cancel(
    payment_id: str,
    revert: Annotated[bool, typer.Option(help="Keep the payment instead of refunding it")] = False,
    access_key: AccessKey = "",
    url: Url = DEFAULT_URL,
) -> None:
    """Completes an approved cancel (refunds the user)."""
    show(_call(_kiosk(url, access_key).close_cancel, payment_id, not revert))


@pos_app.command("purchase")
def pos_purchase(
    purchase_id: str,
    amount: str,
    shop: Annotated[str, typer.Option(help="Shop id")],
    account: Annotated[str, typer.Option(help="Wallet or temporary address")],
    currency: str = "krw",
    access_key: AccessKey = "",
    url: Url = DEFAULT_URL,
) -> None:
    """Reports a purchase paid without loyalty; it earns the shop's reward."""
    show(_call(_kiosk(url, access_key).report_purchase, purchase_id, units(amount), currency, shop, account))


@app.command("shops")
def shops(shop_id: str, url: Url = DEFAULT_URL) -> None:
    """A shop's settings, totals and withdrawal in progress."""
    kiosk = _kiosk(url, "")
    show(_call(kiosk.shop_info, shop_id).model_dump() | _call(kiosk.shop_withdrawal, shop_id).model_dump())


# ---------------------------------------------------------------- wallet (app)


def _wallet(url: str, key: str) -> Any:
    from loyalty_sdk import AppClient

    if not key:
        raise typer.BadParameter("a private key is required (--key or LOYALTY_PRIVATE_KEY)")
    return AppClient(url, key)


@wallet_app.command("item")
def wallet_item(payment_id: str, url: Url = DEFAULT_URL) -> None:
    """A payment, with the typed data to sign if a decision is pending."""
    from loyalty_sdk import AppClient

    show(_call(AppClient(url, "0x" + "11" * 32).item, payment_id))


@wallet_app.command("approve")
def wallet_approve(payment_id: str, key: PrivateKey = "", url: Url = DEFAULT_URL) -> None:
    """Approves a pending payment (as its user) or cancel (as the shop owner)."""
    show(_call(_wallet(url, key).approve, payment_id))


@wallet_app.command("deny")
def wallet_deny(payment_id: str, key: PrivateKey = "", url: Url = DEFAULT_URL) -> None:
    """Denies a pending payment or cancel."""
    show(_call(_wallet(url, key).deny, payment_id))


@wallet_app.command("temporary")
def wallet_temporary(key: PrivateKey = "", url: Url = DEFAULT_URL) -> None:
    """A temporary address for the payment QR code."""
    show(_call(_wallet(url, key).temporary_account))


@wallet_app.command("withdraw")
def wallet_withdraw(
    shop: str,
    amount: Annotated[str | None, typer.Argument(help="Points to withdraw; omit to complete the open one")] = None,
    key: PrivateKey = "",
    url: Url = DEFAULT_URL,
) -> None:
    """As a shop owner: registers a withdrawal, or (without AMOUNT) completes the open one."""
    wallet = _wallet(url, key)
    if amount is None:
        show(_call(wallet.close_withdrawal, shop))
    else:
        show(_call(wallet.open_withdrawal, shop, units(amount)))


@app.command()
def devnet() -> None:
    """Starts anvil, deploys, creates the demo data and serves the relay (what `make run` does)."""
    from relay import devnet as run

    run.main()


@app.command()
def demo(base_url: str = "http://127.0.0.1:8000") -> None:
    """Plays flows 1.1-1.4 against a running devnet, as a KIOSK and the app would."""
    from relay import demo as play

    play.main(base_url)


if __name__ == "__main__":
    app()
