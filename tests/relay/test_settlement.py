"""Flow 1.5 end to end: purchases credited, payments settle the shop, the owner registers a
withdrawal, the operator records the transfer in the admin page (a real browser), the owner
completes it; and the event indexer survives restarts and an unreachable node without gaps or
duplicates."""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select
from web3 import Web3

from loyalty_sdk import AppClient, errors
from relay.devnet import anvil_key
from relay.models import ChainEvent, IndexerCursor, Withdrawal
from tests.relay.approval import add_approved_shop
from tests.relay.conftest import OWNER, POINT_USER, ROOT, SIGNERS, UNIT, wait_until

SCREENSHOTS = ROOT / "var" / "screenshots"
ADMIN_PASSWORD = "s3cret-" + secrets.token_hex(4)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="module")
def operator_relay(start_relay):
    return start_relay("settlement", signer=SIGNERS["spare"], admin_password=ADMIN_PASSWORD)


def _pay(kiosk, wallet, shop_id, amount):
    opened = kiosk.client.open_new(f"P-{secrets.token_hex(5)}", amount, "krw", shop_id, wallet.address)
    wallet.approve(opened.paymentId)
    return kiosk.client.close_new(opened.paymentId)


def test_flow_1_5__shop_settlement_through_the_relay_and_the_admin_page(operator_relay, make_kiosk):
    owner = AppClient(operator_relay.url, anvil_key(OWNER))
    user = AppClient(operator_relay.url, anvil_key(POINT_USER))
    shop_id = "0x" + secrets.token_hex(32)

    # Onboarding: the owner registers the shop and changes its settings through the relay.
    added = add_approved_shop(operator_relay, owner, shop_id, "Settlement Shop", 1, 100)
    assert (added.name, added.account, added.providePercent) == ("Settlement Shop", owner.address, 100)
    updated = owner.update_shop(shop_id, "Settlement Shop", 1, 200)
    assert updated.providePercent == 200
    kiosk = make_kiosk(operator_relay, [shop_id])

    # A cash purchase of 1,000,000 KRW earns 2 % once the 1 s wait has passed.
    reported = kiosk.client.report_purchase("CASH-1", 1_000_000 * UNIT, "krw", shop_id, user.address)
    assert reported.provideStatus == 0
    provided = wait_until(lambda: (p := kiosk.client.purchase(shop_id, "CASH-1")).provideStatus == 1 and p)
    assert provided.providedPoint == str(20_000 * UNIT)
    assert kiosk.client.report_purchase("CASH-1", 1_000_000 * UNIT, "krw", shop_id, user.address).provideStatus == 1

    # Customers spend 50,000 points at the shop: settled = used - provided = 30,000.
    _pay(kiosk, user, shop_id, 50_000 * UNIT)
    shop = kiosk.client.shop_info(shop_id)
    assert (shop.providedPoint, shop.usedPoint, shop.settledPoint) == (
        str(20_000 * UNIT),
        str(50_000 * UNIT),
        str(30_000 * UNIT),
    )

    with pytest.raises(errors.AmountNotAvailable):
        owner.open_withdrawal(shop_id, 30_000 * UNIT + 1)
    opened = owner.open_withdrawal(shop_id, 10_000 * UNIT)
    assert (opened.withdrawStatus, opened.withdrawAmount) == (1, str(10_000 * UNIT))
    assert kiosk.client.shop_withdrawal(shop_id).withdrawStatus == 1
    with pytest.raises(errors.InvalidStatus, match="already open"):
        owner.open_withdrawal(shop_id, 1 * UNIT)

    # The operator sees the indexed request and records the transfer in the browser.
    db = operator_relay.db()

    def indexed() -> bool:
        with db.session() as session:
            return session.execute(select(Withdrawal).where(Withdrawal.shop_id == shop_id)).first() is not None

    wait_until(indexed)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(http_credentials={"username": "admin", "password": ADMIN_PASSWORD})
        page = context.new_page()
        page.goto(f"{operator_relay.url}/admin")
        row = page.locator(f"tr.withdrawal[data-shop='{shop_id}']")
        assert "Settlement Shop" in row.inner_text() and "10,000" in row.inner_text()
        row.locator("input[name=reference]").fill("BANK-2026-0001")
        row.locator("button", has_text="Transfer recorded").click()
        page.wait_for_url("**/admin#withdrawals")
        assert "BANK-2026-0001" in page.locator(f"tr.withdrawal[data-shop='{shop_id}']").inner_text()
        page.screenshot(path=str(SCREENSHOTS / "admin-withdrawal.png"), full_page=True)
        browser.close()
    with db.session() as session:
        recorded = session.execute(select(Withdrawal).where(Withdrawal.shop_id == shop_id)).scalar_one()
        assert (recorded.transfer_reference, recorded.transfer_recorded_by) == ("BANK-2026-0001", "admin")

    # The owner confirms the money arrived; the withdrawn total accumulates.
    closed = owner.close_withdrawal(shop_id)
    assert (closed.withdrawStatus, closed.withdrawnPoint) == (0, str(10_000 * UNIT))
    owner.open_withdrawal(shop_id, 20_000 * UNIT)
    owner.close_withdrawal(shop_id)
    assert kiosk.client.shop_info(shop_id).withdrawnPoint == str(30_000 * UNIT)
    with pytest.raises(errors.AmountNotAvailable):
        owner.open_withdrawal(shop_id, 1)


def test_shop_transferred_and_totals_corrected__the_relay_follows_both(operator_relay, make_kiosk, anvil, deployment):
    """Ownership moves two-step and the admin corrects totals, outside the relay: the next cancel is
    the new owner's to sign, and the indexed shop row (the admin page) takes the new owner and totals."""
    from relay import typed_data
    from relay.models import Shop
    from tests.relay.checks import contract, item

    first, second = (AppClient(operator_relay.url, Account.create().key) for _ in range(2))
    user = AppClient(operator_relay.url, anvil_key(POINT_USER))
    shop_id = "0x" + secrets.token_hex(32)
    add_approved_shop(operator_relay, first, shop_id, "Moving Shop", 0, 100)
    kiosk = make_kiosk(operator_relay, [shop_id])
    paid = _pay(kiosk, user, shop_id, 10 * UNIT)

    db = operator_relay.db()

    def indexed(provided: int) -> Shop | None:
        with db.session() as session:
            shop = session.get(Shop, shop_id)
            return shop if shop is not None and shop.provided_point == str(provided) else None

    # Indexed up to the payment (the shop's row may first show it as just added), before the changes:
    # each is indexed on its own.
    assert wait_until(lambda: (shop := indexed(0)) is not None and shop.used_point == str(10 * UNIT))
    registry = contract(anvil, deployment, "ShopRegistry")
    domain = typed_data.domain(typed_data.SHOP_DOMAIN, deployment["chainId"], registry.address)
    admin = {"from": Account.from_key(anvil_key(0)).address}  # also a relay signer of the deployment
    deadline = int(time.time()) + 600

    def signed(wallet: AppClient, action: str, **message: object) -> str:
        nonce = registry.functions.nonces(wallet.address).call()
        return wallet.sign(typed_data.build(action, domain, {**message, "nonce": nonce, "deadline": deadline}))

    for tx in (
        registry.functions.transferShop(
            shop_id,
            second.address,
            deadline,
            signed(first, "TransferShop", shopId=shop_id, newOwner=second.address, account=first.address),
        ).transact(admin),
        registry.functions.acceptShop(
            shop_id, deadline, signed(second, "AcceptShop", shopId=shop_id, account=second.address)
        ).transact(admin),
        registry.functions.correctShopTotals(shop_id, 3 * UNIT, 0).transact(admin),
    ):
        assert registry.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1

    assert wait_until(lambda: indexed(3 * UNIT)).owner == second.address
    kiosk.client.open_cancel(paid.paymentId)
    assert item(operator_relay.url, paid.paymentId)["typedData"]["confirm"]["message"]["account"] == second.address
    assert second.approve(paid.paymentId).paymentStatus == 6


def test_admin_page__wrong_credentials_or_form_token__refused(operator_relay):
    import httpx

    assert httpx.get(f"{operator_relay.url}/admin").status_code == 401
    assert httpx.get(f"{operator_relay.url}/admin", auth=("admin", "wrong")).status_code == 401
    forged = httpx.post(
        f"{operator_relay.url}/admin/withdrawals/1/transfer",
        data={"reference": "x", "csrf": "forged"},
        auth=("admin", ADMIN_PASSWORD),
    )
    assert forged.status_code == 403


def test_admin_page__never_framed_sniffed_or_cached(operator_relay):
    import httpx

    page = httpx.get(f"{operator_relay.url}/admin", auth=("admin", ADMIN_PASSWORD))

    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"


# ------------------------------------------------------------------------------- indexer


class ToggleProxy:
    """A TCP proxy to the chain node that can be switched off, to make the node unreachable."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.enabled = True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.enabled:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(anvil) -> Iterator[ToggleProxy]:
    proxy = ToggleProxy(int(anvil.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()


def _event_keys_on_chain(w3: Web3, deployment, head: int) -> list[tuple[str, int, str]]:
    """(transaction, log index, name of the contract that emitted it) of every event."""
    names = {address.lower(): name for name, address in deployment["contracts"].items()}
    logs = w3.eth.get_logs(
        {
            "fromBlock": deployment["startBlock"],
            "toBlock": head,
            "address": list(deployment["contracts"].values()),
        }
    )
    return sorted(
        ("0x" + bytes(entry["transactionHash"]).hex(), int(entry["logIndex"]), names[entry["address"].lower()])
        for entry in logs
    )


def test_indexer__killed_restarted_and_node_down__no_gap_no_duplicate(start_relay, anvil, deployment, proxy):
    relay = start_relay("indexer", rpc_url=f"http://127.0.0.1:{proxy.port}", indexer_batch=7)
    w3 = Web3(Web3.HTTPProvider(anvil))
    abi = json.loads((Path(ROOT) / "relay" / "abi" / "Ledger.json").read_text())
    ledger = w3.eth.contract(address=deployment["contracts"]["Ledger"], abi=abi)
    provider = Account.from_key(anvil_key(0)).address
    user = Account.create().address

    def grant_some(count: int) -> None:
        for _ in range(count):
            tx = ledger.functions.grant(user, UNIT).transact({"from": provider})
        w3.eth.wait_for_transaction_receipt(tx)  # mined before the head is read below

    grant_some(10)
    relay.restart(kill=True)  # mid-stream: SIGKILL while blocks remain to index
    grant_some(10)
    proxy.enabled = False  # the node becomes unreachable for a while
    grant_some(10)
    relay.restart(kill=True)  # and the relay restarts while it is down
    grant_some(5)
    proxy.enabled = True
    grant_some(5)

    db = relay.db()
    head = w3.eth.block_number

    def caught_up() -> bool:
        with db.session() as session:
            return (session.execute(select(IndexerCursor.next_block)).scalar() or 0) > head

    wait_until(caught_up, timeout=60)
    with db.session() as session:
        stored = sorted(
            (tx, index, contract)
            for tx, index, contract in session.execute(
                select(ChainEvent.tx_hash, ChainEvent.log_index, ChainEvent.contract).where(
                    ChainEvent.block_number <= head
                )
            )
        )
        role_grants = session.execute(select(ChainEvent.contract).where(ChainEvent.event == "RoleGranted")).scalars()
        assert len(set(role_grants)) > 1, "the deployment grants roles in several contracts"
        grants = session.execute(
            select(func.count()).where(ChainEvent.event == "LoyaltyGranted", ChainEvent.account == user)
        ).scalar_one()
    on_chain = _event_keys_on_chain(w3, deployment, head)
    assert len(stored) == len(set(stored)), "duplicate events"
    assert stored == on_chain, "the database and the chain disagree (events, or the contracts that emitted them)"
    assert grants == 40


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0003__shared_signature_events_indexed_again_under_their_contract(
    anvil, deployment, new_database, backend
):
    """A database indexed before events were keyed by their contract: its role and domain events
    (the signatures several contracts share) all name one contract. The migration drops them and
    rewinds the cursor; the indexer then stores them again under the contract that emitted them,
    and nothing else twice."""
    from sqlalchemy import update

    from relay import db as database
    from relay.chain import Chain
    from relay.services.indexer import CURSOR, Indexer

    shared = {"RoleGranted", "RoleRevoked", "RoleAdminChanged", "EIP712DomainChanged"}
    names: dict[str, set[str]] = {}
    for contract in deployment["contracts"]:
        for entry in json.loads((Path(ROOT) / "relay" / "abi" / f"{contract}.json").read_text()):
            if entry["type"] == "event":
                names.setdefault(entry["name"], set()).add(contract)
    # Besides these, every contract emits AccessControlDefaultAdminRules' events, which came with
    # contracts deployed after this migration: no relay before it can have indexed them.
    admin_rules = {name for name in names if name.startswith("DefaultAdmin")}
    assert {name for name, contracts in names.items() if len(contracts) > 1} == shared | admin_rules

    w3 = Web3(Web3.HTTPProvider(anvil))
    head = w3.eth.block_number
    url = new_database(backend)
    database.upgrade(url, "0002")
    db = database.Database(url)
    indexer = Indexer(db, Chain(anvil, deployment["path"], [], 5), deployment["startBlock"], confirmations=0)

    def index_to_head() -> list[tuple[str, int, str]]:
        while True:
            indexer.run_once()
            with db.session() as session:
                if session.get(IndexerCursor, CURSOR).next_block > head:
                    rows = session.execute(
                        select(ChainEvent.tx_hash, ChainEvent.log_index, ChainEvent.contract).where(
                            ChainEvent.block_number <= head
                        )
                    )
                    return sorted((tx, index, contract) for tx, index, contract in rows)

    try:
        on_chain = _event_keys_on_chain(w3, deployment, head)
        assert index_to_head() == on_chain
        with db.session() as session:  # as the indexer stored them before it knew the emitter
            session.execute(update(ChainEvent).where(ChainEvent.event.in_(shared)).values(contract="LoyaltyPayment"))
            earliest = select(func.min(ChainEvent.block_number)).where(ChainEvent.event.in_(shared))
            first = session.execute(earliest).scalar()

        database.upgrade(url)

        with db.session() as session:
            assert session.execute(select(func.count()).where(ChainEvent.event.in_(shared))).scalar_one() == 0
            assert session.get(IndexerCursor, CURSOR).next_block == first
        assert index_to_head() == on_chain
    finally:
        db.engine.dispose()
