"""The operator page (`/admin`): shops and their totals, shop registrations waiting for approval,
withdrawal requests (indexed events) with a "transfer recorded" action, recent payments with their
callbacks' delivery. HTTP Basic log-in with RELAY_ADMIN_USER / RELAY_ADMIN_PASSWORD (no password: no
page), with a growing back-off after wrong log-ins; forms carry a CSRF token bound to the browser
session (a random cookie), so one session's token is refused in another."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select, update

from relay.api.deps import ServicesDep
from relay.config import Settings
from relay.models import Callback, IndexerCursor, Payment, PaymentStatus, Purchase, Shop, Withdrawal, now
from relay.services import limits
from relay.services import shops as shop_requests

router = APIRouter(prefix="/admin", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")
basic = HTTPBasic(realm="loyalty relay admin", auto_error=False)
UNIT = 10**18
# The page is never framed, sniffed, cached or allowed anything but its own inline style and forms;
# relay.api.edge adds these to every answer under /admin, errors included.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CHALLENGE = {"WWW-Authenticate": 'Basic realm="loyalty relay admin"'}
COOKIE = "admin_session"
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)
FREE_FAILURES = 5  # wrong log-ins (per client IP, per user name) before the back-off
# Seconds a back-off grows to. Per user name it stays short: anyone can send wrong passwords for
# the operator's name, and must not lock the operator out for long; guessing from many addresses
# still gets one try a minute.
MAX_WAIT = {"ip": 3600, "user": 60}


def _refuse(status: int, message: str, **headers: str) -> HTTPException:
    return HTTPException(status, message, headers=headers or None)


class Backoff:
    """Wrong log-ins per client IP and per user name, in this process's memory (each worker process
    counts its own): from the FREE_FAILURES-th on, each wrong log-in doubles the wait (1 s, 2 s, 4 s, …
    up to MAX_WAIT of its kind) during which every log-in is answered 429; a right one clears the count."""

    def __init__(self) -> None:
        self.failures: dict[str, tuple[int, float]] = {}  # key -> (wrong log-ins, refused until)
        self.lock = threading.Lock()

    def wait(self, keys: list[str]) -> int:
        with self.lock:
            until = max(self.failures.get(key, (0, 0.0))[1] for key in keys)
        return math.ceil(until - time.time())

    def failed(self, keys: list[str]) -> int:
        with self.lock:
            if len(self.failures) > 10_000:  # bounded: forget the keys no longer waiting
                self.failures = {k: v for k, v in self.failures.items() if v[1] > time.time()}
            for key in keys:
                count = self.failures.get(key, (0, 0.0))[0] + 1
                most = MAX_WAIT[key.partition(":")[0]]
                wait = min(most, 2 ** (count - FREE_FAILURES)) if count >= FREE_FAILURES else 0
                self.failures[key] = (count, time.time() + wait)
        return self.wait(keys)

    def succeeded(self, keys: list[str]) -> None:
        with self.lock:
            for key in keys:
                self.failures.pop(key, None)


backoff = Backoff()


def _points(value: str | None) -> str:
    if value is None:
        return "—"
    whole, fraction = divmod(int(value), UNIT)
    return f"{whole:,}" + (f".{fraction:018d}".rstrip("0") if fraction else "")


templates.env.filters["points"] = _points
templates.env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
templates.env.filters["status"] = lambda s: PaymentStatus(s).name.replace("_", " ").lower()


async def _credentials(request: Request) -> HTTPBasicCredentials | None:
    try:
        return await basic(request)
    except HTTPException:  # undecodable: HTTPBasic refuses it even with auto_error off
        raise _refuse(401, "Malformed credentials.", **CHALLENGE) from None


def admin_user(
    request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(_credentials)], services: ServicesDep
) -> str:
    settings = services.settings
    if settings.admin_password is None:
        raise _refuse(404, "The admin page is disabled: set RELAY_ADMIN_PASSWORD.")
    if credentials is None:
        raise _refuse(401, "Log in.", **CHALLENGE)
    keys = [
        f"ip:{limits.client_of(request.client.host if request.client else None)}",
        f"user:{credentials.username[:100]}",
    ]
    if (wait := backoff.wait(keys)) > 0:
        raise _refuse(429, f"Too many wrong log-ins; try again in {wait} s.", **{"Retry-After": str(wait)})
    good_user = hmac.compare_digest(credentials.username.encode(), settings.admin_user.encode())
    good_password = hmac.compare_digest(
        credentials.password.encode(), settings.admin_password.get_secret_value().encode()
    )
    if not (good_user and good_password):
        if (wait := backoff.failed(keys)) > 0:
            raise _refuse(429, f"Too many wrong log-ins; try again in {wait} s.", **{"Retry-After": str(wait)})
        raise _refuse(401, "Wrong credentials.", **CHALLENGE)
    backoff.succeeded(keys)
    return credentials.username


AdminDep = Annotated[str, Depends(admin_user)]


def _csrf(settings: Settings, session_id: str) -> str:
    """The form token of a browser session: only the relay, which knows the password, can make it."""
    assert settings.admin_password is not None
    key = hmac.new(settings.admin_password.get_secret_value().encode(), b"admin-csrf", hashlib.sha256).digest()
    return hmac.new(key, session_id.encode(), hashlib.sha256).hexdigest()


def checked_form(request: Request, services: ServicesDep, user: AdminDep, csrf: Annotated[str, Form()] = "") -> str:
    """The operator of a form posted from this browser session's page (its token and cookie agree)."""
    session_id = request.cookies.get(COOKIE, "")
    expected = _csrf(services.settings, session_id).encode()
    if not SESSION_ID.match(session_id) or not secrets.compare_digest(csrf.encode(), expected):
        raise _refuse(403, "Invalid form token; reload the page.")
    return user


FormDep = Annotated[str, Depends(checked_form)]


@router.get("", response_class=HTMLResponse)
def overview(request: Request, services: ServicesDep, user: AdminDep) -> HTMLResponse:
    session_id = request.cookies.get(COOKIE, "")
    if not SESSION_ID.match(session_id):
        session_id = secrets.token_urlsafe(32)
    with services.db.session() as session:
        shops = session.scalars(select(Shop).order_by(Shop.name)).all()
        payments = session.scalars(select(Payment).order_by(Payment.open_new_at.desc()).limit(50)).all()
        callbacks = select(Callback).where(Callback.payment_id.in_([p.payment_id for p in payments]))
        context: dict[str, Any] = {
            "user": user,
            "csrf": _csrf(services.settings, session_id),
            "requests": shop_requests.registrations(session, limit=100),
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
    page = templates.TemplateResponse(request, "admin.html", context)
    secure = request.url.scheme == "https"
    page.set_cookie(COOKIE, session_id, httponly=True, samesite="strict", secure=secure, path="/admin")
    return page


@router.post("/withdrawals/{withdrawal_id}/transfer")
def record_transfer(
    withdrawal_id: str, services: ServicesDep, user: FormDep, reference: Annotated[str, Form()] = ""
) -> RedirectResponse:
    """Records, once, that the operator transferred the withdrawal's money off chain (with a reference)."""
    if not withdrawal_id.isdigit() or len(withdrawal_id) > 18:
        raise _refuse(404, "Unknown withdrawal.")
    reference = reference.strip()
    if not 0 < len(reference) <= 200:
        raise _refuse(400, "The transfer reference must have 1 to 200 characters.")
    with services.db.session() as session:
        # One conditional UPDATE: of concurrent submissions exactly one records the transfer.
        recorded = session.execute(
            update(Withdrawal)
            .where(Withdrawal.id == int(withdrawal_id), Withdrawal.transfer_recorded_at.is_(None))
            .values(transfer_reference=reference, transfer_recorded_at=now(), transfer_recorded_by=user)
        )
        if recorded.rowcount != 1:  # type: ignore[attr-defined]
            if session.get(Withdrawal, int(withdrawal_id)) is None:
                raise _refuse(404, "Unknown withdrawal.")
            raise _refuse(409, "The transfer of this withdrawal is already recorded.")
    return RedirectResponse("/admin#withdrawals", status_code=303)


@router.post("/shops/{shop_id}/{decision}")
def decide_shop(shop_id: str, decision: str, services: ServicesDep, user: FormDep) -> RedirectResponse:
    """Approves or rejects a shop registration waiting for approval."""
    if decision not in ("approve", "reject"):
        raise _refuse(404, "Unknown decision: approve or reject.")
    with services.db.session() as session:
        if not shop_requests.decide(session, shop_id.lower(), decision == "approve", user):
            raise _refuse(409, "No registration of this shop waits for approval.")
    return RedirectResponse("/admin#shop-requests", status_code=303)


@router.api_route("/{path:path}", methods=["GET", "POST"])
def unknown(path: str, user: AdminDep) -> None:
    """Any other path under /admin: 404, with the page's headers."""
    raise _refuse(404, "Not found.")
