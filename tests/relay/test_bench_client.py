"""The throughput bench's load generator (bench.throughput.Shopper) speaks the relay's API as the
SDK does: a payment it makes completes and moves the user's points, and a refusal is an error."""

from __future__ import annotations

import pytest

from bench.throughput import AMOUNT, Shopper
from loyalty_sdk import KioskClient


def test_a_payment_by_the_load_generator_completes(relay, kiosk, shop_id, new_wallet) -> None:
    wallet = new_wallet(relay, 100 * AMOUNT)
    shopper = Shopper(relay.url, kiosk.access_key, wallet.account.key)

    closed = shopper.pay(shop_id)

    assert (closed["paymentStatus"], closed["amount"], closed["account"]) == (4, str(AMOUNT), wallet.address)
    balance = KioskClient(relay.url, kiosk.access_key).balance(wallet.address).balance
    assert int(balance) == 100 * AMOUNT - int(closed["totalPoint"]) > 0


def test_a_refused_request_is_an_error_naming_it(relay, shop_id, new_wallet) -> None:
    wallet = new_wallet(relay, 100 * AMOUNT)
    shopper = Shopper(relay.url, "not-a-kiosk-key", wallet.account.key)

    with pytest.raises(RuntimeError, match="POST /v1/payment/openNew: HTTP 4"):
        shopper.pay(shop_id)
