"""Payment records shaped as the spec's result tables."""

from __future__ import annotations

from typing import Any, TypeVar

from relay.api import schemas
from relay.models import Payment
from relay.payments import kiosk_view

M = TypeVar("M", bound=schemas.PaymentBase)


def _timestamps(p: Payment) -> dict[str, Any]:
    return {
        "openNewTimestamp": p.open_new_at,
        "closeNewTimestamp": p.close_new_at,
        "openCancelTimestamp": p.open_cancel_at,
        "closeCancelTimestamp": p.close_cancel_at,
    }


def kiosk_payment(model: type[M], p: Payment) -> M:
    fields = kiosk_view(p) | {"paymentStatus": p.status} | _timestamps(p)
    return model.model_validate({k: v for k, v in fields.items() if k in model.model_fields})


def app_payment(model: type[M], p: Payment, **extra: Any) -> M:
    fields = kiosk_view(p) | {"account": p.account, "paymentStatus": p.status} | extra
    return model.model_validate({k: v for k, v in fields.items() if k in model.model_fields})
