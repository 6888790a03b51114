"""The relay's answers (the `data` of `{"code": 0, "data": ...}`), with the API's field names.
Amounts are decimal integer strings with 18 decimals, as the relay sends them. Fields a newer
relay adds are ignored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class Balance(BaseModel):
    account: str
    loyaltyType: int  # 0 point, 1 token
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


class Payment(Amounts):
    paymentId: str
    purchaseId: str
    amount: str
    currency: str
    shopId: str
    account: str
    loyaltyType: int
    # 1 received, 2 approved, 3 denied, 4 completed, 5 cancel received, 6 cancel approved,
    # 7 cancel denied, 8 cancel completed, 9 timed out, 10 failed on chain, 11 refunded
    paymentStatus: int


class OpenNewResult(Payment):
    openNewTimestamp: int


class CloseNewResult(OpenNewResult):
    closeNewTimestamp: int | None


class OpenCancelResult(CloseNewResult):
    openCancelTimestamp: int | None


class CloseCancelResult(OpenCancelResult):
    closeCancelTimestamp: int | None


class DecisionTypedData(BaseModel):
    """The eth_signTypedData_v4 documents of a pending decision, to be signed as served."""

    confirm: dict[str, Any]
    deny: dict[str, Any]


class Item(Payment):
    createTimestamp: int
    cancelTimestamp: int | None
    typedData: DecisionTypedData | None  # while a decision is pending (status 1 or 5)


class TxResult(Payment):
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
    withdrawStatus: int  # 0 none in progress, 1 in progress


class ShopTx(ShopInfo):
    withdrawAmount: str
    withdrawStatus: int
    txHash: str


class Purchase(BaseModel):
    purchaseId: str
    shopId: str
    account: str
    amount: str
    currency: str
    provideTimestamp: int
    provideStatus: int  # 0 waiting, 1 provided, 2 failed
    loyaltyType: int | None
    providedAmount: str | None
    providedPoint: str | None
    txHash: str | None
    error: str | None


class TemporaryAccount(BaseModel):
    account: str
    temporaryAccount: str
    expiresAt: int


class AppSession(BaseModel):
    """The wallet's session: `Authorization: Bearer <token>` until `expiresAt` (unix seconds)."""

    account: str
    token: str
    expiresAt: int


class SessionEnded(BaseModel):
    account: str


class PushToken(BaseModel):
    account: str
    token: str


class ChainInfo(BaseModel):
    chainId: int
    contracts: dict[str, str]
    domains: dict[str, dict[str, Any]]  # EIP-712 domains: "payment", "shop"


class Notification(BaseModel):
    """One event of the live notification stream (the same messages as the push notifications)."""

    id: int
    event: str
    data: dict[str, Any]
