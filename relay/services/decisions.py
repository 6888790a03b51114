"""The EIP-712 documents the app signs for a pending decision: approving or denying a new payment
(its user) or a cancellation (the shop's owner), with the nonce the contract will expect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from relay import chain as onchain
from relay import typed_data
from relay.chain import Chain
from relay.config import Settings
from relay.errors import ChainUnavailable
from relay.models import ChainOp, Payment, PaymentStatus
from relay.services.operations import max_total

S = PaymentStatus
# The on-chain status before each user-signed opening: a claimed one still there is not sent yet.
BEFORE = {ChainOp.OPEN: onchain.NONE, ChainOp.OPEN_CANCEL: onchain.CLOSED}
NONCE_READS = 5  # how often the signature nonce is read around unsent signatures before giving up
UNSENT_SIGNATURES = select(Payment.payment_id, Payment.chain_op).where(
    Payment.signer == bindparam("signer"),
    Payment.chain_op.in_([ChainOp.OPEN, ChainOp.OPEN_CANCEL]),
    Payment.chain_tx.is_(None),
)


def signer_and_deadline(chain: Chain, settings: Settings, p: Payment) -> tuple[str, int]:
    """Who decides the payment's pending step (its user, or for a cancel the shop's owner), and until when."""
    if p.status == S.CANCEL_RECEIVED:
        return chain.shop(p.shop_id).account, (p.open_cancel_at or 0) + settings.signature_ttl
    return p.account, p.open_new_at + settings.signature_ttl


def approval(
    session: Session, chain: Chain, settings: Settings, p: Payment, signer: str, deadline: int
) -> dict[str, Any]:
    """The NewPayment (status 1) or CancelPayment (status 5) document that approves the step."""
    nonce = expected_nonce(session, chain, signer)
    message: dict[str, Any] = {"paymentId": p.payment_id, "purchaseId": p.purchase_id, "shopId": p.shop_id,
                               "account": signer, "nonce": nonce, "deadline": deadline}  # fmt: skip
    if p.status == S.CANCEL_RECEIVED:
        return typed_data.build("CancelPayment", chain.payment_domain(), message)
    message |= {"amount": int(p.amount), "currency": p.currency, "loyaltyType": p.loyalty_type,
                "maxTotal": max_total(p, settings)}  # fmt: skip
    return typed_data.build("NewPayment", chain.payment_domain(), message)


def denial(chain: Chain, p: Payment, signer: str, deadline: int) -> dict[str, Any]:
    primary_type = "DenyCancel" if p.status == S.CANCEL_RECEIVED else "DenyPayment"
    message = {"paymentId": p.payment_id, "account": signer, "deadline": deadline}
    return typed_data.build(primary_type, chain.payment_domain(), message)


def expected_nonce(session: Session, chain: Chain, account: str) -> int:
    """The nonce the next signature of `account` must carry: its nonce on the node's pending state
    (every transaction the node has accepted), plus its signatures the relay has claimed but not yet
    handed to the node. A mined block's state is no better: a node may answer calls at the newest
    block from a state it is still changing (anvil does while it mines)."""
    unsent = session.execute(UNSENT_SIGNATURES, {"signer": account}).all()
    nonce = chain.payment_nonce(account, "pending")
    for _ in range(NONCE_READS):
        if not unsent:
            return nonce
        # Claimed with no hash recorded: not sent yet, or sent a moment ago (then the pending
        # state has it, and the payment has left the status before its operation).
        waiting: int = sum(chain.payment_of(row.payment_id, "pending").status == BEFORE[row.chain_op] for row in unsent)
        again = chain.payment_nonce(account, "pending")  # one sent meanwhile is counted in neither
        if again == nonce:
            return nonce + waiting
        nonce = again
    raise ChainUnavailable("The signature nonce of the payment's signer keeps changing; try again.")
