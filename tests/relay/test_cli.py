"""`loyalty kiosk add | list | revoke`, run as an operator would, against a new database that a
relay then serves."""

from __future__ import annotations

import os
import re
import secrets
import subprocess

import pytest

from loyalty_sdk import AppClient
from relay.devnet import anvil_key
from tests.relay.checks import fails, ok, open_new
from tests.relay.conftest import BIN, POINT_USER, ROOT, UNIT


def _loyalty(db_url, *args, expect=0):
    result = subprocess.run(
        [str(BIN / "loyalty"), *args],
        cwd=ROOT,
        env=os.environ | {"RELAY_DATABASE_URL": db_url},
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
    user.deny(opened["paymentId"])
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


def test_serve_refuses_several_workers_on_sqlite(tmp_path):
    """Several processes on one SQLite file would migrate it at once and contend for its writer:
    refused with a clear message before anything starts (the database is not even created)."""
    db = tmp_path / "relay.sqlite3"
    out = _loyalty(f"sqlite:///{db}", "serve", "--workers", "2", "--port", "1", expect=2)
    assert "--workers 2 needs PostgreSQL" in out
    out = _loyalty(f"sqlite:///{db}", "serve", "--workers", "0", "--port", "1", expect=2)
    assert "--workers must be at least 1" in out
    assert not db.exists()
