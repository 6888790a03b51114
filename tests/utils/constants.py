"""Values the tests share: loyalty types, payment statuses, settings and the default rate table."""

from __future__ import annotations

from scripts._system import DEFAULT_RATES, UNIT

__all__ = [
    "CANCELLED",
    "CANCEL_OPEN",
    "CLOSED",
    "DAY",
    "DEFAULT_RATES",
    "FEE_RATE",
    "NONE",
    "OPEN",
    "POINT",
    "REFUNDED",
    "STATUS_NAMES",
    "TOKEN",
    "UNIT",
    "ZERO_ADDRESS",
    "ZERO_BYTES32",
]

# ILedger.LoyaltyType
POINT, TOKEN = 0, 1
# ILoyaltyPayment.PaymentStatus
NONE, OPEN, CLOSED, REFUNDED, CANCEL_OPEN, CANCELLED = range(6)
STATUS_NAMES = {
    NONE: "None",
    OPEN: "Open",
    CLOSED: "Closed",
    REFUNDED: "Refunded",
    CANCEL_OPEN: "CancelOpen",
    CANCELLED: "Cancelled",
}

DAY = 24 * 3600
# The payment controller's default fee rate in basis points.
FEE_RATE = 500

ZERO_ADDRESS = "0x" + "00" * 20
ZERO_BYTES32 = "0x" + "00" * 32
