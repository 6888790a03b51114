"""The `loyalty pos` / `loyalty wallet` / `loyalty shops` commands drive a payment end to end."""

from __future__ import annotations

import json
import subprocess

import pytest

from relay.devnet import anvil_key
from tests.relay.conftest import BIN, OWNER, POINT_USER, SIGNERS, address


@pytest.fixture(scope="module")
def cli_relay(start_relay):
    return start_relay("cli", signer=SIGNERS["spare"])


def loyalty(relay, *args: str, key: str | None = None, access_key: str | None = None, ok: bool = True):
    env = {"LOYALTY_RELAY_URL": relay.url, "PATH": str(BIN), "COLUMNS": "300", "NO_COLOR": "1"}
    if key:
        env["LOYALTY_PRIVATE_KEY"] = key
    if access_key:
        env["LOYALTY_ACCESS_KEY"] = access_key
    result = subprocess.run([str(BIN / "loyalty"), *args], env=env, capture_output=True, text=True)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return json.loads(result.stdout) if ok else result.stderr


def test_cli__pay_approve_close_cancel__through_the_relay(cli_relay, make_kiosk, shop_id):
    kiosk = make_kiosk(cli_relay, [shop_id])
    user = address(POINT_USER)
    before = int(loyalty(cli_relay, "pos", "balance", user)["balance"])

    opened = loyalty(
        cli_relay, "pos", "pay", "CLI-1", "10.5", "--shop", shop_id, "--account", user, access_key=kiosk.access_key
    )
    assert opened["paymentStatus"] == 1 and opened["amount"] == str(105 * 10**17)
    approved = loyalty(cli_relay, "wallet", "approve", opened["paymentId"], key=anvil_key(POINT_USER))
    assert approved["paymentStatus"] == 2
    closed = loyalty(cli_relay, "pos", "close", opened["paymentId"], access_key=kiosk.access_key)
    assert closed["paymentStatus"] == 4
    after = int(loyalty(cli_relay, "pos", "balance", user)["balance"])
    assert before - after == 105 * 10**17 * 105 // 100  # amount + 5 % fee

    loyalty(cli_relay, "pos", "cancel", opened["paymentId"], access_key=kiosk.access_key)
    # The user cannot approve the owner's decision.
    error = loyalty(cli_relay, "wallet", "approve", opened["paymentId"], key=anvil_key(POINT_USER), ok=False)
    assert "belongs to" in error
    loyalty(cli_relay, "wallet", "approve", opened["paymentId"], key=anvil_key(OWNER))
    assert (
        loyalty(cli_relay, "pos", "close-cancel", opened["paymentId"], access_key=kiosk.access_key)["paymentStatus"]
        == 8
    )
    assert int(loyalty(cli_relay, "pos", "balance", user)["balance"]) == before

    shop = loyalty(cli_relay, "shops", shop_id)
    assert shop["shopId"] == shop_id and shop["withdrawStatus"] in (0, 1)


def test_cli__bad_amount_and_relay_errors__exit_non_zero_with_message(cli_relay, make_kiosk, shop_id):
    kiosk = make_kiosk(cli_relay, [shop_id])
    error = loyalty(
        cli_relay,
        "pos",
        "pay",
        "CLI-2",
        "1.0000000000000000001",
        "--shop",
        shop_id,
        "--account",
        address(POINT_USER),
        access_key=kiosk.access_key,
        ok=False,
    )
    assert "at most 18 decimals" in error
    error = loyalty(
        cli_relay,
        "pos",
        "pay",
        "CLI-2",
        "1",
        "--shop",
        shop_id,
        "--account",
        address(POINT_USER),
        access_key="wrong-key",
        ok=False,
    )
    assert "error 1001" in error
