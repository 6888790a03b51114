"""Request and response bodies. Field names are the spec's (camelCase, generated from the Python
names); amounts are decimal integer strings. Responses are read from the records as they are
(`from_attributes`); a field named otherwise in the record says where it comes from."""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

from relay.chain import checksum
from relay.errors import ERRORS

T = TypeVar("T")

UINT256_MAX = 2**256 - 1


def _checked(pattern: str, message: str, convert: Any = str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> Any:
        if not compiled.fullmatch(value):  # `$` alone would let a final newline through
            raise ValueError(message)
        return convert(value)

    return AfterValidator(check)


def _address(value: str) -> str:
    checksummed = checksum(value)
    if value != checksummed and value != value.lower() and value[2:] != value[2:].upper():
        raise ValueError("has an invalid EIP-55 checksum")
    return checksummed


def _amount(value: str) -> str:
    number = int(value)
    if not 0 < number <= UINT256_MAX:
        raise ValueError("must be greater than zero and less than 2**256")
    return str(number)


def _field(pattern: str, **kwargs: Any) -> Any:
    """A Field whose JSON schema shows the pattern the validator enforces (with clearer messages)."""
    return Field(json_schema_extra={"pattern": pattern}, **kwargs)


Address = Annotated[
    str,
    _field(r"^0x[0-9a-fA-F]{40}$", max_length=42, examples=["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"]),
    _checked(r"^0x[0-9a-fA-F]{40}$", "must be a 0x-prefixed 20-byte hex address"),
    AfterValidator(_address),
]
Amount = Annotated[
    str,
    _field(r"^[0-9]{1,78}$", max_length=78, examples=["10000000000000000000"], description="> 0, < 2**256"),
    _checked(r"^[0-9]{1,78}$", "must be a decimal integer string (18 decimals, no decimal point, no sign)"),
    AfterValidator(_amount),
]
Bytes32 = Annotated[
    str,
    _field(r"^0x[0-9a-fA-F]{64}$", max_length=66),
    _checked(r"^0x[0-9a-fA-F]{64}$", "must be a 0x-prefixed 32-byte hex string", str.lower),
]
Currency = Annotated[
    str,
    _field(r"^[A-Za-z][A-Za-z0-9_]{0,15}$", max_length=16, examples=["krw"]),
    AfterValidator(lambda v: v.strip().lower()),
    _checked(r"^[a-z][a-z0-9_]{0,15}$", "must be a currency code such as krw, usd, the9 or point"),
]
Signature = Annotated[
    str,
    _field(r"^0x([0-9a-fA-F]{2}){65,2048}$", max_length=4098),
    _checked(
        r"^0x([0-9a-fA-F]{2}){65,2048}$", "must be a 0x-prefixed hex signature (65 bytes for a wallet key)", str.lower
    ),
]
PurchaseId = Annotated[
    str,
    _field(r"^[ -~]+$", min_length=1, max_length=64, examples=["P000001"]),
    _checked(r"^[\x20-\x7e]+$", "must be printable ASCII"),
]
ShopName = Annotated[
    str,
    Field(min_length=1, max_length=100, examples=["Demo Shop"]),
    _checked(r"(?=.*\S)[^\x00-\x1f\x7f]+", "must have a visible character and no control characters"),
]
Deadline = Annotated[int, Field(ge=0, lt=2**63, description="Unix seconds, part of the signed message")]
Seconds = Annotated[int, BeforeValidator(int)]  # a record's float time, as whole seconds
AccessKey = Annotated[
    str | None, Field(None, max_length=200, description="KIOSK access key (or `Authorization: Bearer`)")
]
_CONFIG = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Schema(BaseModel):
    """A response, read from a record (whose amounts may be numbers)."""

    model_config = _CONFIG | ConfigDict(from_attributes=True, coerce_numbers_to_str=True)


class Request(BaseModel):
    model_config = _CONFIG | ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- envelopes


class Ok(BaseModel, Generic[T]):
    code: int = Field(0, description="0 on success")
    data: T


class ErrorBody(BaseModel):
    message: str


class ErrorResponse(BaseModel):
    code: int = Field(description="Error code (see the table in the API description)")
    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the error responses a group of routes can give: the codes of each status."""
    return {
        status: {
            "model": ErrorResponse,
            "description": "\n".join(f"* {e.code}: {e.default_message}" for e in ERRORS if e.http_status == status),
        }
        for status in statuses
    }


# ----------------------------------------------------------------------------- requests


class AccountQuery(Request):
    account: Address = Field(description="Wallet address or temporary address")


class InfoQuery(AccountQuery):
    amount: Amount
    currency: Currency


class ShopQuery(Request):
    shop_id: Bytes32


class PaymentQuery(Request):
    payment_id: Bytes32


class PurchaseQuery(ShopQuery):
    purchase_id: PurchaseId


class OpenNewRequest(Request):
    access_key: AccessKey = None
    purchase_id: PurchaseId
    amount: Amount
    currency: Currency
    shop_id: Bytes32
    account: Address


PurchaseRequest = OpenNewRequest


class PaymentRequest(Request):
    access_key: AccessKey = None
    payment_id: Bytes32


class CloseRequest(PaymentRequest):
    confirm: bool = Field(True, description="true completes; false refunds / reverses")


class SignedPaymentRequest(Request):
    payment_id: Bytes32
    signature: Signature = Field(description="EIP-712 signature of the matching typed data from /v1/payment/item")


class TemporaryAccountRequest(Request):
    account: Address
    deadline: Deadline
    signature: Signature


class PushTokenRequest(TemporaryAccountRequest):
    token: str = Field(min_length=1, max_length=200, examples=["ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]"])


class ShopTypedDataQuery(Request):
    action: str = Field(description="AddShop, UpdateShop, OpenWithdrawal or CloseWithdrawal")
    shop_id: Bytes32
    account: Address | None = Field(None, description="The owner (AddShop only)")
    name: ShopName | None = None
    provide_wait_time: int | None = Field(None, ge=0, lt=2**32)
    provide_percent: int | None = Field(None, ge=0, le=10_000)
    amount: Amount | None = None


class WithdrawalCloseRequest(Request):
    shop_id: Bytes32
    deadline: Deadline
    signature: Signature = Field(description="The owner's signature of the action")


class WithdrawalOpenRequest(WithdrawalCloseRequest):
    amount: Amount


class ShopRequest(WithdrawalCloseRequest):
    name: ShopName
    provide_wait_time: int = Field(ge=0, lt=2**32, description="Seconds between a purchase and its reward")
    provide_percent: int = Field(ge=0, le=10_000, description="Reward rate, percent x 100 (1 % = 100)")


class AddShopRequest(ShopRequest):
    account: Address = Field(description="The shop owner, who signs AddShop")


# ----------------------------------------------------------------------------- responses


class Balance(Schema):
    account: str
    loyalty_type: int = Field(description="0: point, 1: token")
    balance: str


class Amounts(Schema):
    paid_point: str
    paid_token: str
    paid_value: str
    fee_point: str
    fee_token: str
    fee_value: str
    total_point: str
    total_token: str
    total_value: str


class PaymentInfo(Amounts):
    account: str
    loyalty_type: int
    amount: str
    currency: str
    balance: str


class PaymentBase(Amounts):
    """A payment as the app sees it (its wallet)."""

    payment_id: str
    purchase_id: str
    amount: str
    currency: str
    shop_id: str
    account: str
    loyalty_type: int
    payment_status: int = Field(
        validation_alias="status",
        description="1 received, 2 approved, 3 denied, 4 completed, 5 cancel received, 6 cancel approved, "
        "7 cancel denied, 8 cancel completed, 9 timed out, 10 failed on chain, 11 refunded",
    )


class OpenNewResult(PaymentBase):
    """A payment as the KIOSK sees it (the address it gave)."""

    account: str = Field(validation_alias="kiosk_account")
    open_new_timestamp: int = Field(validation_alias="open_new_at")


class CloseNewResult(OpenNewResult):
    close_new_timestamp: int | None = Field(validation_alias="close_new_at")


class OpenCancelResult(CloseNewResult):
    open_cancel_timestamp: int | None = Field(validation_alias="open_cancel_at")


class CloseCancelResult(OpenCancelResult):
    close_cancel_timestamp: int | None = Field(validation_alias="close_cancel_at")


class DecisionTypedData(Schema):
    confirm: dict[str, Any] = Field(
        description="eth_signTypedData_v4 document to approve; a NewPayment's loyaltyType and maxTotal are what "
        "the payment may take at most. Every integer of a message is a decimal string: sign it as served"
    )
    deny: dict[str, Any] = Field(description="eth_signTypedData_v4 document to deny")


class ItemResult(PaymentBase):
    create_timestamp: int = Field(validation_alias="open_new_at")
    cancel_timestamp: int | None = Field(validation_alias="open_cancel_at")
    typed_data: DecisionTypedData | None = Field(
        None, description="While a decision is pending (status 1 or 5): the exact documents to sign"
    )


class CreateResult(PaymentBase):
    tx_hash: str = Field(validation_alias="open_tx")


class CancelResult(PaymentBase):
    tx_hash: str = Field(validation_alias="cancel_tx")


class ShopInfo(Schema):
    shop_id: str
    name: str
    provide_wait_time: int
    provide_percent: int
    account: str
    provided_point: str
    used_point: str
    settled_point: str
    withdrawn_point: str


class ShopWithdrawal(Schema):
    shop_id: str
    withdraw_amount: str
    withdraw_status: int = Field(validation_alias="withdraw_open", description="0: none in progress, 1: in progress")


class ShopTx(ShopInfo, ShopWithdrawal):
    tx_hash: str


class TemporaryAccountResult(Schema):
    account: str
    temporary_account: str = Field(validation_alias="address")
    expires_at: Seconds


class PushTokenResult(Schema):
    account: str
    token: str


class ChainInfo(Schema):
    chain_id: int
    contracts: dict[str, str]
    domains: dict[str, dict[str, Any]] = Field(description="EIP-712 domains: payment, shop")


class PurchaseResult(Schema):
    purchase_id: str
    shop_id: str
    account: str = Field(validation_alias="kiosk_account")
    amount: str
    currency: str
    provide_timestamp: Seconds = Field(
        validation_alias="provide_at", description="When the reward is (or was) credited"
    )
    provide_status: int = Field(validation_alias="status", description="0 waiting, 1 provided, 2 failed")
    loyalty_type: int | None
    provided_amount: str | None = Field(
        validation_alias="reward", description="Credited, in the account's loyalty type"
    )
    provided_point: str | None = Field(
        validation_alias="reward_point", description="The reward's value in points (added to the shop's providedPoint)"
    )
    tx_hash: str | None = Field(validation_alias="tx")
    error: str | None = Field(
        description="Why the reward failed; or, while it waits, why it was put off (the day's reward cap: "
        "provideTimestamp is then the next UTC day)"
    )


class AppSessionResult(Schema):
    account: str
    token: str = Field(description="`Authorization: Bearer <token>` until expiresAt; given out only here")
    expires_at: Seconds


class SessionEnded(Schema):
    account: str
