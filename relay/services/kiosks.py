"""KIOSK clients as requests meet them: access keys (stored as SHA-256, compared in constant time),
their shops and callback URL. `loyalty kiosk` (relay/cli.py) adds and revokes them."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from dataclasses import dataclass
from socket import SOCK_STREAM
from urllib.parse import urlsplit

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from relay.errors import InvalidAccessKey, ShopNotAllowed
from relay.models import KioskClient, KioskShop
from relay.services import limits


@dataclass(frozen=True)
class Kiosk:
    id: int
    name: str
    shops: frozenset[str]
    callback_url: str | None

    def verify(self, session: Session) -> Kiosk:  # already authenticated (see AccessKey)
        return self


@dataclass(frozen=True)
class AccessKey:
    """A KIOSK's access key as a request presents it, checked in the first transaction of the action."""

    key: str | None

    def verify(self, session: Session) -> Kiosk:
        return authenticate(session, self.key)


# What a KIOSK action takes: a KIOSK already authenticated, or a key to check in its transaction.
KioskCredentials = Kiosk | AccessKey


def callback_url_problem(url: str, allow_private: bool) -> str | None:
    """Why callbacks must not go to `url` (None if they may): http(s) only, and, unless allowed, no
    host that resolves to a loopback, private, link-local (cloud metadata) or reserved address."""
    malformed = f"A callback URL must be http:// or https:// with a host, not {url!r}."
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return malformed
    if parts.scheme not in ("http", "https") or not host:
        return malformed
    if allow_private:
        return None
    try:
        addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, port, type=SOCK_STREAM)}
    except (OSError, UnicodeError) as exc:
        return f"The callback host {host} does not resolve: {exc}"
    private = sorted(str(a) for a in addresses if not a.is_global)
    return f"The callback host {host} is at a non-public address {', '.join(private)}." if private else None


# The client of a key hash and its shops in one query (a row per shop; one row with no shop if it has none).
_BY_KEY_HASH = (
    select(KioskClient.id, KioskClient.name, KioskClient.key_hash, KioskClient.revoked_at, KioskClient.callback_url)
    .add_columns(KioskShop.shop_id)
    .outerjoin(KioskShop, KioskShop.kiosk_id == KioskClient.id)
    .where(KioskClient.key_hash == bindparam("digest"))
)


def authenticate(session: Session, access_key: str | None) -> Kiosk:
    if not access_key:
        raise InvalidAccessKey()
    digest = hashlib.sha256(access_key.encode()).hexdigest()
    rows = session.execute(_BY_KEY_HASH, {"digest": digest}).all()
    client = rows[0] if rows else None
    # The lookup is by hash; the comparison repeats it in constant time so timing reveals nothing.
    if client is None or not hmac.compare_digest(client.key_hash, digest) or client.revoked_at is not None:
        raise InvalidAccessKey()
    limits.check("kiosk", str(client.id))
    shops = frozenset(row.shop_id for row in rows if row.shop_id is not None)
    return Kiosk(client.id, client.name, shops, client.callback_url)


def require_shop(kiosk: Kiosk, shop_id: str) -> None:
    if shop_id.lower() not in kiosk.shops:
        raise ShopNotAllowed(f"This access key is not allowed for shop {shop_id}.")
