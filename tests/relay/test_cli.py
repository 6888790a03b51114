"""`loyalty kiosk add | list | revoke`, run as an operator would, against a new database that a
relay then serves."""

from __future__ import annotations

import os
import re
import secrets
import subprocess

import httpx
import pytest

from loyalty_sdk import AppClient
from relay.cli import add_kiosk
from relay.db import Database, upgrade
from relay.devnet import anvil_key
from relay.models import Callback, KioskClient
from tests.relay.checks import fails, ok, open_new, session_of
from tests.relay.conftest import BIN, POINT_USER, ROOT, UNIT, wait_until


def _loyalty(db_url, *args, expect=0, private_callbacks=True):
    result = subprocess.run(
        [str(BIN / "loyalty"), *args],
        cwd=ROOT,
        env=os.environ | {"RELAY_DATABASE_URL": db_url, "RELAY_ALLOW_PRIVATE_CALLBACKS": str(private_callbacks)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == expect, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def serve(start_relay):
    """Starts a relay on a given database; it is stopped when the test ends."""
    started = []

    def serve(db_url):
        started.append(start_relay("cli", db_url=db_url))
        return started[-1]

    yield serve
    for relay in started:
        relay.stop()


def test_kiosk_cli__add_list_revoke(new_database, serve, shop_id, callbacks):
    db_url = new_database("sqlite")
    name = f"cli-kiosk-{secrets.token_hex(3)}"

    added = _loyalty(db_url, "kiosk", "add", "--name", name, "--shop", shop_id, "--callback-url", callbacks.url(name))

    kiosk_id = re.search(r"kiosk id:\s+(\d+)", added).group(1)
    access_key = re.search(r"access key:\s+(\S+)", added).group(1)
    secret = re.search(r"callback secret:\s+(whsec_\S+)", added).group(1)
    callbacks.url(name, secret)  # the receiver checks signatures with the printed secret
    relay = serve(db_url)

    # The printed key works, in the body and as a bearer token, and callbacks are signed with the secret.
    user = AppClient(relay.url, anvil_key(POINT_USER))
    opened = ok(open_new(relay.url, access_key, "P-cli-1", 10 * UNIT, shop_id, user.address))
    bearer = {"Authorization": f"Bearer {access_key}"}
    ok(open_new(relay.url, None, "P-cli-2", 10 * UNIT, shop_id, user.address, headers=bearer))
    print("OPENED", opened["paymentId"], opened["paymentStatus"])
    user.deny(opened["paymentId"])
    print("ITEM", httpx.get(f"{relay.url}/v1/payment/item", params={"paymentId": opened["paymentId"]}).text[:200])
    [callback] = callbacks.wait_for(opened["paymentId"])
    assert callback.verified and callback.path == name

    listed = _loyalty(db_url, "kiosk", "list")
    assert name in listed and "active" in listed and shop_id in listed
    assert access_key not in listed and access_key[8:] not in listed and secret not in listed

    revoked = _loyalty(db_url, "kiosk", "revoke", kiosk_id)
    assert f"revoked KIOSK client {kiosk_id}" in revoked

    fails(open_new(relay.url, access_key, "P-cli-3", 10 * UNIT, shop_id, user.address), 401, 1001)
    fails(open_new(relay.url, None, "P-cli-4", 10 * UNIT, shop_id, user.address, headers=bearer), 401, 1001)
    listed = _loyalty(db_url, "kiosk", "list")
    assert "revoked" in listed and "active" not in listed
    assert "no active KIOSK client" in _loyalty(db_url, "kiosk", "revoke", kiosk_id, expect=1)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://127.0.0.1:70/x", "http:// or https://"),
        ("not a url", "http:// or https://"),
        ("http://169.254.169.254/latest/meta-data", "non-public address 169.254.169.254"),
        ("http://127.0.0.1:5432/", "non-public address 127.0.0.1"),
        ("http://10.1.2.3/cb", "non-public address 10.1.2.3"),
        ("http://[::1]/cb", "non-public address ::1"),
        ("http://localhost/cb", "non-public address"),
    ],
)
def test_kiosk_cli__callback_url_not_public_http__refused_and_nothing_written(new_database, url, why):
    db_url = new_database("sqlite")
    upgrade(db_url)
    args = ("kiosk", "add", "--name", "k", "--shop", "0x" + "ab" * 32, "--callback-url", url)

    output = _loyalty(db_url, *args, expect=2, private_callbacks=False).replace("│", " ")
    assert why in " ".join(output.split())  # as typer wraps it in a box
    with Database(db_url).session() as session:
        assert session.query(KioskClient).count() == 0


def test_kiosk_cli__public_callback_url__accepted(new_database):
    db_url = new_database("sqlite")
    args = ("kiosk", "add", "--name", "k", "--shop", "0x" + "ab" * 32, "--callback-url", "https://93.184.216.34/cb")

    assert "access key:" in _loyalty(db_url, *args, private_callbacks=False)


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--shop", "foo"), "a shop id is 0x and 64 hex digits"),
        (("--shop", "0x" + "ab" * 32, "--access-key", "short"), "at least 20 characters"),
        (
            ("--shop", "0x" + "ab" * 32, "--access-key", "the-same-key-for-two-kiosks"),
            "another KIOSK has this access key",
        ),
    ],
    ids=["shop-id", "short-key", "duplicate-key"],
)
def test_kiosk_cli__bad_shop_id_short_or_taken_access_key__refused_with_a_message(new_database, args, why):
    db_url = new_database("sqlite")
    upgrade(db_url)
    _loyalty(
        db_url,
        "kiosk",
        "add",
        "--name",
        "first",
        "--shop",
        "0x" + "cd" * 32,
        "--access-key",
        "the-same-key-for-two-kiosks",
    )

    output = _loyalty(db_url, "kiosk", "add", "--name", "k", *args, expect=2).replace("│", " ")

    assert why in " ".join(output.split()) and "Traceback" not in output
    with Database(db_url).session() as session:
        assert session.query(KioskClient).count() == 1


def test_serve_refuses_several_workers_on_sqlite(tmp_path):
    """Several processes on one SQLite file would migrate it at once and contend for its writer:
    refused with a clear message before anything starts (the database is not even created)."""
    db = tmp_path / "relay.sqlite3"
    out = _loyalty(f"sqlite:///{db}", "serve", "--workers", "2", "--port", "1", expect=2)
    assert "--workers 2 needs PostgreSQL" in out
    out = _loyalty(f"sqlite:///{db}", "serve", "--workers", "0", "--port", "1", expect=2)
    assert "--workers must be at least 1" in out
    assert not db.exists()


def test_callback_to_a_non_public_address__checked_again_when_sent__never_posted(
    new_database, start_relay, shop_id, callbacks
):
    """A KIOSK stored with a loopback callback URL (added while that was allowed, or a name that
    resolves elsewhere since): a relay that does not allow them records why and sends nothing."""
    db_url = new_database("sqlite")
    upgrade(db_url)
    name = f"private-{secrets.token_hex(3)}"
    db = Database(db_url)
    with db.session() as session:
        created = add_kiosk(session, name, [shop_id], callbacks.url(name))
    db.engine.dispose()
    relay = start_relay("no-private-callbacks", db_url=db_url, allow_private_callbacks=False)
    user = AppClient(relay.url, anvil_key(POINT_USER))
    opened = ok(open_new(relay.url, created.access_key, f"P-{secrets.token_hex(3)}", 10 * UNIT, shop_id, user.address))

    user.deny(opened["paymentId"])

    def refused() -> str | None:
        with session_of(relay) as session:
            return session.query(Callback.last_error).filter_by(payment_id=opened["paymentId"]).scalar()

    assert "non-public address 127.0.0.1" in wait_until(refused)
    assert callbacks.for_payment(opened["paymentId"]) == []
