"""The operator page (`/admin`): shops and their totals, withdrawal requests (indexed events) with a
"transfer recorded" action, recent payments with their callbacks' delivery. HTTP Basic log-in with
RELAY_ADMIN_USER / RELAY_ADMIN_PASSWORD (no password: no page); forms carry a CSRF token derived from it."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from relay.api.deps import Services, ServicesDep
from relay.models import Callback, IndexerCursor, Payment, PaymentStatus, Purchase, Shop, Withdrawal, now

router = APIRouter(prefix="/admin", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
basic = HTTPBasic(realm="loyalty relay admin")
UNIT = 10**18
# The page is never framed, sniffed, cached or allowed anything but its own inline style and forms.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _points(value: str | None) -> str:
    if value is None:
        return "—"
    whole, fraction = divmod(int(value), UNIT)
    return f"{whole:,}" + (f".{fraction:018d}".rstrip("0") if fraction else "")


templates.env.filters["points"] = _points
templates.env.filters["status"] = lambda s: PaymentStatus(s).name.replace("_", " ").lower()


def admin_user(credentials: Annotated[HTTPBasicCredentials, Depends(basic)], services: ServicesDep) -> str:
    settings = services.settings
    if settings.admin_password is None:
        raise HTTPException(404, "The admin page is disabled: set RELAY_ADMIN_PASSWORD.")
    good_user = hmac.compare_digest(credentials.username.encode(), settings.admin_user.encode())
    good_password = hmac.compare_digest(
        credentials.password.encode(), settings.admin_password.get_secret_value().encode()
    )
    if not (good_user and good_password):
        raise HTTPException(
            401, "Wrong credentials.", headers={"WWW-Authenticate": 'Basic realm="loyalty relay admin"'}
        )
    return credentials.username


AdminDep = Annotated[str, Depends(admin_user)]


def _csrf(services: Services) -> str:
    assert services.settings.admin_password is not None
    key = services.settings.admin_password.get_secret_value().encode()
    return hmac.new(key, b"admin-csrf", hashlib.sha256).hexdigest()


@router.get("", response_class=HTMLResponse)
def overview(request: Request, services: ServicesDep, user: AdminDep) -> HTMLResponse:
    with services.db.session() as session:
        shops = session.scalars(select(Shop).order_by(Shop.name)).all()
        payments = session.scalars(select(Payment).order_by(Payment.open_new_at.desc()).limit(50)).all()
        callbacks = select(Callback).where(Callback.payment_id.in_([p.payment_id for p in payments]))
        context: dict[str, Any] = {
            "user": user,
            "csrf": _csrf(services),
            "shops": shops,
            "names": {shop.shop_id: shop.name for shop in shops},
            "payments": payments,
            # The latest callback of each payment.
            "callbacks": {c.payment_id: c for c in session.scalars(callbacks.order_by(Callback.created_at))},
            "dead": session.scalars(
                select(Callback).where(Callback.state == "dead").order_by(Callback.created_at.desc()).limit(20)
            ).all(),
            "open_withdrawals": session.scalars(
                select(Withdrawal).where(Withdrawal.closed_tx.is_(None)).order_by(Withdrawal.id)
            ).all(),
            "history": session.scalars(
                select(Withdrawal).where(Withdrawal.closed_tx.is_not(None)).order_by(Withdrawal.id.desc()).limit(50)
            ).all(),
            "purchases": session.scalars(select(Purchase).order_by(Purchase.created_at.desc()).limit(20)).all(),
            "indexed_block": (session.scalar(select(IndexerCursor.next_block)) or 1) - 1,
            "pending_callbacks": session.scalar(select(func.count()).where(Callback.state == "pending")),
        }
    return templates.TemplateResponse(request, "admin.html", context, headers=HEADERS)


@router.post("/withdrawals/{withdrawal_id}/transfer")
def record_transfer(
    withdrawal_id: int,
    services: ServicesDep,
    user: AdminDep,
    reference: Annotated[str, Form(min_length=1, max_length=200)],
    csrf: Annotated[str, Form()],
) -> RedirectResponse:
    """Records that the operator transferred the withdrawal's money off chain (with a reference)."""
    if not secrets.compare_digest(csrf, _csrf(services)):
        raise HTTPException(403, "Invalid form token; reload the page.")
    with services.db.session() as session:
        withdrawal = session.get(Withdrawal, withdrawal_id)
        if withdrawal is None:
            raise HTTPException(404, "Unknown withdrawal.")
        if withdrawal.transfer_recorded_at is not None:
            raise HTTPException(409, "The transfer of this withdrawal is already recorded.")
        withdrawal.transfer_reference = reference.strip()
        withdrawal.transfer_recorded_at = now()
        withdrawal.transfer_recorded_by = user
    return RedirectResponse("/admin#withdrawals", status_code=303, headers=HEADERS)
