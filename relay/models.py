"""Tables. Amounts are decimal strings (exact for any uint256 on every database); times are unix seconds."""

from __future__ import annotations

import enum
import time
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from relay.db import Base


def now() -> float:
    return time.time()


class PaymentStatus(enum.IntEnum):
    """Payment statuses of the API (spec §3.3), plus 10 and 11."""

    NEW = 1  # openNew received; waiting for the user
    APPROVED = 2  # the user approved; the on-chain open was sent (escrow)
    DENIED = 3  # the user denied
    COMPLETED = 4  # closeNew: escrow moved to the shop and fee account
    CANCEL_RECEIVED = 5  # openCancel received; waiting for the shop owner
    CANCEL_APPROVED = 6  # the owner approved; the on-chain cancel was sent (back into escrow)
    CANCEL_DENIED = 7  # the owner denied; the payment stands and may be cancelled again
    CANCEL_COMPLETED = 8  # closeCancel: escrow returned to the user
    TIMEOUT = 9  # no decision in time
    FAILED = 10  # the chain rejected the operation
    REFUNDED = 11  # closed with a refund: closeNew(confirm=false), or not closed in time


class ChainOp(enum.StrEnum):
    """The on-chain transaction a payment is waiting for."""

    OPEN = "open"
    CLOSE = "close"
    REFUND = "refund"
    OPEN_CANCEL = "open_cancel"
    CLOSE_CANCEL = "close_cancel"
    REVERT_CANCEL = "revert_cancel"


class KioskClient(Base):
    __tablename__ = "kiosk_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the access key
    key_hint: Mapped[str] = mapped_column(String(12))  # first characters, for operators
    callback_url: Mapped[str | None] = mapped_column(String(500))
    callback_secret: Mapped[str] = mapped_column(String(100))  # whsec_..., signs callbacks
    created_at: Mapped[float] = mapped_column(Float, default=now)
    revoked_at: Mapped[float | None] = mapped_column(Float)


class KioskShop(Base):
    __tablename__ = "kiosk_shops"

    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosk_clients.id", ondelete="CASCADE"), primary_key=True)
    shop_id: Mapped[str] = mapped_column(String(66), primary_key=True)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("shop_id", "purchase_id", name="uq_payments_shop_purchase"),
        Index("ix_payments_status_updated", "status", "updated_at"),
        Index("ix_payments_chain_op", "chain_op"),
    )

    payment_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(String(100))
    amount: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(16))
    shop_id: Mapped[str] = mapped_column(String(66))
    account: Mapped[str] = mapped_column(String(42), index=True)  # the wallet
    kiosk_account: Mapped[str] = mapped_column(String(42))  # as the KIOSK gave it (maybe temporary)
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosk_clients.id"))
    loyalty_type: Mapped[int] = mapped_column(Integer)
    paid_point: Mapped[str] = mapped_column(String(80))
    paid_token: Mapped[str] = mapped_column(String(80))
    paid_value: Mapped[str] = mapped_column(String(80))
    fee_point: Mapped[str] = mapped_column(String(80))
    fee_token: Mapped[str] = mapped_column(String(80))
    fee_value: Mapped[str] = mapped_column(String(80))
    total_point: Mapped[str] = mapped_column(String(80))
    total_token: Mapped[str] = mapped_column(String(80))
    total_value: Mapped[str] = mapped_column(String(80))
    status: Mapped[int] = mapped_column(Integer, default=PaymentStatus.NEW)
    open_new_at: Mapped[int] = mapped_column(BigInteger)
    close_new_at: Mapped[int | None] = mapped_column(BigInteger)
    open_cancel_at: Mapped[int | None] = mapped_column(BigInteger)
    close_cancel_at: Mapped[int | None] = mapped_column(BigInteger)
    chain_op: Mapped[str | None] = mapped_column(String(16))  # the on-chain transaction in flight (ChainOp)
    chain_tx: Mapped[str | None] = mapped_column(String(66))
    chain_op_at: Mapped[float | None] = mapped_column(Float)
    signature: Mapped[str | None] = mapped_column(Text)  # the app's, for the open or cancel in flight
    signer: Mapped[str | None] = mapped_column(String(42))
    decided_at: Mapped[float | None] = mapped_column(Float)
    open_tx: Mapped[str | None] = mapped_column(String(66))
    close_tx: Mapped[str | None] = mapped_column(String(66))
    cancel_tx: Mapped[str | None] = mapped_column(String(66))
    close_cancel_tx: Mapped[str | None] = mapped_column(String(66))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float, default=now, onupdate=now)


class CallbackState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class Callback(Base):
    """Outbox of KIOSK callbacks: one row per message, the same id on every retry."""

    __tablename__ = "callbacks"
    __table_args__ = (Index("ix_callbacks_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # msg_<hex>, the webhook-id header
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosk_clients.id"))
    payment_id: Mapped[str] = mapped_column(String(66), index=True)
    type: Mapped[str] = mapped_column(String(16))
    code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)  # the exact JSON that is signed and sent
    state: Mapped[str] = mapped_column(String(16), default=CallbackState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, default=now)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    delivered_at: Mapped[float | None] = mapped_column(Float)
    last_error: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    """Messages to the app (a user or a shop owner): pushed through Expo and streamed over SSE."""

    __tablename__ = "notifications"
    __table_args__ = (  # the push worker's queue: only the rows still to push, not the history
        Index("ix_notifications_unpushed", "id", postgresql_where=text("pushed = 0"), sqlite_where=text("pushed = 0")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(42), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[str | None] = mapped_column(String(66))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=now)
    pushed: Mapped[int] = mapped_column(Integer, default=0)  # 0 to do, 1 done or nothing to do


class PushToken(Base):
    __tablename__ = "push_tokens"

    account: Mapped[str] = mapped_column(String(42), primary_key=True)
    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class TemporaryAccount(Base):
    __tablename__ = "temporary_accounts"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    account: Mapped[str] = mapped_column(String(42))
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    used_at: Mapped[float | None] = mapped_column(Float)


class Signer(Base):
    """Next nonce of each relay signer; the row lock serialises sends across relay instances."""

    __tablename__ = "signers"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    next_nonce: Mapped[int | None] = mapped_column(BigInteger)


class PurchaseStatus(enum.IntEnum):
    WAITING = 0  # credited after the shop's provideWaitTime
    PROVIDED = 1
    FAILED = 2


class Purchase(Base):
    """A purchase a KIOSK reported; its loyalty reward is credited on chain after the shop's wait time."""

    __tablename__ = "purchases"
    __table_args__ = (
        Index("ix_purchases_due", "status", "provide_at"),
        Index("ix_purchases_kiosk_created", "kiosk_id", "created_at"),  # the KIOSK's rewards of the day
        Index("ix_purchases_shop_created", "shop_id", "created_at"),  # the shop's rewards of the day
    )

    shop_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    purchase_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    account: Mapped[str] = mapped_column(String(42))
    kiosk_account: Mapped[str] = mapped_column(String(42))
    kiosk_id: Mapped[int] = mapped_column(ForeignKey("kiosk_clients.id"))
    amount: Mapped[str] = mapped_column(String(80))
    currency: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer, default=PurchaseStatus.WAITING)
    provide_at: Mapped[float] = mapped_column(Float)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
    tx: Mapped[str | None] = mapped_column(String(66))
    loyalty_type: Mapped[int | None] = mapped_column(Integer)
    reward: Mapped[str | None] = mapped_column(String(80))  # in the account's loyalty type
    reward_point: Mapped[str | None] = mapped_column(String(80))
    expected_point: Mapped[str | None] = mapped_column(String(80))  # the reward at the rates of the report
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class IndexerCursor(Base):
    __tablename__ = "indexer_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_block: Mapped[int] = mapped_column(BigInteger)


class ChainEvent(Base):
    """Every event of the deployed contracts, as the chain logged it (one row per log)."""

    __tablename__ = "chain_events"
    __table_args__ = (UniqueConstraint("tx_hash", "log_index", name="uq_chain_events_log"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    block_number: Mapped[int] = mapped_column(BigInteger, index=True)
    log_index: Mapped[int] = mapped_column(Integer)
    tx_hash: Mapped[str] = mapped_column(String(66))
    contract: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(64), index=True)
    payment_id: Mapped[str | None] = mapped_column(String(66), index=True)
    shop_id: Mapped[str | None] = mapped_column(String(66), index=True)
    account: Mapped[str | None] = mapped_column(String(42))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)


class Shop(Base):
    """A shop as of the last indexed block that touched it (read from the registry at that block)."""

    __tablename__ = "shops"

    shop_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str] = mapped_column(String(42))
    provide_wait_time: Mapped[int] = mapped_column(BigInteger)
    provide_percent: Mapped[int] = mapped_column(Integer)
    provided_point: Mapped[str] = mapped_column(String(80))
    used_point: Mapped[str] = mapped_column(String(80))
    settled_point: Mapped[str] = mapped_column(String(80))
    withdrawn_point: Mapped[str] = mapped_column(String(80))
    withdraw_amount: Mapped[str] = mapped_column(String(80))
    block_number: Mapped[int] = mapped_column(BigInteger)


class Withdrawal(Base):
    __tablename__ = "withdrawals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    shop_id: Mapped[str] = mapped_column(String(66), index=True)
    amount: Mapped[str] = mapped_column(String(80))
    opened_tx: Mapped[str] = mapped_column(String(66), unique=True)
    opened_block: Mapped[int] = mapped_column(BigInteger)
    closed_tx: Mapped[str | None] = mapped_column(String(66))
    closed_block: Mapped[int | None] = mapped_column(BigInteger)
    transfer_reference: Mapped[str | None] = mapped_column(String(200))
    transfer_recorded_at: Mapped[float | None] = mapped_column(Float)
    transfer_recorded_by: Mapped[str | None] = mapped_column(String(100))


class ShopRegistration(Base):
    """A shop registration the relay would pay gas for: pending until an operator approves or rejects it."""

    __tablename__ = "shop_requests"

    shop_id: Mapped[str] = mapped_column(String(66), primary_key=True)
    owner: Mapped[str] = mapped_column(String(42), index=True)
    name: Mapped[str] = mapped_column(String(200))
    provide_wait_time: Mapped[int] = mapped_column(BigInteger)
    provide_percent: Mapped[int] = mapped_column(Integer)
    client_ip: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, approved or rejected
    requested_at: Mapped[float] = mapped_column(Float, default=now)
    decided_at: Mapped[float | None] = mapped_column(Float)
    decided_by: Mapped[str | None] = mapped_column(String(100))


class AppSession(Base):
    """A wallet's session (DESIGN.md §5): the SHA-256 of its bearer token, so a leaked table opens no session."""

    __tablename__ = "app_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(String(42))
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class UsedSignature(Base):
    """The EIP-712 digest of each off-chain app signature accepted, kept until its deadline has passed:
    the primary key lets only one use of a signed message succeed, across relay instances."""

    __tablename__ = "used_signatures"

    digest: Mapped[str] = mapped_column(String(66), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float, index=True)


# A wallet's latest notifications, newest first (where a resumed stream may start), read in id order.
Index("ix_notifications_account_id", Notification.account, Notification.id)
