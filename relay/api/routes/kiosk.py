"""KIOSK endpoints (spec §3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from relay.api import schemas
from relay.api.deps import Authorization, ServicesDep, access_key, authenticate_kiosk, in_thread, waiting
from relay.api.schemas import Ok, error_responses
from relay.api.views import kiosk_payment
from relay.errors import PurchaseNotFound
from relay.models import Purchase

router = APIRouter(prefix="/v1/payment", tags=["KIOSK"], responses=error_responses(400, 401, 403, 404, 409, 422, 503))


@router.get("/user/balance", summary="3.1 The user's loyalty balance")
@in_thread
def user_balance(q: Annotated[schemas.AccountQuery, Query()], services: ServicesDep) -> Ok[schemas.Balance]:
    account, loyalty_type, balance = services.payments.balance(q.account)
    return Ok(data=schemas.Balance(account=account, loyaltyType=loyalty_type, balance=str(balance)))


@router.get("/info", summary="3.2 Loyalty a payment would use")
@in_thread
def payment_info(q: Annotated[schemas.InfoQuery, Query()], services: ServicesDep) -> Ok[schemas.PaymentInfo]:
    e = services.payments.estimate(q.account, int(q.amount), q.currency)
    return Ok(
        data=schemas.PaymentInfo(
            account=q.account,
            loyaltyType=e.loyalty_type,
            amount=q.amount,
            currency=q.currency,
            balance=str(e.balance),
            paidPoint=str(e.paid_point),
            paidToken=str(e.paid_token),
            paidValue=str(e.paid_value),
            feePoint=str(e.fee_point),
            feeToken=str(e.fee_token),
            feeValue=str(e.fee_value),
            totalPoint=str(e.total_point),
            totalToken=str(e.total_token),
            totalValue=str(e.total_value),
        )
    )


@router.post("/openNew", summary="3.3 Open a new payment")
@in_thread
def open_new(
    body: schemas.OpenNewRequest, services: ServicesDep, authorization: Authorization = None
) -> Ok[schemas.OpenNewResult]:
    payment = services.payments.open_new(
        access_key(body.accessKey, authorization),
        body.purchaseId,
        int(body.amount),
        body.currency,
        body.shopId,
        body.account,
    )
    return Ok(data=kiosk_payment(schemas.OpenNewResult, payment))


@router.post("/closeNew", summary="3.4 Complete (or refund) an approved payment")
async def close_new(
    body: schemas.CloseRequest, services: ServicesDep, authorization: Authorization = None
) -> Ok[schemas.CloseNewResult]:
    def close() -> Ok[schemas.CloseNewResult]:
        who = access_key(body.accessKey, authorization)
        payment = services.payments.close_new(who, body.paymentId, body.confirm)
        return Ok(data=kiosk_payment(schemas.CloseNewResult, payment))

    return await waiting(services, close)


@router.post("/openCancel", summary="3.5 Ask the shop owner to cancel a completed payment")
@in_thread
def open_cancel(
    body: schemas.PaymentRequest, services: ServicesDep, authorization: Authorization = None
) -> Ok[schemas.OpenCancelResult]:
    payment = services.payments.open_cancel(access_key(body.accessKey, authorization), body.paymentId)
    return Ok(data=kiosk_payment(schemas.OpenCancelResult, payment))


@router.post("/closeCancel", summary="3.6 Complete (or revert) an approved cancel")
async def close_cancel(
    body: schemas.CloseRequest, services: ServicesDep, authorization: Authorization = None
) -> Ok[schemas.CloseCancelResult]:
    def close() -> Ok[schemas.CloseCancelResult]:
        who = access_key(body.accessKey, authorization)
        payment = services.payments.close_cancel(who, body.paymentId, body.confirm)
        return Ok(data=kiosk_payment(schemas.CloseCancelResult, payment))

    return await waiting(services, close)


def _purchase(p: Purchase) -> schemas.PurchaseResult:
    return schemas.PurchaseResult(
        purchaseId=p.purchase_id,
        shopId=p.shop_id,
        account=p.kiosk_account,
        amount=p.amount,
        currency=p.currency,
        provideTimestamp=int(p.provide_at),
        provideStatus=p.status,
        loyaltyType=p.loyalty_type,
        providedAmount=p.reward,
        providedPoint=p.reward_point,
        txHash=p.tx,
        error=p.error,
    )


@router.post("/purchase", summary="Report a purchase: its loyalty reward is credited after the shop's wait time")
@in_thread
def report_purchase(
    body: schemas.PurchaseRequest, services: ServicesDep, authorization: Authorization = None
) -> Ok[schemas.PurchaseResult]:
    kiosk = authenticate_kiosk(services, body.accessKey, authorization)
    purchase = services.rewards.report(
        kiosk, body.purchaseId, int(body.amount), body.currency, body.shopId, body.account
    )
    return Ok(data=_purchase(purchase))


@router.get("/purchase", summary="A reported purchase and its reward")
@in_thread
def purchase(q: Annotated[schemas.PurchaseQuery, Query()], services: ServicesDep) -> Ok[schemas.PurchaseResult]:
    found = services.rewards.get(q.shopId, q.purchaseId)
    if found is None:
        raise PurchaseNotFound(f"No purchase {q.purchaseId} was reported for shop {q.shopId}.")
    return Ok(data=_purchase(found))


@router.get("/shop/info", summary="3.7 A shop's settings and totals")
@in_thread
def shop_info(q: Annotated[schemas.ShopQuery, Query()], services: ServicesDep) -> Ok[schemas.ShopInfo]:
    shop = services.chain.shop(q.shopId)
    return Ok(
        data=schemas.ShopInfo(
            shopId=shop.shop_id,
            name=shop.name,
            provideWaitTime=shop.provide_wait_time,
            providePercent=shop.provide_percent,
            account=shop.account,
            providedPoint=str(shop.provided_point),
            usedPoint=str(shop.used_point),
            settledPoint=str(shop.settled_point),
            withdrawnPoint=str(shop.withdrawn_point),
        )
    )


@router.get("/shop/withdrawal", summary="3.8 A shop's withdrawal in progress")
@in_thread
def shop_withdrawal(q: Annotated[schemas.ShopQuery, Query()], services: ServicesDep) -> Ok[schemas.ShopWithdrawal]:
    shop = services.chain.shop(q.shopId)
    return Ok(
        data=schemas.ShopWithdrawal(
            shopId=shop.shop_id, withdrawAmount=str(shop.withdraw_amount), withdrawStatus=int(shop.withdraw_open)
        )
    )
