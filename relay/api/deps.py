"""What the routes share: the app's services, worker threads for blocking endpoints, the KIOSK's access key."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, ParamSpec, TypeVar, cast

import anyio
import anyio.to_thread
from fastapi import Depends, Header, Request

from relay.chain import Chain
from relay.config import Settings
from relay.db import Database
from relay.services.kiosks import AccessKey, Kiosk
from relay.services.payments import Payments
from relay.services.rewards import Rewards
from relay.services.shops import Shops
from relay.services.streams import NotificationHub
from relay.services.wallets import Wallets

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class Services:
    settings: Settings
    db: Database
    chain: Chain
    payments: Payments
    shops: Shops
    rewards: Rewards
    wallets: Wallets
    waits: anyio.CapacityLimiter  # requests that wait for a transaction to be mined (`waiting`)
    streams: NotificationHub  # the live notification streams of this process


async def get_services(request: Request) -> Services:
    """A coroutine, which FastAPI runs on the event loop: no thread hop for an attribute read."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def in_thread(endpoint: Callable[P, T], waits: bool = False) -> Callable[P, Awaitable[T]]:
    """A blocking endpoint as a coroutine that runs it in a worker thread. FastAPI checks a coroutine's
    result on the event loop, a plain `def`'s in a second thread: one thread hop per request, not two.
    FastAPI reads the parameters from the wrapped function's signature."""

    @functools.wraps(endpoint)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        limiter = cast(Services, kwargs["services"]).waits if waits else None
        return await anyio.to_thread.run_sync(functools.partial(endpoint, *args, **kwargs), limiter=limiter)

    return run


def waiting(endpoint: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """`in_thread` for an endpoint that waits for a transaction to be mined (seconds per block on a public
    chain): under the relay's own limit (`RELAY_WAITING_REQUESTS`), not AnyIO's default pool of 40
    threads that serves every other request, so waiting closes cannot starve reads and new payments."""
    return in_thread(endpoint, waits=True)


def bearer(authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> str | None:
    """The key of `Authorization: Bearer <key>`: a KIOSK may send its access key there instead of in the body."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


Bearer = Annotated[str | None, Depends(bearer)]


def authenticate_kiosk(services: Services, key: str | None) -> Kiosk:
    """The KIOSK of an access key, checked in a transaction of its own."""
    with services.db.session() as session:
        return AccessKey(key).verify(session)
