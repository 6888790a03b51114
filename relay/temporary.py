"""Temporary wallet addresses (DESIGN.md §5): a short-lived, single-use alias of a wallet for QR codes."""

from __future__ import annotations

import secrets

from eth_utils import to_checksum_address
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from relay.calls import checksum
from relay.db import run
from relay.errors import TemporaryAccountNotFound
from relay.models import TemporaryAccount, now


def create(session: Session, account: str, ttl: int) -> TemporaryAccount:
    temporary = TemporaryAccount(
        address=to_checksum_address("0x" + secrets.token_hex(20)),
        account=account,
        expires_at=now() + ttl,
    )
    session.add(temporary)
    return temporary


# Every new payment asks it of the address the KIOSK gives (built once, run as plain SQL).
_BY_ADDRESS = select(TemporaryAccount.account, TemporaryAccount.used_at, TemporaryAccount.expires_at).where(
    TemporaryAccount.address == bindparam("address")
)


def resolve(session: Session, address: str) -> str | None:
    """The wallet behind a temporary address, or None if `address` is not one.
    Raises TemporaryAccountNotFound if it is one but expired or used."""
    temporary = run(session, _BY_ADDRESS, {"address": checksum(address)}).one_or_none()
    if temporary is None:
        return None
    if temporary.used_at is not None or temporary.expires_at <= now():
        raise TemporaryAccountNotFound("This temporary account has expired or was already used.")
    return str(temporary.account)


def consume(session: Session, address: str) -> None:
    """Marks a temporary address used; exactly one caller succeeds."""
    result = session.execute(
        update(TemporaryAccount)
        .where(
            TemporaryAccount.address == checksum(address),
            TemporaryAccount.used_at.is_(None),
            TemporaryAccount.expires_at > now(),
        )
        .values(used_at=now())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TemporaryAccountNotFound("This temporary account has expired or was already used.")
