"""A JavaScript wallet (ethers v6 under Node, tests/relay/js/session.mjs) opens a session the way the
Expo app does, and its token shows the wallet its own payment opened through a temporary address."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.relay.checks import item, ok, open_new, sqlite_only
from tests.relay.conftest import ROOT, UNIT

pytestmark = sqlite_only

SESSION = Path(__file__).resolve().parent / "js" / "session.mjs"


def test_ethers_v6__signs_an_app_session__its_token_reads_the_wallet_s_own_payment(
    relay, kiosk, shop_id, new_wallet, purchase_id
):
    wallet = new_wallet(relay, 100 * UNIT)
    temporary = wallet.temporary_account().temporaryAccount
    payment_id = ok(open_new(relay.url, kiosk.access_key, purchase_id, 10 * UNIT, shop_id, temporary))["paymentId"]
    assert item(relay.url, payment_id)["account"] == temporary
    node = shutil.which("node")
    assert node is not None, "node is not on PATH"

    ran = subprocess.run(
        [node, str(SESSION), "0x" + bytes(wallet.account.key).hex(), relay.url, payment_id],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )

    assert ran.returncode == 0, ran.stderr
    answers = json.loads(ran.stdout)
    assert answers["session"]["code"] == 0 and answers["session"]["data"]["account"] == wallet.address, answers
    own = answers["item"]["data"]
    assert own["account"] == wallet.address and own["typedData"]["confirm"]["message"]["account"] == wallet.address
    wallet.deny(payment_id)
