"""Load soak: 50 concurrent simulated KIOSKs for 60 s with a mix of pay / deny / cancel / timeout.
Afterwards the conservation invariants hold on chain and the database agrees with the chain.

Each KIOSK works as the spec has it: after an approval (the user's, or the shop owner's for a
cancel) it waits for the relay's callback before it closes; how long that callback takes after
the app's confirm has answered is reported.

    python -m bench.soak [--kiosks 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import threading
import time
from collections import Counter

from sqlalchemy import select

from bench.faults import Receiver, wait_until
from bench.harness import SIGNER_INDEXES, UNIT, System, check_table, contract, failed, percentile, system
from relay import db as database
from relay.errors import InvalidStatus
from relay.models import Payment, PaymentStatus
from relay.sdk import AppClient, KioskClient

AMOUNT = 10 * UNIT
CALLBACK_WAIT = 10.0  # seconds a KIOSK waits for an approval's callback
GRANT = 1_000_000 * UNIT
# On-chain status -> the relay statuses that agree with it (Open on chain = approved, waiting for
# the KIOSK's close: the soak sets no close timeout).
AGREES = {0: {3, 9, 10}, 1: {2}, 2: {4, 7}, 3: {11}, 5: {8}}


def soak(bench: System, kiosks: int, seconds: float) -> list[tuple[str, str]]:
    url, db_url, process = bench.start_relay(
        backend="postgresql", workers=2, signers=SIGNER_INDEXES[:4], payment_timeout=3, close_timeout=10**6
    )
    receiver = Receiver()
    access_keys = [bench.add_kiosk(db_url, receiver.url) for _ in range(kiosks)]
    user_keys = bench.fund_users(kiosks, GRANT)
    # The chain is shared with the other benchmarks: compare only what the soak adds to escrow.
    escrow_before = contract(bench.w3(), bench.deployment, "Ledger").functions.escrowOf(0).call()
    owner = AppClient(url, bench_owner_key())
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    delays: dict[str, list[float]] = {"create": [], "cancel": []}  # approval callback after the confirm (s)
    late: Counter[str] = Counter()  # approval callbacks that did not come within CALLBACK_WAIT
    lock = threading.Lock()

    def called_back(payment_id: str, type_: str, approved_at: float) -> None:
        arrived = receiver.first(payment_id, type_, 0, CALLBACK_WAIT)
        with lock:
            if arrived is None:
                late[type_] += 1
            else:
                delays[type_].append(max(0.0, arrived - approved_at))
        if arrived is None:  # the KIOSK gives up on this payment
            raise TimeoutError(f"no {type_} approval callback within {CALLBACK_WAIT} s")

    owner_app = threading.Lock()
    stop_at = time.monotonic() + seconds

    def kiosk_loop(index: int) -> None:
        rng = random.Random(index)
        kiosk = KioskClient(url, access_keys[index], timeout=60)
        user = AppClient(url, user_keys[index], timeout=60)
        while time.monotonic() < stop_at:
            kind = rng.choices(["pay", "deny", "cancel", "timeout"], [0.55, 0.15, 0.2, 0.1])[0]
            try:
                opened = kiosk.open_new(f"S-{secrets.token_hex(6)}", AMOUNT, "krw", bench.shop_id, user.address)
                if kind == "timeout":
                    pass
                elif kind == "deny":
                    user.deny(opened.paymentId)
                else:
                    user.approve(opened.paymentId)
                    called_back(opened.paymentId, "create", time.time())
                    kiosk.close_new(opened.paymentId)
                    if kind == "cancel":
                        kiosk.open_cancel(opened.paymentId)
                        try:
                            with owner_app:  # one shop owner, one app: decisions one after another
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
                    outcomes[kind] += 1
            except Exception as exc:
                with lock:
                    message = re.sub(r"0x[0-9a-fA-F]{40,64}", "0x…", str(exc))  # one key per kind of error
                    errors[f"{type(exc).__name__}: {message[:80]}"] += 1

    threads = [threading.Thread(target=kiosk_loop, args=(i,)) for i in range(kiosks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    db = database.Database(db_url)

    def quiet() -> bool:
        with db.session() as session:
            busy = session.execute(
                # Nothing on its way to the chain and no decision pending (new payments and cancel
                # requests end by decision or by the payment timeout).
                select(Payment.payment_id).where((Payment.chain_op.is_not(None)) | (Payment.status.in_([1, 5])))
            ).first()
        return busy is None

    wait_until(quiet, 120)
    process.terminate()
    process.wait(20)
    # Every decision is signed over the relay's own typed data: none may be refused as forged.
    refused = sum(n for kind, n in errors.items() if kind.startswith("InvalidSignature"))
    waits = ", ".join(
        f"{type_} {len(d)}: p50 {percentile(d, 50) * 1000:.0f} ms, p99 {percentile(d, 99) * 1000:.0f} ms"
        for type_, d in delays.items()
    )
    return [
        ("load", f"{sum(outcomes.values())} flows in {seconds:.0f} s by {kiosks} KIOSKs: {dict(outcomes)}"),
        ("approval callbacks after the confirm", waits),
        ("every approval called back", "pass" if not late else f"FAIL: {dict(late)} not within {CALLBACK_WAIT} s"),
        ("other client errors", str(dict(errors)) if errors else "none"),
        ("no valid signature refused", "pass" if refused == 0 else f"FAIL: {refused} refused"),
        *verify(bench, db, user_keys, escrow_before),
    ]


def bench_owner_key() -> str:
    from relay.devnet import anvil_key

    return anvil_key(1)


def verify(bench: System, db: database.Database, user_keys: list[str], escrow_before: int) -> list[tuple[str, str]]:
    from eth_account import Account

    w3 = bench.w3()
    ledger = contract(w3, bench.deployment, "Ledger")
    payment_contract = contract(w3, bench.deployment, "LoyaltyPayment")
    with db.session() as session:
        payments = session.execute(select(Payment)).scalars().all()
    disagreements = []
    held = 0
    redeemed = 0
    for p in payments:
        record = payment_contract.functions.paymentOf(p.payment_id).call()
        status, paid, fee = record[4], record[5], record[6]
        if p.status not in AGREES.get(status, set()):
            disagreements.append((p.payment_id, p.status, status))
        if status in (1, 4):
            held += paid + fee
        if status == 2:
            redeemed += paid + fee
    users = [Account.from_key(k).address for k in user_keys]
    balances = sum(ledger.functions.accountOf(u).call()[1] for u in users)
    escrow = ledger.functions.escrowOf(0).call() - escrow_before
    # Conservation for the soak's users: what they were granted is in their balances, in escrow,
    # or was paid (with its fee) for completed payments.
    conserved = balances + held + redeemed == GRANT * len(users)
    return [
        ("database agrees with chain", "pass" if not disagreements else f"FAIL: {disagreements[:3]}"),
        ("escrow = payments held in escrow", "pass" if escrow == held else f"FAIL: escrow {escrow} != {held}"),
        ("points conserved (balances + escrow + paid = granted)", "pass" if conserved else "FAIL"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kiosks", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with system() as bench:
        rows = soak(bench, args.kiosks, args.seconds)
    print(f"\nLoad soak\n{check_table(rows)}")
    if failed(rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
