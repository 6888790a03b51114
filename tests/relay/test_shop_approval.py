"""Shop onboarding the relay pays gas for waits for the operator (issue 22): a valid registration
signed by any key sends nothing until the operator approves it, over HTTP against relay processes;
pending requests are bounded per owner and per client IP; a taken or rejected shop id is refused;
`RELAY_SHOP_APPROVAL=false` (a private deployment) registers at once."""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

import httpx
import pytest
from eth_account import Account

from loyalty_sdk import AppClient
from tests.relay.checks import call, fails, ok
from tests.relay.conftest import BIN, SIGNERS, address

PASSWORD = "op-" + secrets.token_hex(8)
SIGNER = address(SIGNERS["spare"])


@pytest.fixture(scope="module")
def approval_relay(start_relay):
    return start_relay("approval", signer=SIGNERS["spare"], admin_password=PASSWORD)


def new_shop_id() -> str:
    return "0x" + secrets.token_hex(32)


def signed_add(relay: Any, owner: AppClient, shop_id: str, name: str = "Corner Shop") -> dict[str, Any]:
    """An AddShop body signed by `owner` over the document the relay serves."""
    fields = {"shopId": shop_id, "name": name, "provideWaitTime": 0, "providePercent": 100}
    query = {"action": "AddShop", "account": owner.address, **fields}
    typed = ok(call(relay.url, "GET", "/v1/payment/shop/typedData", params=query))
    deadline = int(typed["message"]["deadline"])
    return {**fields, "account": owner.address, "deadline": deadline, "signature": owner.sign(typed)}


def add(relay: Any, body: dict[str, Any], client_ip: str = "198.51.100.1") -> httpx.Response:
    # The relay runs behind uvicorn's proxy-header handling, which trusts 127.0.0.1: each test picks
    # the client address the relay sees.
    return call(relay.url, "POST", "/v1/payment/shop/add", json=body, headers={"X-Forwarded-For": client_ip})


def rpc(relay: Any, method: str, *params: Any) -> int:
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    return int(httpx.post(relay.env["RELAY_RPC_URL"], json=request).json()["result"], 16)


def signer_state(relay: Any) -> tuple[int, int]:
    return rpc(relay, "eth_getBalance", SIGNER, "latest"), rpc(relay, "eth_getTransactionCount", SIGNER, "latest")


def loyalty(relay: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"RELAY_DATABASE_URL": relay.db_url, "PATH": str(BIN), "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run([str(BIN / "loyalty"), *args], env=env, capture_output=True, text=True, timeout=120)


def test_random_key_add__nothing_sent_until_approved__then_sent(approval_relay):
    owner = AppClient(approval_relay.url, Account.create().key)  # a key with no ETH
    shop_id = new_shop_id()
    before = signer_state(approval_relay)

    body = signed_add(approval_relay, owner, shop_id, "Squatter Shop")
    message = fails(add(approval_relay, body, "203.0.113.7"), 409, 3012)
    assert "approval" in message
    fails(add(approval_relay, body, "203.0.113.7"), 409, 3012)  # asked again: still waiting, nothing sent

    assert signer_state(approval_relay) == before  # no transaction, no gas
    fails(call(approval_relay.url, "GET", "/v1/payment/shop/info", params={"shopId": shop_id}), 404, 2002)
    page = httpx.get(f"{approval_relay.url}/admin", auth=("admin", PASSWORD))
    assert shop_id in page.text and "Squatter Shop" in page.text and owner.address in page.text
    listed = loyalty(approval_relay, "shop", "requests")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if shop_id in line]
    assert owner.address in line and "203.0.113.7" in line and "Squatter Shop" in line

    approved = loyalty(approval_relay, "shop", "approve", shop_id)
    assert approved.returncode == 0 and "approved" in approved.stdout, approved.stderr
    assert loyalty(approval_relay, "shop", "approve", shop_id).returncode == 1  # once
    assert shop_id not in loyalty(approval_relay, "shop", "requests").stdout

    added = owner.add_shop(shop_id, "Squatter Shop", 0, 100)  # the app sends it again, freshly signed
    assert (added.shopId, added.account) == (shop_id, owner.address) and added.txHash
    assert signer_state(approval_relay)[1] == before[1] + 1  # exactly the approved transaction
    info = ok(call(approval_relay.url, "GET", "/v1/payment/shop/info", params={"shopId": shop_id}))
    assert info["account"] == owner.address
    # Registered on chain: refused clearly, nothing sent.
    assert "already registered" in fails(add(approval_relay, signed_add(approval_relay, owner, shop_id)), 409, 3013)
    assert signer_state(approval_relay)[1] == before[1] + 1


def test_bad_signature__refused_and_nothing_recorded(approval_relay):
    owner, other = (AppClient(approval_relay.url, Account.create().key) for _ in range(2))
    shop_id = new_shop_id()
    forged = signed_add(approval_relay, other, shop_id)["signature"]
    body = signed_add(approval_relay, owner, shop_id) | {"signature": forged}

    fails(add(approval_relay, body), 403, 3002)

    assert shop_id not in loyalty(approval_relay, "shop", "requests").stdout


def test_pending_requests__bounded_per_owner_per_client_ip_and_in_all__taken_and_rejected_ids_refused(start_relay):
    limits = {"shop_requests_per_owner": 2, "shop_requests_per_ip": 4, "shop_requests_pending": 5}
    relay = start_relay("approval-limits", signer=SIGNERS["spare"], **limits)
    a, b, c, d, e, f, g = (AppClient(relay.url, Account.create().key) for _ in range(7))
    first, second, third = new_shop_id(), new_shop_id(), new_shop_id()
    ip = "192.0.2.10"

    fails(add(relay, signed_add(relay, a, first), ip), 409, 3012)
    fails(add(relay, signed_add(relay, a, second), ip), 409, 3012)
    over = fails(add(relay, signed_add(relay, a, third), "192.0.2.99"), 429, 3014)  # owner a: 2 pending
    assert a.address in over
    assert "another owner" in fails(add(relay, signed_add(relay, b, first), ip), 409, 3013)

    assert loyalty(relay, "shop", "reject", first).returncode == 0
    assert "rejected" in fails(add(relay, signed_add(relay, a, first), ip), 409, 3013)
    # A rejection keeps the id from its owner only: another owner may ask for it.
    fails(add(relay, signed_add(relay, b, first), ip), 409, 3012)
    # The address has 2 pending (a's second, b's first): 2 more, then refused.
    fails(add(relay, signed_add(relay, c, new_shop_id()), ip), 409, 3012)
    fails(add(relay, signed_add(relay, d, new_shop_id()), ip), 409, 3012)
    refused = new_shop_id()
    assert ip in fails(add(relay, signed_add(relay, e, refused), ip), 429, 3014)

    pending = loyalty(relay, "shop", "requests").stdout
    assert third not in pending and refused not in pending and pending.count(ip) == 4
    assert first in loyalty(relay, "shop", "requests", "--status", "pending").stdout
    # From other addresses: one more, then the relay's whole queue (5) is full.
    fails(add(relay, signed_add(relay, f, new_shop_id()), "192.0.2.20"), 409, 3012)
    assert "The relay" in fails(add(relay, signed_add(relay, g, new_shop_id()), "192.0.2.30"), 429, 3014)


def test_approval_switched_off__a_private_deployment_registers_at_once(start_relay):
    relay = start_relay("no-approval", signer=SIGNERS["spare"], shop_approval="false")
    owner = AppClient(relay.url, Account.create().key)
    shop_id = new_shop_id()

    added = owner.add_shop(shop_id, "Private Shop", 0, 100)

    assert (added.shopId, added.account) == (shop_id, owner.address)
    assert loyalty(relay, "shop", "requests").stdout == ""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_requests_for_one_new_shop__one_owner_holds_it__no_server_error(start_relay, backend):
    from concurrent.futures import ThreadPoolExecutor

    relay = start_relay(f"approval-race-{backend}", backend=backend, signer=SIGNERS["spare"])
    shop_id = new_shop_id()
    bodies = [signed_add(relay, AppClient(relay.url, Account.create().key), shop_id) for _ in range(2)] * 6

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: add(relay, body), bodies))

    assert {r.status_code for r in answers} == {409}, [r.text for r in answers]
    by_owner = {body["account"]: set() for body in bodies}
    for body, answer in zip(bodies, answers, strict=True):
        by_owner[body["account"]].add(answer.json()["code"])
    assert sorted(map(sorted, by_owner.values())) == [[3012], [3013]]  # the first owner waits, the other is refused
    listed = loyalty(relay, "shop", "requests").stdout
    assert listed.count(shop_id) == 1
