"""A JavaScript wallet signs the typed data exactly as the relay serves it: the raw JSON text of the
response goes through `JSON.parse` and ethers v6's `signTypedData` under Node
(tests/relay/js/sign.mjs; ethers from the repository's node_modules, node from PATH), and the relay
accepts the signature. A JavaScript KIOSK server verifies every callback with the npm package
standardwebhooks (tests/relay/js/verify_webhook.mjs)."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from eth_account import Account

from relay.devnet import anvil_key
from relay.models import PaymentStatus as S
from tests.relay.approval import PENDING, approve
from tests.relay.checks import balance_of, call, decide, item, kiosk_post, ok, open_new, sqlite_only
from tests.relay.conftest import OWNER, ROOT, UNIT, wait_until

pytestmark = sqlite_only

SIGN = Path(__file__).resolve().parent / "js" / "sign.mjs"
VERIFY = SIGN.with_name("verify_webhook.mjs")
TEN_KRW = 10 * UNIT
FEE = TEN_KRW // 20


def node(script: Path, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("node")
    assert executable is not None, "node is not on PATH"
    return subprocess.run(
        [executable, str(script), *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def ethers_sign(key: str, response: str, path: str = "data.typedData.confirm") -> subprocess.CompletedProcess[str]:
    """sign.mjs run on a response's text; `path` names the typed-data document in it."""
    return node(SIGN, key, path, stdin=response)


def signature_of(key: str, response: str, path: str = "data.typedData.confirm") -> str:
    signed = ethers_sign(key, response, path)
    assert signed.returncode == 0, signed.stderr
    return signed.stdout.strip()


def served_item(relay, payment_id: str) -> str:
    response = call(relay.url, "GET", "/v1/payment/item", params={"paymentId": payment_id})
    assert response.status_code == 200, response.text
    return response.text


def test_ethers_v6__signs_the_served_payment_and_cancel__both_accepted_and_completed(relay, kiosk, shop_id, new_wallet):
    wallet = new_wallet(relay, 100 * UNIT)
    user_key = "0x" + bytes(wallet.account.key).hex()
    payment_id = ok(
        open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, wallet.address)
    )["paymentId"]

    approved = ok(
        decide(relay.url, "create/confirm", payment_id, signature_of(user_key, served_item(relay, payment_id)))
    )
    assert approved["paymentStatus"] == S.APPROVED and approved["txHash"]
    assert ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, payment_id))["paymentStatus"] == S.COMPLETED
    assert balance_of(relay.url, wallet.address) == 100 * UNIT - TEN_KRW - FEE

    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, payment_id))
    signature = signature_of(anvil_key(OWNER), served_item(relay, payment_id))
    assert ok(decide(relay.url, "cancel/confirm", payment_id, signature))["paymentStatus"] == S.CANCEL_APPROVED
    assert ok(kiosk_post(relay.url, "closeCancel", kiosk.access_key, payment_id))["paymentStatus"] == S.CANCEL_COMPLETED
    assert balance_of(relay.url, wallet.address) == 100 * UNIT


def test_ethers_v6__signs_the_served_shop_document__shop_added(relay):
    owner = Account.create()
    shop_id = "0x" + secrets.token_hex(32)
    fields = {"shopId": shop_id, "name": "JS Shop", "provideWaitTime": 0, "providePercent": 100}
    served = call(
        relay.url, "GET", "/v1/payment/shop/typedData", params={"action": "AddShop", "account": owner.address, **fields}
    )
    assert served.status_code == 200, served.text
    deadline = json.loads(served.text)["data"]["message"]["deadline"]
    assert isinstance(deadline, str) and int(deadline) > time.time()

    body = {
        **fields,
        "account": owner.address,
        "deadline": int(deadline),
        "signature": signature_of("0x" + bytes(owner.key).hex(), served.text, "data"),
    }
    pending = call(relay.url, "POST", "/v1/payment/shop/add", json=body)
    assert (pending.status_code, pending.json()["code"]) == (409, PENDING), pending.text
    approve(relay, shop_id)  # the operator's approval: the same signed registration is then sent
    added = ok(call(relay.url, "POST", "/v1/payment/shop/add", json=body))
    assert (added["shopId"], added["account"]) == (shop_id, owner.address)


def test_ethers_v6__an_amount_served_as_a_json_number__refused(relay, kiosk, shop_id, user):
    """What the relay served before: `message.amount` as a JSON number. JSON.parse makes it a
    float beyond 2**53, which ethers refuses (and a wallet that rounded it would sign another
    amount)."""
    payment_id = ok(open_new(relay.url, kiosk.access_key, f"P-{secrets.token_hex(6)}", TEN_KRW, shop_id, user.address))[
        "paymentId"
    ]
    response = json.loads(served_item(relay, payment_id))
    message = response["data"]["typedData"]["confirm"]["message"]
    message["amount"] = int(message["amount"])

    signed = ethers_sign("0x" + bytes(user.account.key).hex(), json.dumps(response))

    assert signed.returncode != 0 and "overflow" in signed.stderr
    assert item(relay.url, payment_id)["paymentStatus"] == S.NEW


def js_verified(secret: str, body: str, headers: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return node(VERIFY, stdin=json.dumps({"secret": secret, "body": body, "headers": headers}))


def test_standardwebhooks_js__verifies_every_callback_of_the_flows__refuses_a_changed_one(
    relay, make_kiosk, callbacks, shop_id, new_wallet
):
    kiosk = make_kiosk(relay, [shop_id])
    wallet = new_wallet(relay, 100 * UNIT)
    user_key = "0x" + bytes(wallet.account.key).hex()

    def opened() -> str:
        purchase = f"P-{secrets.token_hex(6)}"
        return str(ok(open_new(relay.url, kiosk.access_key, purchase, TEN_KRW, shop_id, wallet.address))["paymentId"])

    paid = opened()  # approved (create 0), then cancelled with the owner's approval (cancel 0)
    decide(relay.url, "create/confirm", paid, signature_of(user_key, served_item(relay, paid)))
    ok(kiosk_post(relay.url, "closeNew", kiosk.access_key, paid))
    ok(kiosk_post(relay.url, "openCancel", kiosk.access_key, paid))
    decide(relay.url, "cancel/confirm", paid, signature_of(anvil_key(OWNER), served_item(relay, paid)))
    denied = opened()  # denied by the user (create 1001)
    decide(relay.url, "create/deny", denied, signature_of(user_key, served_item(relay, denied), "data.typedData.deny"))

    expected = {(paid, "create", 0), (paid, "cancel", 0), (denied, "create", 1001)}

    def delivered() -> list[Any]:
        return [r for r in callbacks.received if r.path == kiosk.name]

    wait_until(lambda: {(r.json["data"]["paymentId"], r.json["type"], r.json["code"]) for r in delivered()} >= expected)
    for received in delivered():
        verified = js_verified(kiosk.secret, received.body, received.headers)
        assert verified.returncode == 0, verified.stderr
        assert json.loads(verified.stdout) == received.json

    last = delivered()[-1]
    changed = last.body.replace('"code":', '"code": ', 1) if '"code":' in last.body else last.body + " "
    for body, secret in ((changed, kiosk.secret), (last.body, "whsec_" + base64.b64encode(b"another").decode())):
        refused = js_verified(secret, body, last.headers)
        assert refused.returncode != 0 and "No matching signature" in refused.stderr, refused
