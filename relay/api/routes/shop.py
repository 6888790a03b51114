"""Shop onboarding and settlement (spec §1.5): owner-signed actions the relay submits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from relay.api import schemas
from relay.api.deps import Services, ServicesDep, in_thread, waiting
from relay.api.schemas import Ok, error_responses
from relay.services import limits

router = APIRouter(
    prefix="/v1/payment/shop", tags=["Shop owner"], responses=error_responses(400, 403, 404, 409, 422, 429, 503)
)


@router.get("/typedData", summary="The EIP-712 document the shop owner signs for an action")
@in_thread
def typed_data(q: Annotated[schemas.ShopTypedDataQuery, Query()], services: ServicesDep) -> Ok[dict[str, Any]]:
    message = q.model_dump(by_alias=True, exclude={"action"}, exclude_none=True)
    return Ok(data=services.shops.typed_data(q.action, message))


def _submit(
    services: Services, action: str, body: schemas.WithdrawalCloseRequest, client_ip: str = "unknown"
) -> Ok[schemas.ShopTx]:
    message = body.model_dump(by_alias=True, exclude={"deadline", "signature"})
    if "amount" in message:
        message["amount"] = int(message["amount"])  # compared with the shop's balance, and a contract argument
    shop, tx = services.shops.submit(action, message, body.deadline, body.signature, client_ip)
    return Ok(data=schemas.ShopTx.model_validate(vars(shop) | {"tx_hash": tx}))


@router.post(
    "/add",
    summary="Register a shop (signed by its owner)",
    description="A new shop waits for the operator's approval (409, code 3012; nothing is sent): once the "
    "operator approved it, the owner signs and sends the registration again, and it is sent.",
)
@waiting
def add_shop(body: schemas.AddShopRequest, request: Request, services: ServicesDep) -> Ok[schemas.ShopTx]:
    return _submit(services, "AddShop", body, limits.client_of(request.client.host if request.client else None))


@router.post("/update", summary="Change a shop's name and reward settings (signed by its owner)")
@waiting
def update_shop(body: schemas.ShopRequest, services: ServicesDep) -> Ok[schemas.ShopTx]:
    return _submit(services, "UpdateShop", body)


@router.post("/withdrawal/open", summary="Register a withdrawal of the shop's settlement (signed by its owner)")
@waiting
def open_withdrawal(body: schemas.WithdrawalOpenRequest, services: ServicesDep) -> Ok[schemas.ShopTx]:
    return _submit(services, "OpenWithdrawal", body)


@router.post("/withdrawal/close", summary="Confirm the withdrawal's money arrived (signed by its owner)")
@waiting
def close_withdrawal(body: schemas.WithdrawalCloseRequest, services: ServicesDep) -> Ok[schemas.ShopTx]:
    return _submit(services, "CloseWithdrawal", body)
