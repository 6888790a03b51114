"""What every HTTP request passes first: the body size limit (413), the rate limit per client address
(429 with Retry-After), and the count of answers by route and status for the metrics."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay import admin
from relay.errors import InvalidParameter, RateLimited
from relay.metrics import REQUESTS
from relay.services import limits

MAX_BODY = 64 * 1024  # bytes: the largest request (a shop's settings with a signature) is under 2 KiB


def error_response(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"code": code, "error": {"message": message}}, headers=headers)


class Edge:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # if the app raises, the server answers 500

        async def answered(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, answered)
        finally:
            REQUESTS.labels(getattr(scope.get("route"), "path", "unmatched"), str(status)).inc()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        if scope["path"].startswith("/admin"):
            send = _with_headers(send, admin.HEADERS)  # every answer, whoever makes it (a 401 of HTTPBasic, a 405)
        try:
            limits.check("client", limits.client_of(scope["client"][0] if scope.get("client") else None))
        except RateLimited as exc:
            headers["Retry-After"] = str(exc.retry_after)
            await error_response(exc.http_status, exc.code, exc.message, headers)(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY:
            too_big = error_response(413, InvalidParameter.code, f"The body is over {MAX_BODY} bytes.", headers)
            await too_big(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:  # a chunked body has no length to check first
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise HTTPException(413, f"The body is over {MAX_BODY} bytes.")
            return message

        await self.app(scope, counted, send)


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    """`send` adding the headers of `extra` that a response does not set itself."""
    raw = [(name.lower().encode(), value.encode()) for name, value in extra.items()]

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name for name, _ in message.get("headers", [])}
            message = {**message, "headers": [*message.get("headers", []), *(h for h in raw if h[0] not in present)]}
        await send(message)

    return sending
