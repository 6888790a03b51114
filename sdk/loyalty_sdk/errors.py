"""The relay's error codes as exception classes: a failed call raises the class of the code the relay
answered (`except InsufficientBalance:`), and every one is a `LoyaltyError` with `code`, `message`
and the HTTP `status`. The codes and their meaning are the relay's documented table."""

from __future__ import annotations


class LoyaltyError(Exception):
    """An error answered by the relay; also an answer that is not the relay's (code 5000)."""

    code: int = 5000

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = type(self).code if code is None else code
        self.status = status


class InvalidParameter(LoyaltyError):
    """A parameter is missing or malformed."""

    code = 1000


class InvalidAccessKey(LoyaltyError):
    """The access key is missing, unknown or revoked."""

    code = 1001


class ShopNotAllowed(LoyaltyError):
    """The access key is not allowed for this shop."""

    code = 1002


class RateLimited(LoyaltyError):
    """Too many requests: try again after the answer's Retry-After seconds."""

    code = 1003


class InvalidSession(LoyaltyError):
    """The app's session token is missing, unknown or expired: open a new session."""

    code = 1004


class PaymentNotFound(LoyaltyError):
    code = 2001


class ShopNotFound(LoyaltyError):
    code = 2002


class TemporaryAccountNotFound(LoyaltyError):
    """Unknown, expired or already used temporary account."""

    code = 2003


class UnknownCurrency(LoyaltyError):
    code = 2004


class PurchaseNotFound(LoyaltyError):
    code = 2005


class InvalidStatus(LoyaltyError):
    """The payment's status does not allow this action."""

    code = 3001


class InvalidSignature(LoyaltyError):
    """Not the expected signer's signature of the expected message."""

    code = 3002


class ExpiredSignature(LoyaltyError):
    code = 3003


class DuplicatePurchase(LoyaltyError):
    """The purchase id was already used for a different payment."""

    code = 3005


class AmountNotAvailable(LoyaltyError):
    """More than the shop may withdraw (settled - withdrawn)."""

    code = 3006


class ChainUnavailable(LoyaltyError):
    """The chain node is unreachable; try again."""

    code = 4001


class ChainRejected(LoyaltyError):
    """The chain rejected the operation (the payment is marked failed)."""

    code = 4002


class StorageUnavailable(LoyaltyError):
    """The relay's database is unreachable or busy; try again."""

    code = 4003


class ShopApprovalPending(LoyaltyError):
    """The shop registration waits for the operator's approval."""

    code = 3012


class ShopRegistrationRefused(LoyaltyError):
    """The shop id is taken or its registration was rejected."""

    code = 3013


class TooManyShopRequests(LoyaltyError):
    """Too many shop registrations wait for approval."""

    code = 3014


class RewardLimitExceeded(LoyaltyError):
    """The purchase would pass the relay's reward limits (per purchase, per KIOSK or shop and day)."""

    code = 3015


class InsufficientBalance(ChainRejected):
    """The balance does not cover the payment: at openNew (nothing is opened), or at the approval if
    it was spent since (the payment has failed)."""

    code = 3004


class ChargeExceedsMaxTotal(ChainRejected):
    """Rates or the fee moved past the maxTotal the user signed; the payment has failed."""

    code = 3007


class LoyaltyTypeMismatch(ChainRejected):
    """The account switched loyalty type since the user signed; the payment has failed."""

    code = 3008


class EscrowExpired(ChainRejected):
    """The payment's escrow expired on chain: only a refund is possible."""

    code = 3009


class CreditLimitExceeded(ChainRejected):
    """The shop's credit limit does not allow this."""

    code = 3010


class RewardCapExceeded(ChainRejected):
    """The day's cap of purchase rewards is reached."""

    code = 3011


ERRORS: list[type[LoyaltyError]] = [
    LoyaltyError,
    InvalidParameter,
    InvalidAccessKey,
    ShopNotAllowed,
    RateLimited,
    InvalidSession,
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
    ShopApprovalPending,
    ShopRegistrationRefused,
    TooManyShopRequests,
    RewardLimitExceeded,
    ChainUnavailable,
    ChainRejected,
    StorageUnavailable,
]
_BY_CODE = {cls.code: cls for cls in ERRORS}


def from_answer(code: object, message: str, status: int) -> LoyaltyError:
    """The exception for an error the relay answered with `code`; a code this SDK does not know
    (a newer relay's) gives a plain LoyaltyError that keeps it."""
    known = _BY_CODE.get(code) if isinstance(code, int) else None
    if known is not None:
        return known(message, status=status)
    return LoyaltyError(message, code=code if isinstance(code, int) else None, status=status)
