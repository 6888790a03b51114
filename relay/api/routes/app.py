"""Mobile app endpoints (spec §5) and what the flows need besides: temporary addresses, push
tokens and a live notification stream."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from relay.api import schemas
from relay.api.deps import ServicesDep, in_thread
from relay.api.schemas import Ok, error_responses
from relay.models import Notification

router = APIRouter(prefix="/v1/payment", tags=["Mobile app"], responses=error_responses(400, 401, 403, 404, 409, 503))
_bearer = HTTPBearer(auto_error=False, description="A session token of the wallet (POST /v1/payment/account/session)")


async def session_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> str | None:
    return credentials.credentials if credentials else None


SessionToken = Annotated[str | None, Depends(session_token)]
SESSION_CHECK = 30.0  # seconds between looks, by an open stream, at whether its session was ended


@router.get("/chain", summary="Chain id, contract addresses and EIP-712 domains the app signs in")
@in_thread
def chain_info(services: ServicesDep) -> Ok[schemas.ChainInfo]:
    return Ok(data=schemas.ChainInfo.model_validate(services.wallets.chain_info()))


@router.get("/item", summary="5.1 A payment, with the typed data to sign while a decision is pending")
@in_thread
def item(
    q: Annotated[schemas.PaymentQuery, Query()], services: ServicesDep, token: SessionToken
) -> Ok[schemas.ItemResult]:
    """Opened through a temporary address, the payment names its wallet, and carries its typed data,
    only for a session of the wallet (`Authorization: Bearer`); to anyone else its `account` is the
    temporary address. A cancel's typed data (naming only the shop owner) is also given to the owner's session."""
    payment, revealed, pending = services.payments.item(q.payment_id, token)
    update: dict[str, Any] = {"typed_data": pending and schemas.DecisionTypedData(**pending)}
    if not revealed:
        update["account"] = payment.kiosk_account
    return Ok(data=schemas.ItemResult.model_validate(payment).model_copy(update=update))


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
    # The owner sees the account the KIOSK gave, as in the item: never the wallet behind a temporary address.
    return Ok(data=schemas.CancelResult.model_validate(payment).model_copy(update={"account": payment.kiosk_account}))


@router.post("/cancel/deny", summary="5.5 The shop owner denies a cancel")
@in_thread
def cancel_deny(body: schemas.SignedPaymentRequest, services: ServicesDep) -> Ok[schemas.PaymentBase]:
    payment = services.payments.deny_cancel(body.payment_id, body.signature)
    return Ok(data=schemas.PaymentBase.model_validate(payment).model_copy(update={"account": payment.kiosk_account}))


@router.post("/account/temporary", summary="A temporary wallet address for the payment QR code")
@in_thread
def temporary_account(
    body: schemas.TemporaryAccountRequest, services: ServicesDep
) -> Ok[schemas.TemporaryAccountResult]:
    created = services.wallets.temporary_account(body.account, body.deadline, body.signature)
    return Ok(data=schemas.TemporaryAccountResult.model_validate(created))


@router.post("/account/session", summary="A session token: the wallet's own view of its payments, and its stream")
@in_thread
def app_session(body: schemas.TemporaryAccountRequest, services: ServicesDep) -> Ok[schemas.AppSessionResult]:
    """Signed `AppSession(account, deadline)`, each signature accepted once, its deadline at most 5
    minutes ahead. The token lives `RELAY_APP_SESSION_TTL` (at most 1 hour)."""
    opened, token = services.wallets.open_session(body.account, body.deadline, body.signature)
    return Ok(data=schemas.AppSessionResult(account=opened.account, token=token, expires_at=opened.expires_at))


@router.delete("/account/session", summary="End the session of the bearer token (the app logs out)")
@in_thread
def end_app_session(services: ServicesDep, token: SessionToken) -> Ok[schemas.SessionEnded]:
    """The token is refused from then on; a stream open with it ends within SESSION_CHECK seconds."""
    return Ok(data=schemas.SessionEnded(account=services.wallets.end_session(token)))


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
    services: ServicesDep,
    token: SessionToken,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0, lt=2**63)] = None,
) -> EventSourceResponse:
    """Streams the notifications of the session's wallet (the same ones sent by push) until the
    session expires: from the next one, or resumed after the one with id `Last-Event-ID`, at most
    the wallet's 100 latest back."""
    opened, start = await asyncio.to_thread(services.wallets.open_stream, token, last_event_id)
    account = opened.account
    subscription = await services.streams.subscribe(account)

    async def stream() -> AsyncIterator[dict[str, Any]]:
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
            checked = time.monotonic()
            while time.time() < opened.expires_at and not subscription.overflowed:
                if time.monotonic() - checked > SESSION_CHECK:  # ended meanwhile (the app logged out)?
                    checked = time.monotonic()
                    if not await asyncio.to_thread(services.wallets.session_alive, token):
                        return
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

    # Also once the response ends without the stream having started (the client gone at once).
    return EventSourceResponse(stream(), ping=15, background=BackgroundTask(services.streams.unsubscribe, subscription))


def _event(row: Notification) -> dict[str, Any]:
    return {"id": str(row.id), "event": row.kind, "data": json.dumps(row.payload)}
