"""The relay application: routes, error mapping, and the background workers it runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY
from psycopg.errors import LockNotAvailable
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from relay import admin, errors, logs
from relay import db as database
from relay.api.deps import Services
from relay.api.edge import Edge, error_response
from relay.api.routes import app as app_routes
from relay.api.routes import health
from relay.api.routes import kiosk as kiosk_routes
from relay.api.routes import shop as shop_routes
from relay.api.schemas import error_responses
from relay.chain import Chain
from relay.config import Settings, get_settings
from relay.services import limits
from relay.services.health import State
from relay.services.indexer import Indexer
from relay.services.operations import Operations
from relay.services.outbox import CALLBACK_TOPIC, NOTIFICATION_TOPIC
from relay.services.payments import Payments
from relay.services.rewards import Rewards
from relay.services.shops import Shops
from relay.services.streams import NotificationHub
from relay.services.timeouts import Timeouts
from relay.services.wallets import Wallets
from relay.workers import Wakeup, run_forever
from relay.workers.callbacks import CallbackSender
from relay.workers.push import Pusher
from relay.workers.watcher import Watcher

log = logging.getLogger("relay")

DESCRIPTION = f"""
The relay between shop KIOSKs, the wallet app and the loyalty payment contracts.

* Amounts are decimal integer strings with 18 decimals and no decimal point.
* Success: `200 {{"code": 0, "data": {{...}}}}`. Failure: an HTTP 4xx/5xx status and
  `{{"code": <code>, "error": {{"message": "..."}}}}`.
* KIOSK endpoints that change state take the access key as `accessKey` in the body or as
  `Authorization: Bearer <key>`. The app's own reads (a payment opened through a temporary
  address) and its notification stream take `Authorization: Bearer <session token>`
  (`POST /v1/payment/account/session`).
* Too many requests (per client address, KIOSK or wallet) answer 429 with `Retry-After`.
* The app signs EIP-712 typed data (`eth_signTypedData_v4`). `GET /v1/payment/item` hands out the
  exact documents for a pending decision; confirm/deny bodies carry only `paymentId` and `signature`.
  Every integer of a typed-data `message` is a decimal string (`JSON.parse` keeps it exact): sign
  the document as served. A `NewPayment`'s `loyaltyType` and `maxTotal` bound what it may take:
  the estimate at `openNew` plus the relay's configured tolerance (`RELAY_CHARGE_TOLERANCE_BPS`).
* Callbacks to the KIOSK follow the spec's table (codes 0, 1001, 1002, 1003, 2000; `type` "create" or
  "cancel"; the spec's JSON examples use other values and are not followed) and are signed with
  Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

Error codes:

{errors.table()}
"""


SLOW_WORKERS = 4  # the workers that tolerate seconds of delay run this many times less often
BUSY = "A record this request needs is held by another request for too long; try again."


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logs.configure(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database.upgrade(settings.database_url)
        db = database.Database(
            settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
            lock_timeout=settings.db_lock_timeout, idle_transaction_timeout=settings.db_idle_transaction_timeout,
        )  # fmt: skip
        keys = [key.get_secret_value() for key in settings.signer_keys]
        chain = Chain(settings.rpc_url, settings.deployment_file, keys, settings.rpc_timeout)
        # A KIOSK waits for its callback and an app in the foreground for its stream: both start as
        # soon as this process commits something for them (other processes' commits, at the next interval).
        callbacks_woken, streams_woken = Wakeup(), Wakeup()
        db.on_commit(CALLBACK_TOPIC, callbacks_woken.set)
        db.on_commit(NOTIFICATION_TOPIC, streams_woken.set)
        # Timeouts (45 s and more), the watcher's sweep, purchase rewards and the indexer tolerate a few
        # seconds; polling them as often as callbacks cost an idle process half its CPU.
        fast, slow = settings.worker_interval, settings.worker_interval * SLOW_WORKERS
        ops = Operations(db, chain, settings)
        watcher = Watcher(chain, ops.finish, ops.in_flight, slow, settings.receipt_timeout)
        ops.watch = watcher.watch
        watcher.start()
        payments = Payments(db, chain, settings, ops, watcher)
        rewards = Rewards(db, chain, settings, ops.nonces, watcher)
        wallets = Wallets(db, chain, settings)
        shops = Shops(db, chain, settings, ops.nonces, watcher)
        waits = anyio.CapacityLimiter(settings.waiting_requests)
        streams = NotificationHub(wallets, settings.worker_interval, streams_woken)
        limits.configure(settings)
        state = State(db, chain)
        REGISTRY.register(state)
        app.state.services = Services(settings, db, chain, payments, shops, rewards, wallets, waits, streams)
        sender = CallbackSender(db, settings)
        pusher = Pusher(db, settings)
        start_block = int(chain.deployment.get("startBlock", 0))
        indexer = Indexer(db, chain, start_block, settings.indexer_confirmations, settings.indexer_batch)
        tasks = [
            asyncio.create_task(run_forever("callbacks", sender.run_once, fast, callbacks_woken)),
            asyncio.create_task(run_forever("push", pusher.run_once, fast)),
            asyncio.create_task(run_forever("timeouts", Timeouts(db, settings, ops).expire, slow)),
            asyncio.create_task(run_forever("rewards", rewards.run_once, slow)),
            asyncio.create_task(run_forever("indexer", indexer.run_once, slow)),
        ]
        log.info("relay ready: chain %s at %s", chain.chain_id, logs.public_url(settings.rpc_url))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            REGISTRY.unregister(state)
            watcher.stop()
            sender.close()
            db.engine.dispose()

    app = FastAPI(
        title="Loyalty payment relay",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=error_responses(429, 500),
    )
    for router in (kiosk_routes.router, app_routes.router, shop_routes.router, health.router, admin.router):
        app.include_router(router)
    app.add_middleware(Edge)

    @app.exception_handler(errors.RelayError)
    async def relay_error(_: Request, exc: errors.RelayError) -> JSONResponse:
        if exc.http_status >= 500:
            log.warning("%s: %s", type(exc).__name__, exc.message)
        retry = {"Retry-After": str(exc.retry_after)} if isinstance(exc, errors.RateLimited) else None
        return error_response(exc.http_status, exc.code, exc.message, retry)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            where = ".".join(str(part) for part in e["loc"] if part not in ("body", "query"))
            problems.append(f"{where or 'body'}: {e['msg']}")
        return error_response(400, errors.InvalidParameter.code, "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Errors raised outside the relay's own (malformed JSON, unknown path, admin log-in)."""
        response = error_response(exc.status_code, errors.InvalidParameter.code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(DBAPIError)
    async def storage_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if not exc.connection_invalidated and not isinstance(exc, OperationalError):
            log.exception("database error")
            return error_response(500, errors.RelayError.code, "Internal server error.")
        if isinstance(exc.orig, LockNotAvailable) or "database is locked" in str(exc.orig):
            log.warning("database busy: %s", exc.orig)
            return error_response(503, errors.StorageUnavailable.code, BUSY)
        log.warning("database unavailable: %s", exc.orig)
        return error_response(503, errors.StorageUnavailable.code, errors.StorageUnavailable.default_message)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, errors.RelayError.code, "Internal server error.")

    return app
