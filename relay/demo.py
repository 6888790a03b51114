"""`make demo`: plays flows 1.1-1.4 against `make run`, as a KIOSK and the wallet app would."""

from __future__ import annotations

import json
import time

from loyalty_sdk import AppClient, KioskClient
from relay.config import ROOT
from relay.devnet import DEMO_ACCESS_KEY, anvil_key

UNIT = 10**18
STATUS = {
    1: "received",
    2: "approved",
    3: "denied",
    4: "completed",
    5: "cancel received",
    6: "cancel approved",
    7: "cancel denied",
    8: "cancel completed",
    9: "timed out",
    10: "failed",
    11: "refunded",
}


def step(text: str) -> None:
    print(f"  • {text}", flush=True)


def amount(value: str) -> str:
    return f"{int(value) / UNIT:,.2f}"


def main(base_url: str) -> None:
    demo = json.loads((ROOT / "deployments" / "local.json").read_text())["demo"]
    shop_id = demo["shopId"]
    kiosk = KioskClient(base_url, DEMO_ACCESS_KEY)
    user = AppClient(base_url, anvil_key(2))
    owner = AppClient(base_url, anvil_key(1))
    run = int(time.time())

    def pay(purchase: str, approve: bool = True) -> str:
        qr = user.temporary_account()
        step(f"app shows a QR code with temporary address {qr.temporaryAccount} (valid until {qr.expiresAt})")
        balance = kiosk.balance(qr.temporaryAccount)
        step(f"KIOSK reads the balance: {amount(balance.balance)} (loyaltyType {balance.loyaltyType})")
        info = kiosk.info(qr.temporaryAccount, 10 * UNIT, "krw")
        step(
            f"KIOSK asks the cost of 10 KRW: paid {amount(info.paidPoint)} + fee {amount(info.feePoint)}"
            f" = {amount(info.totalPoint)} points"
        )
        opened = kiosk.open_new(purchase, 10 * UNIT, "krw", shop_id, qr.temporaryAccount)
        step(
            f"KIOSK opens payment {opened.paymentId} -> status {opened.paymentStatus} ({STATUS[opened.paymentStatus]})"
        )
        if approve:
            approved = user.approve(opened.paymentId)
            step(f"user approves in the app -> status {approved.paymentStatus}, tx {approved.txHash}")
        else:
            denied = user.deny(opened.paymentId)
            step(f"user denies in the app -> status {denied.paymentStatus} ({STATUS[denied.paymentStatus]})")
        return opened.paymentId

    print("1.1 New payment, the user approves")
    paid = pay(f"DEMO-{run}-1")
    closed = kiosk.close_new(paid)
    step(f"KIOSK closes it -> status {closed.paymentStatus} ({STATUS[closed.paymentStatus]})")
    step(f"user balance now {amount(kiosk.balance(user.address).balance)} points")

    print("1.2 New payment, the user denies")
    pay(f"DEMO-{run}-2", approve=False)

    print("1.3 Cancel, the shop owner approves")
    cancel = kiosk.open_cancel(paid)
    step(f"KIOSK asks to cancel {paid} -> status {cancel.paymentStatus} ({STATUS[cancel.paymentStatus]})")
    approved = owner.approve(paid)
    step(f"shop owner approves in the app -> status {approved.paymentStatus}, tx {approved.txHash}")
    done = kiosk.close_cancel(paid)
    step(f"KIOSK closes the cancel -> status {done.paymentStatus} ({STATUS[done.paymentStatus]})")
    step(f"user balance back to {amount(kiosk.balance(user.address).balance)} points")

    print("1.4 Cancel, the shop owner denies")
    second = pay(f"DEMO-{run}-3")
    kiosk.close_new(second)
    kiosk.open_cancel(second)
    denied = owner.deny(second)
    step(f"shop owner denies the cancel -> status {denied.paymentStatus} ({STATUS[denied.paymentStatus]})")

    shop = kiosk.shop_info(shop_id)
    print(
        f"Shop {shop.name}: used {amount(shop.usedPoint)}, provided {amount(shop.providedPoint)}, "
        f"settled {amount(shop.settledPoint)}, withdrawn {amount(shop.withdrawnPoint)} points"
    )
