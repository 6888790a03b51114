"""What the app does with its wallet besides deciding payments: temporary addresses for QR codes
(DESIGN.md §5), push tokens and the notification stream, each signed by the wallet (EIP-712)."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from relay import typed_data
from relay.chain import Chain, checksum
from relay.config import Settings
from relay.db import Database
from relay.errors import TemporaryAccountNotFound
from relay.models import Notification, PushToken, TemporaryAccount, now
from relay.services.signatures import require_deadline, verify

MAX_DEADLINE_AHEAD = 24 * 3600
USED = "This temporary account has expired or was already used."


def resolve(session: Session, address: str) -> str | None:
    """The wallet behind a temporary address, or None if it is not one (TemporaryAccountNotFound: used, expired)."""
    found = session.get(TemporaryAccount, checksum(address))
    if found is None:
        return None
    if found.used_at is not None or found.expires_at <= now():
        raise TemporaryAccountNotFound(USED)
    return found.account


def consume(session: Session, address: str) -> None:
    """Marks a temporary address used; exactly one caller succeeds."""
    used = session.execute(
        update(TemporaryAccount)
        .where(
            TemporaryAccount.address == checksum(address),
            TemporaryAccount.used_at.is_(None),
            TemporaryAccount.expires_at > now(),
        )
        .values(used_at=now())
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        raise TemporaryAccountNotFound(USED)


class Wallets:
    def __init__(self, db: Database, chain: Chain, settings: Settings) -> None:
        self.db = db
        self.chain = chain
        self.settings = settings

    def verify(self, primary_type: str, message: dict[str, Any], signature: str) -> None:
        require_deadline(int(message["deadline"]), MAX_DEADLINE_AHEAD)
        typed = typed_data.build(primary_type, self.chain.payment_domain(), message)
        verify(self.chain, typed, signature, message["account"])

    def temporary_account(self, account: str, deadline: int, signature: str) -> TemporaryAccount:
        self.verify("TemporaryAccount", {"account": account, "deadline": deadline}, signature)
        address = checksum("0x" + secrets.token_hex(20))
        expires_at = now() + self.settings.temporary_account_ttl
        created = TemporaryAccount(address=address, account=account, expires_at=expires_at)
        with self.db.session() as session:
            session.add(created)
        return created

    def register_push_token(self, account: str, token: str, deadline: int, signature: str) -> None:
        self.verify("RegisterPushToken", {"account": account, "token": token, "deadline": deadline}, signature)
        with self.db.session() as session:
            if session.get(PushToken, (account, token)) is None:
                session.add(PushToken(account=account, token=token))

    def open_stream(self, account: str, deadline: int, signature: str, last_event_id: int | None) -> int:
        """Authorises a notification stream; returns the id after which it starts (by default the latest)."""
        self.verify("NotificationStream", {"account": account, "deadline": deadline}, signature)
        if last_event_id is not None:
            return last_event_id
        with self.db.session() as session:
            latest = session.execute(select(func.max(Notification.id)).where(Notification.account == account)).scalar()
        return latest or 0

    def notifications(self, after: int, limit: int, account: str | None = None) -> list[Notification]:
        """Notifications after id `after` (of `account`, or of everyone), oldest first."""
        query = select(Notification).where(Notification.id > after).order_by(Notification.id).limit(limit)
        if account is not None:
            query = query.where(Notification.account == account)
        with self.db.session() as session:
            return list(session.execute(query).scalars())

    def latest_notification_id(self) -> int:
        with self.db.session() as session:
            return int(session.execute(select(func.max(Notification.id))).scalar() or 0)
