"""Request rate limits by client address, KIOSK and wallet (settings `rate_limit_*`), counted with
the `limits` library in a moving window: in each process's memory, or shared by every relay instance
in Redis. One limiter serves the process; until `configure` runs (tools, tests driving services
directly) nothing is limited."""

from __future__ import annotations

import ipaddress
import logging
import math
import time

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from relay.config import Settings
from relay.errors import RateLimited

log = logging.getLogger(__name__)
STORE_TIMEOUT = 0.5  # seconds a request waits for Redis before it is let through uncounted
WARN_EVERY = 60.0  # seconds between warnings that the store does not answer
_limiter: MovingWindowRateLimiter | None = None
_rules: dict[str, RateLimitItem] = {}
_warned_at = 0.0


def configure(settings: Settings) -> None:
    global _limiter, _rules
    uri = settings.rate_limit_storage
    timeouts = {"socket_timeout": STORE_TIMEOUT, "socket_connect_timeout": STORE_TIMEOUT}
    _limiter = MovingWindowRateLimiter(storage_from_string(uri, **(timeouts if uri.startswith("redis") else {})))
    # A wallet's own signed actions and the payments KIOSKs open for it count apart: KIOSKs asking
    # for a wallet must not use up what the wallet itself may do.
    rules = {"client": settings.rate_limit_client, "kiosk": settings.rate_limit_kiosk}
    rules |= {"wallet": settings.rate_limit_wallet, "payments for a wallet": settings.rate_limit_wallet}
    _rules = {kind: parse(rule) for kind, rule in rules.items() if rule}


def client_of(host: str | None) -> str:
    """Who a client address counts as: an IPv4 address, or the /64 network of an IPv6 one (one
    subscriber holds a whole /64, and would otherwise pass every per-address limit)."""
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


def check(kind: str, who: str) -> None:
    """Counts a request of `who` (a client address, KIOSK id or wallet); RateLimited past the limit.
    A limit store that cannot be reached lets requests through: limits protect, they must not stop
    payments."""
    rule = _rules.get(kind)
    if _limiter is None or rule is None:
        return
    try:
        if _limiter.hit(rule, kind, who):
            return
        reset = _limiter.get_window_stats(rule, kind, who).reset_time
    except Exception as exc:
        global _warned_at
        if time.monotonic() - _warned_at > WARN_EVERY:
            _warned_at = time.monotonic()
            log.warning("rate limits not counted: %s", exc)
        return
    retry_after = max(1, math.ceil(reset - time.time()))
    raise RateLimited(f"Too many requests: {kind} (at most {rule}); retry in {retry_after} s.", retry_after)
