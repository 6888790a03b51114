"""Load soak: 50 concurrent KIOSKs for 60 s with a mix of pay / deny / cancel / timeout, on a relay of
two worker processes. Afterwards the database agrees with the chain, escrow holds exactly the open
payments and no point is created or lost.

Each KIOSK works as the spec has it: after an approval (the user's, or the shop owner's for a
cancel) it waits for the relay's callback before it closes. How long that callback takes after the
app's confirm has answered is the soak's figure; for the payments' approvals (flow 1.1) its median
is held to CALLBACK_P50."""

from __future__ import annotations

import contextlib
import random
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from bench.harness import OWNER_INDEX, SIGNER_INDEXES, UNIT, Receiver, System, contract, percentile, wait_until
from loyalty_sdk import AppClient, InvalidStatus, KioskClient
from relay import db as database
from relay.devnet import anvil_key
from relay.models import Payment, PaymentStatus

KIOSKS = 50
AMOUNT = 10 * UNIT
GRANT = 1_000_000 * UNIT
CALLBACK_WAIT = 10.0  # seconds a KIOSK waits for an approval's callback
CALLBACK_P50 = 0.250  # seconds: the median delay of a payment approval's callback after the confirm
# On-chain status -> the relay statuses that agree with it (Open on chain = approved, waiting for
# the KIOSK's close: the soak sets no close timeout).
AGREES = {0: {3, 9, 10}, 1: {2}, 2: {4, 7}, 3: {11}, 5: {8}}


@dataclass
class Soak:
    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    delays: dict[str, list[float]] = field(default_factory=lambda: {"create": [], "cancel": []})
    late: Counter[str] = field(default_factory=Counter)  # approval callbacks not within CALLBACK_WAIT
    disagreements: list[tuple[str, int, int]] = field(default_factory=list)
    escrow: int = 0  # what the soak added to escrow
    held: int = 0  # paid + fee of the soak's payments held in escrow on chain
    conserved: bool = False


@pytest.fixture(scope="module")
def soak(bench: System, quick: bool, figure: Any) -> Soak:
    url, db_url, process = bench.start_relay(
        workers=2, signers=SIGNER_INDEXES[:4], payment_timeout=3, close_timeout=10**6
    )
    receiver = Receiver()
    try:
        result = _run(bench, url, db_url, receiver, 15 if quick else 60)
    finally:
        process.terminate()
        process.wait(20)
        receiver.close()
    waits = ", ".join(
        f"{kind} {len(d)}: p50 {percentile(d, 50) * 1000:.0f} ms, p99 {percentile(d, 99) * 1000:.0f} ms"
        for kind, d in result.delays.items()
    )
    figure(
        "soak load",
        f"{sum(result.outcomes.values())} flows in {result.seconds:.0f} s by {KIOSKS} KIOSKs: {dict(result.outcomes)}",
    )
    figure("soak approval callbacks after the confirm", waits)
    figure("soak other client errors", str(dict(result.errors)) if result.errors else "none")
    return result


def _run(bench: System, url: str, db_url: str, receiver: Receiver, seconds: float) -> Soak:
    result = Soak(seconds)
    access_keys = bench.add_kiosks(db_url, KIOSKS, receiver.url)
    user_keys = bench.fund_users(KIOSKS, GRANT)
    escrow_before = bench.escrow()
    owner = AppClient(url, anvil_key(OWNER_INDEX))
    owner_app = threading.Lock()  # one shop owner, one app: decisions one after another
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def called_back(payment_id: str, kind: str, approved_at: float) -> None:
        arrived = receiver.first(payment_id, kind, 0, CALLBACK_WAIT)
        with lock:
            if arrived is None:
                result.late[kind] += 1
            else:
                result.delays[kind].append(max(0.0, arrived - approved_at))
        if arrived is None:  # the KIOSK gives up on this payment
            raise TimeoutError(f"no {kind} approval callback within {CALLBACK_WAIT} s")

    def kiosk_loop(index: int) -> None:
        rng = random.Random(index)
        kiosk = KioskClient(url, access_keys[index], timeout=60)
        user = AppClient(url, user_keys[index], timeout=60)
        while time.monotonic() < stop_at:
            kind = rng.choices(["pay", "deny", "cancel", "timeout"], [0.55, 0.15, 0.2, 0.1])[0]
            try:
                opened = kiosk.open_new(f"S-{secrets.token_hex(6)}", AMOUNT, "krw", bench.shop_id, user.address)
                if kind == "deny":
                    user.deny(opened.paymentId)
                elif kind != "timeout":
                    user.approve(opened.paymentId)
                    called_back(opened.paymentId, "create", time.time())
                    kiosk.close_new(opened.paymentId)
                    if kind == "cancel":
                        kiosk.open_cancel(opened.paymentId)
                        try:
                            with owner_app:
                                owner.approve(opened.paymentId)
                            called_back(opened.paymentId, "cancel", time.time())
                            kiosk.close_cancel(opened.paymentId)
                        except InvalidStatus:
                            # The owner's queue is long and a cancel request lasts 3 s: if it timed
                            # out first, the payment stands (status 4) and the refusal is right.
                            if user.item(opened.paymentId).paymentStatus != PaymentStatus.COMPLETED:
                                raise
                            kind = "cancel timed out before the owner decided"
                with lock:
                    result.outcomes[kind] += 1
            except Exception as exc:
                message = re.sub(r"0x[0-9a-fA-F]{40,64}", "0x…", str(exc))  # one key per kind of error
                with lock:
                    result.errors[f"{type(exc).__name__}: {message[:80]}"] += 1

    threads = [threading.Thread(target=kiosk_loop, args=(i,)) for i in range(KIOSKS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    db = database.Database(db_url)
    try:

        def quiet() -> bool:
            with db.session() as session:
                # Nothing on its way to the chain and no decision pending (new payments and cancel
                # requests end by decision or by the payment timeout).
                busy = session.execute(
                    select(Payment.payment_id).where(Payment.chain_op.is_not(None) | Payment.status.in_([1, 5]))
                ).first()
            return busy is None

        with contextlib.suppress(AssertionError):  # what is left shows as a disagreement
            wait_until(quiet, 120)
        with db.session() as session:
            payments = session.execute(select(Payment)).scalars().all()
    finally:
        db.engine.dispose()
    w3 = bench.w3()
    ledger = contract(w3, bench.deployment, "Ledger")
    payment_contract = contract(w3, bench.deployment, "LoyaltyPayment")
    redeemed = 0
    for p in payments:
        record = payment_contract.functions.paymentOf(p.payment_id).call()
        status, paid, fee = record[4], record[5], record[6]
        if p.status not in AGREES.get(status, set()):
            result.disagreements.append((p.payment_id, p.status, status))
        if status in (1, 4):
            result.held += paid + fee
        if status == 2:
            redeemed += paid + fee
    balances = sum(ledger.functions.accountOf(Account.from_key(k).address).call()[1] for k in user_keys)
    result.escrow = bench.escrow() - escrow_before
    # Conservation for the soak's users: what they were granted is in their balances, in escrow,
    # or was paid (with its fee) for completed payments.
    result.conserved = balances + result.held + redeemed == GRANT * len(user_keys)
    return result


def test_soak__every_approval_called_back(soak):
    assert not soak.late, f"{dict(soak.late)} not within {CALLBACK_WAIT} s"


def test_soak__payment_approval_callback_within_250_ms_of_the_confirm_at_the_median(soak):
    delays = soak.delays["create"]
    assert delays, "no payment approval was called back"
    assert percentile(delays, 50) <= CALLBACK_P50


def test_soak__no_valid_signature_refused(soak):
    # Every decision is signed over the relay's own typed data: none may be refused as forged.
    refused = {kind: n for kind, n in soak.errors.items() if kind.startswith("InvalidSignature")}
    assert not refused


def test_soak__database_agrees_with_chain(soak):
    assert not soak.disagreements, soak.disagreements[:3]


def test_soak__escrow_holds_exactly_the_payments_held(soak):
    assert soak.escrow == soak.held


def test_soak__points_conserved(soak):
    assert soak.conserved, "balances + escrow + paid != granted"
