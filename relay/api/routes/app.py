"""Mobile app endpoints (spec §5) and what the flows need besides: temporary addresses, push
tokens and a live notification stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse

from relay.api import schemas
from relay.api.deps import ServicesDep, in_thread
from relay.api.schemas import Ok, error_responses
from relay.models import Notification

router = APIRouter(prefix="/v1/payment", tags=["Mobile app"], responses=error_responses(400, 403, 404, 409, 503))


@router.get("/chain", summary="Chain id, contract addresses and EIP-712 domains the app signs in")
@in_thread
def chain_info(services: ServicesDep) -> Ok[schemas.ChainInfo]:
    chain = services.chain
    contracts = {name: contract.address for name, contract in chain.contracts.items()}
    domains = {"payment": chain.payment_domain(), "shop": chain.shop_domain()}
    return Ok(data=schemas.ChainInfo(chain_id=chain.chain_id, contracts=contracts, domains=domains))


@router.get("/item", summary="5.1 A payment, with the typed data to sign while a decision is pending")
@in_thread
def item(q: Annotated[schemas.PaymentQuery, Query()], services: ServicesDep) -> Ok[schemas.ItemResult]:
    payment, pending = services.payments.item(q.payment_id)
    result = schemas.ItemResult.model_validate(payment)
    return Ok(data=result.model_copy(update={"typed_data": pending and schemas.DecisionTypedData(**pending)}))


@router.post("/create/confirm", summary="5.2 The user approves a new payment")
@in_thread
def create_confirm(body: schemas.SignedPaymentRequest, services: ServicesDep) -> Ok[schemas.CreateResult]:
    payment = services.payments.confirm_new(body.payment_id, body.signature)
    return Ok(data=schemas.CreateResult.model_validate(payment))


@router.post("/create/deny", summary="5.3 The user denies a new payment")
@in_thread
def create_deny(body: schemas.SignedPaymentRequest, services: ServicesDep) -> Ok[schemas.PaymentBase]:
    return Ok(data=schemas.PaymentBase.model_validate(services.payments.deny_new(body.payment_id, body.signature)))


@router.post("/cancel/confirm", summary="5.4 The shop owner approves a cancel")
@in_thread
def cancel_confirm(body: schemas.SignedPaymentRequest, services: ServicesDep) -> Ok[schemas.CancelResult]:
    payment = services.payments.confirm_cancel(body.payment_id, body.signature)
    return Ok(data=schemas.CancelResult.model_validate(payment))


@router.post("/cancel/deny", summary="5.5 The shop owner denies a cancel")
@in_thread
def cancel_deny(body: schemas.SignedPaymentRequest, services: ServicesDep) -> Ok[schemas.PaymentBase]:
    return Ok(data=schemas.PaymentBase.model_validate(services.payments.deny_cancel(body.payment_id, body.signature)))


@router.post("/account/temporary", summary="A temporary wallet address for the payment QR code")
@in_thread
def temporary_account(
    body: schemas.TemporaryAccountRequest, services: ServicesDep
) -> Ok[schemas.TemporaryAccountResult]:
    created = services.wallets.temporary_account(body.account, body.deadline, body.signature)
    return Ok(data=schemas.TemporaryAccountResult.model_validate(created))


@router.post("/push/token", summary="Register an Expo push token for a wallet")
@in_thread
def register_push_token(body: schemas.PushTokenRequest, services: ServicesDep) -> Ok[schemas.PushTokenResult]:
    services.wallets.register_push_token(body.account, body.token, body.deadline, body.signature)
    return Ok(data=schemas.PushTokenResult(account=body.account, token=body.token))


@router.get(
    "/events",
    summary="Live notifications for a wallet (server-sent events)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "One event per notification"}},
)
async def events(
    request: Request,
    account: Annotated[schemas.Address, Query()],
    deadline: Annotated[int, Query(ge=0, lt=2**63)],
    signature: Annotated[schemas.Signature, Query()],
    services: ServicesDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Streams the notifications of `account` (the same ones sent by push), after the one with id
    `Last-Event-ID`. Authorised by the wallet's `NotificationStream(account, deadline)` signature."""
    start = await asyncio.to_thread(services.wallets.open_stream, account, deadline, signature, last_event_id)

    async def stream() -> AsyncIterator[dict[str, Any]]:
        subscription = await services.streams.subscribe(account)
        try:
            # What the database holds after `start` (a resumed stream's backlog, and whatever came
            # while the stream opened), then what the hub hands out, each notification once.
            sent: set[int] = set()
            cursor = start
            while rows := await asyncio.to_thread(services.wallets.notifications, cursor, 100, account):
                for row in rows:
                    cursor = row.id
                    sent.add(row.id)
                    yield _event(row)
            while time.time() < deadline and not subscription.overflowed:
                try:
                    row = await asyncio.wait_for(subscription.queue.get(), timeout=1.0)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    continue
                if row.id > start and row.id not in sent:
                    yield _event(row)
        finally:
            services.streams.unsubscribe(subscription)

    return EventSourceResponse(stream(), ping=15)


def _event(row: Notification) -> dict[str, Any]:
    return {"id": str(row.id), "event": row.kind, "data": json.dumps(row.payload)}
