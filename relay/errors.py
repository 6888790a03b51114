"""The relay's errors: one exception per documented error code, mapped to HTTP by one handler
(relay.main), which also puts `table()` in the API description. Other HTTP errors (malformed JSON,
unknown path, the admin log-in) use code 1000 with their own HTTP status."""

from __future__ import annotations

from typing import ClassVar


class RelayError(Exception):
    code: ClassVar[int] = 5000
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Unexpected server error."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidParameter(RelayError):
    code, http_status, default_message = 1000, 400, "A parameter is missing or malformed."


class InvalidAccessKey(RelayError):
    code, http_status, default_message = 1001, 401, "The access key is missing, unknown or revoked."


class ShopNotAllowed(RelayError):
    code, http_status, default_message = 1002, 403, "This access key is not allowed for this shop."


class PaymentNotFound(RelayError):
    code, http_status, default_message = 2001, 404, "Unknown payment."


class ShopNotFound(RelayError):
    code, http_status, default_message = 2002, 404, "Unknown shop."


class TemporaryAccountNotFound(RelayError):
    code, http_status, default_message = 2003, 404, "Unknown, expired or already used temporary account."


class UnknownCurrency(RelayError):
    code, http_status, default_message = 2004, 400, "Unknown currency."


class PurchaseNotFound(RelayError):
    code, http_status, default_message = 2005, 404, "Unknown purchase."


class InvalidStatus(RelayError):
    code, http_status, default_message = 3001, 409, "The payment's status does not allow this action."


class InvalidSignature(RelayError):
    code, http_status, default_message = 3002, 403, "Not the expected signer's signature of the expected message."


class ExpiredSignature(RelayError):
    code, http_status, default_message = 3003, 403, "The signature has expired."


class InsufficientBalance(RelayError):
    code, http_status, default_message = 3004, 422, "Insufficient balance."


class DuplicatePurchase(RelayError):
    code, http_status, default_message = 3005, 409, "This purchase id was already used for a different payment."


class AmountNotAvailable(RelayError):
    code, http_status, default_message = 3006, 422, "The amount is more than the shop may withdraw."


class ChainUnavailable(RelayError):
    code, http_status, default_message = 4001, 503, "The chain node is unreachable; try again."


class StorageUnavailable(RelayError):
    code, http_status, default_message = 4003, 503, "The database is unreachable; try again."


class ChainRejected(RelayError):
    code, http_status, default_message = 4002, 409, "The chain rejected the operation (a payment is marked failed)."
    # The contract error this class stands for, and its explanation (formatted with the error's
    # arguments): the subclasses below are the contract refusals a client can act on.
    reverts: ClassVar[str | None] = None
    explains: ClassVar[str] = ""


class ChargeExceedsMaxTotal(ChainRejected):
    code, http_status = 3007, 409
    default_message = "Rates or the fee moved since the user signed: the payment would cost more than its maxTotal."
    reverts = "ChargeExceedsMaxTotal"
    explains = (
        "Rates or the fee moved past what the user signed: the payment would now take {total} "
        "(paid + fee), more than the maxTotal {maxTotal} the user signed. The payment has failed."
    )


class LoyaltyTypeMismatch(ChainRejected):
    code, http_status = 3008, 409
    default_message = "The account pays in another loyalty type than the user signed."
    reverts = "LoyaltyTypeMismatch"
    explains = (
        "The account {account} now pays in loyalty type {loyaltyType} (0 point, 1 token), not in the one "
        "the user signed: it switched since. The payment has failed."
    )


class EscrowExpired(ChainRejected):
    code, http_status = 3009, 409
    default_message = "The payment's escrow has expired: only a refund is possible."
    reverts = "EscrowExpired"
    explains = (
        "The escrow of payment {paymentId} expired at {expiresAt} (unix seconds): only a refund to the user "
        "is possible (closeNew with confirm false, or closeCancel with confirm true)."
    )


class CreditLimitExceeded(ChainRejected):
    code, http_status = 3010, 409
    default_message = "The shop's credit limit does not allow this."
    reverts = "CreditLimitExceeded"
    explains = (
        "Shop {shopId} would owe {debt} points, beyond its credit limit of {creditLimit}: the operator must "
        "raise the shop's credit limit first."
    )


class RewardCapExceeded(ChainRejected):
    code, http_status = 3011, 409
    default_message = "Purchase rewards only (their `error`): the day's reward cap is reached; retried after 00:00 UTC."
    reverts = "RewardCapExceeded"
    explains = (
        "The day's cap of purchase rewards is reached (this reward is {rewardPoint} points, {remaining} are "
        "left today); the cap resets at 00:00 UTC."
    )


ERRORS: list[type[RelayError]] = [
    InvalidParameter,
    InvalidAccessKey,
    ShopNotAllowed,
    PaymentNotFound,
    ShopNotFound,
    TemporaryAccountNotFound,
    UnknownCurrency,
    PurchaseNotFound,
    InvalidStatus,
    InvalidSignature,
    ExpiredSignature,
    InsufficientBalance,
    DuplicatePurchase,
    AmountNotAvailable,
    ChargeExceedsMaxTotal,
    LoyaltyTypeMismatch,
    EscrowExpired,
    CreditLimitExceeded,
    RewardCapExceeded,
    ChainUnavailable,
    ChainRejected,
    StorageUnavailable,
    RelayError,
]


def table() -> str:
    """The error-code table, in Markdown."""
    rows = sorted((e.code, e.http_status, e.default_message) for e in ERRORS)
    return "\n".join(["| code | HTTP | meaning |", "|---|---|---|", *(f"| {c} | {h} | {m} |" for c, h, m in rows)])
