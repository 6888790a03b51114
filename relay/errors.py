"""The relay's errors: one exception per documented error code, answered by one handler in relay.main,
whose API description holds `table()`. HTTP errors outside the relay (malformed JSON, unknown path,
the admin log-in) answer code 1000 with their own HTTP status."""

from __future__ import annotations

from typing import ClassVar


class RelayError(Exception):
    code: ClassVar[int] = 5000
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Unexpected server error."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


def _error(name: str, code: int, http_status: int, message: str, explains: str | None = None) -> type[RelayError]:
    """An error code that carries nothing more than its message; with `explains`, the ChainRejected
    of the contract error of its name."""
    attributes = {"code": code, "http_status": http_status, "default_message": message}
    if explains is None:
        return type(name, (RelayError,), attributes)
    return type(name, (ChainRejected,), attributes | {"explains": explains})


InvalidParameter = _error("InvalidParameter", 1000, 400, "A parameter is missing or malformed.")
InvalidAccessKey = _error("InvalidAccessKey", 1001, 401, "The access key is missing, unknown or revoked.")
ShopNotAllowed = _error("ShopNotAllowed", 1002, 403, "This access key is not allowed for this shop.")


class RateLimited(RelayError):
    """Answered with `Retry-After`: the seconds until the limit allows the request again."""

    code, http_status, default_message = 1003, 429, "Too many requests; try again after Retry-After seconds."

    def __init__(self, message: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


PaymentNotFound = _error("PaymentNotFound", 2001, 404, "Unknown payment.")
ShopNotFound = _error("ShopNotFound", 2002, 404, "Unknown shop.")
TemporaryAccountNotFound = _error(
    "TemporaryAccountNotFound", 2003, 404, "Unknown, expired or already used temporary account."
)
UnknownCurrency = _error("UnknownCurrency", 2004, 400, "Unknown currency.")
PurchaseNotFound = _error("PurchaseNotFound", 2005, 404, "Unknown purchase.")
InvalidStatus = _error("InvalidStatus", 3001, 409, "The payment's status does not allow this action.")
InvalidSignature = _error("InvalidSignature", 3002, 403, "Not the expected signer's signature of the expected message.")
ExpiredSignature = _error("ExpiredSignature", 3003, 403, "The signature has expired.")
DuplicatePurchase = _error("DuplicatePurchase", 3005, 409, "This purchase id was already used for a different payment.")
AmountNotAvailable = _error("AmountNotAvailable", 3006, 422, "The amount is more than the shop may withdraw.")
ChainUnavailable = _error("ChainUnavailable", 4001, 503, "The chain node is unreachable; try again.")
StorageUnavailable = _error("StorageUnavailable", 4003, 503, "The database is unreachable; try again.")
ShopApprovalPending = _error("ShopApprovalPending", 3012, 409, "Waiting for the operator's approval of this shop.")
ShopRegistrationRefused = _error("ShopRegistrationRefused", 3013, 409, "This shop id is taken or was rejected.")
TooManyShopRequests = _error("TooManyShopRequests", 3014, 429, "Too many shop registrations wait for approval.")
InvalidSession = _error("InvalidSession", 1004, 401, "The session token is missing, unknown or expired.")
RewardLimitExceeded = _error("RewardLimitExceeded", 3015, 422, "The purchase would pass the relay's reward limits.")


class ChainRejected(RelayError):
    """A revert. Each subclass is the contract error of its name that a client can act on, and
    `explains` it (formatted with the error's arguments)."""

    code, http_status, default_message = 4002, 409, "The chain rejected the operation (a payment is marked failed)."
    reverts: ClassVar[str | None] = None
    explains: ClassVar[str] = ""

    def __init_subclass__(cls) -> None:
        cls.reverts = cls.__name__


# Checked at openNew; the Ledger's revert if the balance fell before the approval was executed.
InsufficientBalance = _error(
    "InsufficientBalance", 3004, 422, "Insufficient balance.",
    "The balance {balance} does not cover the total {required}.",
)  # fmt: skip
ChargeExceedsMaxTotal = _error(
    "ChargeExceedsMaxTotal", 3007, 409,
    "Rates or the fee moved since the user signed: the payment would cost more than its maxTotal.",
    "Rates or the fee moved past what the user signed: the payment would now take {total} (paid + fee), more than "
    "the maxTotal {maxTotal} the user signed. The payment has failed.",
)  # fmt: skip
LoyaltyTypeMismatch = _error(
    "LoyaltyTypeMismatch", 3008, 409, "The account pays in another loyalty type than the user signed.",
    "The account now pays in loyalty type {loyaltyType} (0 point, 1 token), not in the one the user signed: it "
    "switched since. The payment has failed.",
)  # fmt: skip
EscrowExpired = _error(
    "EscrowExpired", 3009, 409, "The payment's escrow has expired: only a refund is possible.",
    "The escrow of payment {paymentId} expired at {expiresAt} (unix seconds): only a refund to the user is possible "
    "(closeNew with confirm false, or closeCancel with confirm true).",
)  # fmt: skip
CreditLimitExceeded = _error(
    "CreditLimitExceeded", 3010, 409, "The shop's credit limit does not allow this.",
    "Shop {shopId} would owe {debt} points, beyond its credit limit of {creditLimit}: the operator must raise the "
    "shop's credit limit first.",
)  # fmt: skip
RewardCapExceeded = _error(
    "RewardCapExceeded", 3011, 409,
    "Purchase rewards only (their `error`): the day's reward cap is reached; retried after 00:00 UTC.",
    "The day's cap of purchase rewards is reached (this reward is {rewardPoint} points, {remaining} are left "
    "today); the cap resets at 00:00 UTC.",
)  # fmt: skip


# Every error, by code.
ERRORS: list[type[RelayError]] = sorted(
    [RelayError, *RelayError.__subclasses__(), *ChainRejected.__subclasses__()], key=lambda e: e.code
)


def table() -> str:
    """The error-code table, in Markdown."""
    rows = [f"| {e.code} | {e.http_status} | {e.default_message} |" for e in ERRORS]
    return "\n".join(["| code | HTTP | meaning |", "|---|---|---|", *rows])
