"""Shared dependencies of the routes."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Header, Request

from relay.chain import Chain
from relay.config import Settings
from relay.db import Database
from relay.services import kiosks
from relay.services.kiosks import Kiosk
from relay.services.payments import Payments
from relay.services.rewards import Rewards
from relay.services.shops import Shops
from relay.services.streams import NotificationHub
from relay.services.wallets import Wallets


@dataclass
class Services:
    settings: Settings
    db: Database
    chain: Chain
    payments: Payments
    shops: Shops
    rewards: Rewards
    wallets: Wallets
    waits: anyio.CapacityLimiter  # requests that wait for the chain (`waiting`)
    streams: NotificationHub  # the live notification streams of this process


async def get_services(request: Request) -> Services:
    """A coroutine, so FastAPI resolves it on the event loop instead of handing it to a worker
    thread (a thread hop per request for an attribute read)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
T = TypeVar("T")
P = ParamSpec("P")


def in_thread(endpoint: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """A blocking endpoint as a coroutine that runs it in a worker thread (AnyIO's default pool,
    as FastAPI runs a plain `def` endpoint). FastAPI checks a plain endpoint's result against its
    response model in a second worker thread, a coroutine's on the event loop: one thread hop per
    request instead of two. FastAPI reads the parameters from the wrapped function's signature."""

    @functools.wraps(endpoint)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return await anyio.to_thread.run_sync(functools.partial(endpoint, *args, **kwargs))

    return run


async def waiting(services: Services, work: Callable[[], T]) -> T:
    """Runs a request's `work` that waits for a transaction to be mined (seconds per block on a
    public chain) in a worker thread under the relay's own limit for such requests
    (`RELAY_WAITING_REQUESTS`), not in AnyIO's default pool of 40 threads that serves every other
    request: closes waiting for blocks cannot starve reads, approvals and new payments."""
    return await anyio.to_thread.run_sync(work, limiter=services.waits)


Authorization = Annotated[str | None, Header(include_in_schema=False)]


def access_key(body_key: str | None, authorization: str | None) -> kiosks.AccessKey:
    """The KIOSK's access key: `accessKey` in the body (as the spec says) or `Authorization: Bearer <key>`."""
    if not body_key and authorization and authorization.lower().startswith("bearer "):
        body_key = authorization[7:].strip()
    return kiosks.AccessKey(body_key)


def authenticate_kiosk(services: Services, body_key: str | None, authorization: str | None) -> Kiosk:
    """The KIOSK of the request's access key (`access_key`), checked in a transaction of its own."""
    with services.db.session() as session:
        return access_key(body_key, authorization).verify(session)
