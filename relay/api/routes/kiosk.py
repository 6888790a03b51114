"""KIOSK endpoints (spec §3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from relay.api import schemas
from relay.api.deps import Bearer, ServicesDep, authenticate_kiosk, in_thread, waiting
from relay.api.schemas import Ok, error_responses
from relay.errors import PurchaseNotFound
from relay.services import kiosks
from relay.services.kiosks import AccessKey

router = APIRouter(prefix="/v1/payment", tags=["KIOSK"], responses=error_responses(400, 401, 403, 404, 409, 422, 503))


@router.get("/user/balance", summary="3.1 The user's loyalty balance")
@in_thread
def user_balance(q: Annotated[schemas.AccountQuery, Query()], services: ServicesDep) -> Ok[schemas.Balance]:
    loyalty_type, balance = services.payments.balance(q.account)
    return Ok(data=schemas.Balance(account=q.account, loyalty_type=loyalty_type, balance=str(balance)))


@router.get("/info", summary="3.2 Loyalty a payment would use")
@in_thread
def payment_info(q: Annotated[schemas.InfoQuery, Query()], services: ServicesDep) -> Ok[schemas.PaymentInfo]:
    estimate = services.payments.estimate(q.account, int(q.amount), q.currency)
    return Ok(data=schemas.PaymentInfo.model_validate(vars(estimate) | q.model_dump()))


@router.post("/openNew", summary="3.3 Open a new payment")
@in_thread
def open_new(body: schemas.OpenNewRequest, services: ServicesDep, key: Bearer) -> Ok[schemas.OpenNewResult]:
    who = AccessKey(body.access_key or key)
    payment = services.payments.open_new(
        who, body.purchase_id, int(body.amount), body.currency, body.shop_id, body.account
    )
    return Ok(data=schemas.OpenNewResult.model_validate(payment))


@router.post("/closeNew", summary="3.4 Complete (or refund) an approved payment")
@waiting
def close_new(body: schemas.CloseRequest, services: ServicesDep, key: Bearer) -> Ok[schemas.CloseNewResult]:
    payment = services.payments.close_new(AccessKey(body.access_key or key), body.payment_id, body.confirm)
    return Ok(data=schemas.CloseNewResult.model_validate(payment))


@router.post("/openCancel", summary="3.5 Ask the shop owner to cancel a completed payment")
@in_thread
def open_cancel(body: schemas.PaymentRequest, services: ServicesDep, key: Bearer) -> Ok[schemas.OpenCancelResult]:
    payment = services.payments.open_cancel(AccessKey(body.access_key or key), body.payment_id)
    return Ok(data=schemas.OpenCancelResult.model_validate(payment))


@router.post("/closeCancel", summary="3.6 Complete (or revert) an approved cancel")
@waiting
def close_cancel(body: schemas.CloseRequest, services: ServicesDep, key: Bearer) -> Ok[schemas.CloseCancelResult]:
    who = AccessKey(body.access_key or key)
    payment = services.payments.close_cancel(who, body.payment_id, body.confirm)
    return Ok(data=schemas.CloseCancelResult.model_validate(payment))


@router.post("/purchase", summary="Report a purchase: its loyalty reward is credited after the shop's wait time")
@in_thread
def report_purchase(body: schemas.PurchaseRequest, services: ServicesDep, key: Bearer) -> Ok[schemas.PurchaseResult]:
    kiosk = authenticate_kiosk(services, body.access_key or key)
    purchase = services.rewards.report(
        kiosk, body.purchase_id, int(body.amount), body.currency, body.shop_id, body.account
    )
    return Ok(data=schemas.PurchaseResult.model_validate(purchase))


@router.get("/purchase", summary="A reported purchase and its reward (`Authorization: Bearer <access key>`)")
@in_thread
def purchase(
    q: Annotated[schemas.PurchaseQuery, Query()], services: ServicesDep, key: Bearer
) -> Ok[schemas.PurchaseResult]:
    kiosks.require_shop(authenticate_kiosk(services, key), q.shop_id)  # the buyer is the KIOSK's shop's business
    found = services.rewards.get(q.shop_id, q.purchase_id)
    if found is None:
        raise PurchaseNotFound(f"No purchase {q.purchase_id} was reported for shop {q.shop_id}.")
    return Ok(data=schemas.PurchaseResult.model_validate(found))


@router.get("/shop/info", summary="3.7 A shop's settings and totals")
@in_thread
def shop_info(q: Annotated[schemas.ShopQuery, Query()], services: ServicesDep) -> Ok[schemas.ShopInfo]:
    return Ok(data=schemas.ShopInfo.model_validate(services.shops.info(q.shop_id)))


@router.get("/shop/withdrawal", summary="3.8 A shop's withdrawal in progress")
@in_thread
def shop_withdrawal(q: Annotated[schemas.ShopQuery, Query()], services: ServicesDep) -> Ok[schemas.ShopWithdrawal]:
    return Ok(data=schemas.ShopWithdrawal.model_validate(services.shops.info(q.shop_id)))
