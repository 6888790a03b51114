"""`loyalty`: run the relay and manage it.

loyalty serve                      run the relay (settings from RELAY_* variables)
loyalty db upgrade                 apply database migrations
loyalty kiosk add --name N --shop 0x.. --callback-url URL
loyalty kiosk list | revoke ID
loyalty devnet                     `make run`: anvil + contracts + demo data + relay
loyalty demo                       play flows 1.1-1.4 against a running devnet
"""

from __future__ import annotations

from typing import Annotated

import typer

from relay import db as database
from relay import kiosks
from relay.config import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
kiosk_app = typer.Typer(no_args_is_help=True, help="KIOSK clients: access keys, shops, callbacks.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(kiosk_app, name="kiosk")
app.add_typer(db_app, name="db")


def _db() -> database.Database:
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

    uvicorn.run("relay.main:create_app", factory=True, host=host, port=port, workers=workers, log_level="warning")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Applies all migrations to RELAY_DATABASE_URL / DATABASE_URL."""
    database.upgrade(get_settings().database_url)
    typer.echo("database is up to date")


@kiosk_app.command("add")
def kiosk_add(
    name: Annotated[str, typer.Option(help="A name for operators")],
    shop: Annotated[list[str], typer.Option(help="Shop id the KIOSK may act for (repeatable)")],
    callback_url: Annotated[str | None, typer.Option(help="Where callbacks are POSTed")] = None,
    access_key: Annotated[str | None, typer.Option(help="Use this key instead of a random one")] = None,
) -> None:
    """Creates a KIOSK client and prints its access key and callback secret (shown once)."""
    with _db().session() as session:
        created = kiosks.add(session, name, shop, callback_url, access_key)
    typer.echo(f"kiosk id:        {created.kiosk.id}")
    typer.echo(f"access key:      {created.access_key}")
    typer.echo(f"callback secret: {created.callback_secret}")


@kiosk_app.command("list")
def kiosk_list() -> None:
    """Lists KIOSK clients (never their keys)."""
    with _db().session() as session:
        for client, shops in kiosks.list_all(session):
            state = "revoked" if client.revoked_at else "active"
            typer.echo(f"{client.id:4}  {client.name:20} {client.key_hint}…  {state:8} {client.callback_url or '-'}")
            for shop in shops:
                typer.echo(f"      shop {shop}")


@kiosk_app.command("revoke")
def kiosk_revoke(kiosk_id: int) -> None:
    """Revokes a KIOSK client's access key."""
    with _db().session() as session:
        if not kiosks.revoke(session, kiosk_id):
            typer.echo(f"no active KIOSK client {kiosk_id}", err=True)
            raise typer.Exit(1)
    typer.echo(f"revoked KIOSK client {kiosk_id}")


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
