"""Request and response bodies. Field names are the spec's; amounts are decimal integer strings."""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from relay.calls import checksum

T = TypeVar("T")

UINT256_MAX = 2**256 - 1
_HEX32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_AMOUNT = re.compile(r"^[0-9]{1,78}$")
_CURRENCY = re.compile(r"^[a-z][a-z0-9_]{0,15}$")
_SIGNATURE = re.compile(r"^0x([0-9a-fA-F]{2}){65,2048}$")
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    checksummed = checksum(value)
    if value != checksummed and value != value.lower() and value[2:] != value[2:].upper():
        raise ValueError("has an invalid EIP-55 checksum")
    return checksummed


def _amount(value: str) -> str:
    if not _AMOUNT.match(value):
        raise ValueError("must be a decimal integer string (18 decimals, no decimal point, no sign)")
    number = int(value)
    if number == 0:
        raise ValueError("must be greater than zero")
    if number > UINT256_MAX:
        raise ValueError("must be less than 2**256")
    return str(number)


def _bytes32(value: str) -> str:
    if not _HEX32.match(value):
        raise ValueError("must be a 0x-prefixed 32-byte hex string")
    return value.lower()


def _currency(value: str) -> str:
    value = value.strip().lower()
    if not _CURRENCY.match(value):
        raise ValueError("must be a currency code such as krw, usd, the9 or point")
    return value


def _signature(value: str) -> str:
    if not _SIGNATURE.match(value):
        raise ValueError("must be a 0x-prefixed hex signature (65 bytes for a wallet key)")
    return value.lower()


def _text(value: str) -> str:
    if not _PRINTABLE.match(value):
        raise ValueError("must be printable ASCII")
    return value


def _documented(pattern: str, **kwargs: Any) -> Any:
    """A Field whose JSON schema shows the pattern the validator enforces (with clearer messages)."""
    return Field(json_schema_extra={"pattern": pattern}, **kwargs)


Address = Annotated[
    str,
    _documented(r"^0x[0-9a-fA-F]{40}$", max_length=42, examples=["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"]),
    AfterValidator(_address),
]
Amount = Annotated[
    str,
    _documented(r"^[0-9]{1,78}$", max_length=78, examples=["10000000000000000000"], description="> 0, < 2**256"),
    AfterValidator(_amount),
]
Bytes32 = Annotated[str, _documented(r"^0x[0-9a-fA-F]{64}$", max_length=66), AfterValidator(_bytes32)]
Currency = Annotated[
    str, _documented(r"^[A-Za-z][A-Za-z0-9_]{0,15}$", max_length=16, examples=["krw"]), AfterValidator(_currency)
]
Signature = Annotated[str, _documented(r"^0x([0-9a-fA-F]{2}){65,2048}$", max_length=4098), AfterValidator(_signature)]
PurchaseId = Annotated[
    str, _documented(r"^[ -~]+$", min_length=1, max_length=64, examples=["P000001"]), AfterValidator(_text)
]
AccessKey = Annotated[
    str | None, Field(default=None, max_length=200, description="KIOSK access key (or `Authorization: Bearer`)")
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- envelopes


class Ok(BaseModel, Generic[T]):
    code: int = Field(0, description="0 on success")
    data: T


class ErrorBody(BaseModel):
    message: str


class ErrorResponse(BaseModel):
    code: int = Field(description="Error code (see the table in the API description)")
    error: ErrorBody


_STATUS_TEXT = {
    400: "Invalid parameter (code 1000) or unknown currency (2004)",
    401: "Missing, unknown or revoked access key (1001)",
    403: "Access key not allowed for the shop (1002), or a bad or expired signature (3002, 3003)",
    404: "Unknown payment, shop, purchase or temporary account (2001-2005)",
    409: "Wrong status for this action (3001), purchase id reused (3005), rates moved past the signed maxTotal "
    "(3007), loyalty type changed (3008), escrow expired: refund only (3009), shop credit limit (3010), "
    "or rejected by the chain (4002)",
    422: "Insufficient balance (3004) or amount not withdrawable (3006)",
    503: "The chain node (4001) or the database (4003) is unreachable",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error responses a group of routes can give."""
    return {status: {"model": ErrorResponse, "description": _STATUS_TEXT[status]} for status in statuses}


# ----------------------------------------------------------------------------- KIOSK requests


class AccountQuery(Request):
    account: Address = Field(description="Wallet address or temporary address")


class InfoQuery(Request):
    account: Address
    amount: Amount
    currency: Currency


class ShopQuery(Request):
    shopId: Bytes32


class OpenNewRequest(Request):
    accessKey: AccessKey = None
    purchaseId: PurchaseId
    amount: Amount
    currency: Currency
    shopId: Bytes32
    account: Address


class PaymentRequest(Request):
    accessKey: AccessKey = None
    paymentId: Bytes32


class CloseRequest(PaymentRequest):
    confirm: bool = Field(True, description="true completes; false refunds / reverses")


# ----------------------------------------------------------------------------- app requests


class PaymentQuery(Request):
    paymentId: Bytes32


class SignedPaymentRequest(Request):
    paymentId: Bytes32
    signature: Signature = Field(description="EIP-712 signature of the matching typed data from /v1/payment/item")


class TemporaryAccountRequest(Request):
    account: Address
    deadline: int = Field(ge=0, lt=2**63, description="Unix seconds; part of the signed TemporaryAccount message")
    signature: Signature


class PushTokenRequest(Request):
    account: Address
    token: str = Field(min_length=1, max_length=200, examples=["ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]"])
    deadline: int = Field(ge=0, lt=2**63)
    signature: Signature


# ----------------------------------------------------------------------------- responses


class Balance(BaseModel):
    account: str
    loyaltyType: int = Field(description="0: point, 1: token")
    balance: str


class Amounts(BaseModel):
    paidPoint: str
    paidToken: str
    paidValue: str
    feePoint: str
    feeToken: str
    feeValue: str
    totalPoint: str
    totalToken: str
    totalValue: str


class PaymentInfo(Amounts):
    account: str
    loyaltyType: int
    amount: str
    currency: str
    balance: str


class PaymentBase(Amounts):
    paymentId: str
    purchaseId: str
    amount: str
    currency: str
    shopId: str
    account: str
    loyaltyType: int
    paymentStatus: int = Field(
        description="1 received, 2 approved, 3 denied, 4 completed, 5 cancel received, 6 cancel approved, "
        "7 cancel denied, 8 cancel completed, 9 timed out, 10 failed on chain, 11 refunded"
    )


class OpenNewResult(PaymentBase):
    openNewTimestamp: int


class CloseNewResult(OpenNewResult):
    closeNewTimestamp: int | None


class OpenCancelResult(CloseNewResult):
    openCancelTimestamp: int | None


class CloseCancelResult(OpenCancelResult):
    closeCancelTimestamp: int | None


class DecisionTypedData(BaseModel):
    confirm: dict[str, Any] = Field(
        description="eth_signTypedData_v4 document to approve; a NewPayment's loyaltyType and maxTotal are what "
        "the payment may take at most. Every integer of a message is a decimal string: sign it as served"
    )
    deny: dict[str, Any] = Field(description="eth_signTypedData_v4 document to deny")


class ItemResult(PaymentBase):
    createTimestamp: int
    cancelTimestamp: int | None
    typedData: DecisionTypedData | None = Field(
        description="While a decision is pending (status 1 or 5): the exact documents to sign"
    )


class TxResult(PaymentBase):
    txHash: str


class ShopInfo(BaseModel):
    shopId: str
    name: str
    provideWaitTime: int
    providePercent: int
    account: str
    providedPoint: str
    usedPoint: str
    settledPoint: str
    withdrawnPoint: str


class ShopWithdrawal(BaseModel):
    shopId: str
    withdrawAmount: str
    withdrawStatus: int = Field(description="0: no withdrawal in progress, 1: in progress")


class TemporaryAccountResult(BaseModel):
    account: str
    temporaryAccount: str
    expiresAt: int


class PushTokenResult(BaseModel):
    account: str
    token: str


class ChainInfo(BaseModel):
    chainId: int
    contracts: dict[str, str]
    domains: dict[str, dict[str, Any]] = Field(description="EIP-712 domains: payment, shop")


# ----------------------------------------------------------------------------- shops and rewards


class PurchaseRequest(Request):
    accessKey: AccessKey = None
    purchaseId: PurchaseId
    amount: Amount
    currency: Currency
    shopId: Bytes32
    account: Address


class PurchaseQuery(Request):
    shopId: Bytes32
    purchaseId: PurchaseId


class PurchaseResult(BaseModel):
    purchaseId: str
    shopId: str
    account: str
    amount: str
    currency: str
    provideTimestamp: int = Field(description="When the reward is (or was) credited")
    provideStatus: int = Field(description="0 waiting, 1 provided, 2 failed")
    loyaltyType: int | None
    providedAmount: str | None = Field(description="Credited, in the account's loyalty type")
    providedPoint: str | None = Field(description="The reward's value in points (added to the shop's providedPoint)")
    txHash: str | None
    error: str | None = Field(
        description="Why the reward failed; or, while it waits, why it was put off (the day's reward cap: "
        "provideTimestamp is then the next UTC day)"
    )


class ShopTypedDataQuery(Request):
    action: str = Field(description="AddShop, UpdateShop, OpenWithdrawal or CloseWithdrawal")
    shopId: Bytes32
    account: Address | None = Field(None, description="The owner (AddShop only)")
    name: str | None = Field(None, max_length=100)
    provideWaitTime: int | None = Field(None, ge=0, lt=2**32)
    providePercent: int | None = Field(None, ge=0, le=10_000)
    amount: Amount | None = None


class ShopRequest(Request):
    shopId: Bytes32
    name: str = Field(min_length=1, max_length=100)
    provideWaitTime: int = Field(ge=0, lt=2**32, description="Seconds between a purchase and its reward")
    providePercent: int = Field(ge=0, le=10_000, description="Reward rate, percent x 100 (1 % = 100)")
    deadline: int = Field(ge=0, lt=2**63)
    signature: Signature


class AddShopRequest(ShopRequest):
    account: Address = Field(description="The shop owner, who signs AddShop")


class WithdrawalOpenRequest(Request):
    shopId: Bytes32
    amount: Amount
    deadline: int = Field(ge=0, lt=2**63)
    signature: Signature = Field(description="The owner's OpenWithdrawal signature")


class WithdrawalCloseRequest(Request):
    shopId: Bytes32
    deadline: int = Field(ge=0, lt=2**63)
    signature: Signature = Field(description="The owner's CloseWithdrawal signature")


class ShopTx(ShopInfo):
    withdrawAmount: str
    withdrawStatus: int
    txHash: str
