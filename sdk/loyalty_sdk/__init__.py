"""Python client of the loyalty payment relay (the spec's "DMS-SDK"): a KIOSK client and a wallet
(app) client that signs every action with a local key.

    from loyalty_sdk import AppClient, KioskClient, InsufficientBalance

    kiosk = KioskClient("http://127.0.0.1:8000", "demo-kiosk-access-key")
    wallet = AppClient("http://127.0.0.1:8000", private_key)
    qr = wallet.temporary_account()
    payment = kiosk.open_new("P000001", 10 * 10**18, "krw", shop_id, qr.temporaryAccount)
    wallet.approve(payment.paymentId)          # signs the typed data the relay serves
    kiosk.close_new(payment.paymentId)         # status 4, completed

A refused call raises the exception class of the relay's error code (`loyalty_sdk.errors`).
"""

from loyalty_sdk.client import AppClient, KioskClient
from loyalty_sdk.errors import (
    ERRORS,
    AmountNotAvailable,
    ChainRejected,
    ChainUnavailable,
    ChargeExceedsMaxTotal,
    CreditLimitExceeded,
    DuplicatePurchase,
    EscrowExpired,
    ExpiredSignature,
    InsufficientBalance,
    InvalidAccessKey,
    InvalidParameter,
    InvalidSession,
    InvalidSignature,
    InvalidStatus,
    LoyaltyError,
    LoyaltyTypeMismatch,
    PaymentNotFound,
    PurchaseNotFound,
    RateLimited,
    RewardCapExceeded,
    RewardLimitExceeded,
    ShopApprovalPending,
    ShopNotAllowed,
    ShopNotFound,
    ShopRegistrationRefused,
    StorageUnavailable,
    TemporaryAccountNotFound,
    TooManyShopRequests,
    UnknownCurrency,
)

__all__ = [
    "ERRORS",
    "AmountNotAvailable",
    "AppClient",
    "ChainRejected",
    "ChainUnavailable",
    "ChargeExceedsMaxTotal",
    "CreditLimitExceeded",
    "DuplicatePurchase",
    "EscrowExpired",
    "ExpiredSignature",
    "InsufficientBalance",
    "InvalidAccessKey",
    "InvalidParameter",
    "InvalidSession",
    "InvalidSignature",
    "InvalidStatus",
    "KioskClient",
    "LoyaltyError",
    "LoyaltyTypeMismatch",
    "PaymentNotFound",
    "PurchaseNotFound",
    "RateLimited",
    "RewardCapExceeded",
    "RewardLimitExceeded",
    "ShopApprovalPending",
    "ShopNotAllowed",
    "ShopNotFound",
    "ShopRegistrationRefused",
    "StorageUnavailable",
    "TemporaryAccountNotFound",
    "TooManyShopRequests",
    "UnknownCurrency",
]
