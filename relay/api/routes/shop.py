"""Shop onboarding and settlement (spec §1.5): owner-signed actions the relay submits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from relay.api import schemas
from relay.api.deps import ServicesDep, in_thread, waiting
from relay.api.schemas import Ok, error_responses
from relay.chain import Shop

router = APIRouter(
    prefix="/v1/payment/shop", tags=["Shop owner"], responses=error_responses(400, 403, 404, 409, 422, 503)
)


def shop_tx(shop: Shop, tx: str) -> schemas.ShopTx:
    return schemas.ShopTx(
        shopId=shop.shop_id,
        name=shop.name,
        provideWaitTime=shop.provide_wait_time,
        providePercent=shop.provide_percent,
        account=shop.account,
        providedPoint=str(shop.provided_point),
        usedPoint=str(shop.used_point),
        settledPoint=str(shop.settled_point),
        withdrawnPoint=str(shop.withdrawn_point),
        withdrawAmount=str(shop.withdraw_amount),
        withdrawStatus=int(shop.withdraw_open),
        txHash=tx,
    )


@router.get("/typedData", summary="The EIP-712 document the shop owner signs for an action")
@in_thread
def typed_data(q: Annotated[schemas.ShopTypedDataQuery, Query()], services: ServicesDep) -> Ok[dict[str, Any]]:
    fields = {
        "shopId": q.shopId,
        "account": q.account,
        "name": q.name,
        "provideWaitTime": q.provideWaitTime,
        "providePercent": q.providePercent,
        "amount": int(q.amount) if q.amount else None,
    }
    message = {key: value for key, value in fields.items() if value is not None}
    return Ok(data=services.shops.typed_data(q.action, message))


@router.post("/add", summary="Register a shop (signed by its owner)")
async def add_shop(body: schemas.AddShopRequest, services: ServicesDep) -> Ok[schemas.ShopTx]:
    def add() -> tuple[Shop, str]:
        return services.shops.add(
            body.shopId,
            body.name,
            body.provideWaitTime,
            body.providePercent,
            body.account,
            body.deadline,
            body.signature,
        )

    return Ok(data=shop_tx(*await waiting(services, add)))


@router.post("/update", summary="Change a shop's name and reward settings (signed by its owner)")
async def update_shop(body: schemas.ShopRequest, services: ServicesDep) -> Ok[schemas.ShopTx]:
    def update() -> tuple[Shop, str]:
        return services.shops.update(
            body.shopId, body.name, body.provideWaitTime, body.providePercent, body.deadline, body.signature
        )

    return Ok(data=shop_tx(*await waiting(services, update)))


@router.post("/withdrawal/open", summary="Register a withdrawal of the shop's settlement (signed by its owner)")
async def open_withdrawal(body: schemas.WithdrawalOpenRequest, services: ServicesDep) -> Ok[schemas.ShopTx]:
    def open_() -> tuple[Shop, str]:
        return services.shops.open_withdrawal(body.shopId, int(body.amount), body.deadline, body.signature)

    return Ok(data=shop_tx(*await waiting(services, open_)))


@router.post("/withdrawal/close", summary="Confirm the withdrawal's money arrived (signed by its owner)")
async def close_withdrawal(body: schemas.WithdrawalCloseRequest, services: ServicesDep) -> Ok[schemas.ShopTx]:
    def close() -> tuple[Shop, str]:
        return services.shops.close_withdrawal(body.shopId, body.deadline, body.signature)

    return Ok(data=shop_tx(*await waiting(services, close)))
