"""What the app does with its wallet besides deciding payments: temporary addresses for QR codes,
push-token registration and the live notification stream. Each request carries the wallet's EIP-712
signature of the action and a deadline at most a day ahead."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from relay import temporary, typed_data
from relay.chain import Chain
from relay.config import Settings
from relay.db import Database
from relay.errors import ExpiredSignature, InvalidParameter
from relay.models import Notification, PushToken, TemporaryAccount
from relay.payments import verify_signature

MAX_DEADLINE_AHEAD = 24 * 3600


class Wallets:
    def __init__(self, db: Database, chain: Chain, settings: Settings) -> None:
        self.db = db
        self.chain = chain
        self.settings = settings

    def verify(self, primary_type: str, message: dict[str, Any], signature: str) -> None:
        """Accepts the wallet's (`message["account"]`) signature of an app action whose deadline
        has not passed and is at most a day ahead."""
        deadline = int(message["deadline"])
        if deadline < time.time():
            raise ExpiredSignature(f"The deadline {deadline} has passed.")
        if deadline > time.time() + MAX_DEADLINE_AHEAD:
            raise InvalidParameter("The deadline may be at most 24 hours ahead.")
        typed = typed_data.build(primary_type, self.chain.payment_domain(), message)
        verify_signature(self.chain, typed, signature, message["account"])

    def temporary_account(self, account: str, deadline: int, signature: str) -> TemporaryAccount:
        self.verify("TemporaryAccount", {"account": account, "deadline": deadline}, signature)
        with self.db.session() as session:
            return temporary.create(session, account, self.settings.temporary_account_ttl)

    def register_push_token(self, account: str, token: str, deadline: int, signature: str) -> None:
        self.verify("RegisterPushToken", {"account": account, "token": token, "deadline": deadline}, signature)
        with self.db.session() as session:
            if session.get(PushToken, (account, token)) is None:
                session.add(PushToken(account=account, token=token))

    def open_stream(self, account: str, deadline: int, signature: str, last_event_id: int | None) -> int:
        """Authorises a notification stream; returns the id after which it starts (by default the
        latest notification, so only new ones are sent)."""
        self.verify("NotificationStream", {"account": account, "deadline": deadline}, signature)
        if last_event_id is not None:
            return last_event_id
        with self.db.session() as session:
            latest = session.execute(
                select(Notification.id).where(Notification.account == account).order_by(Notification.id.desc())
            ).scalar()
        return latest or 0

    def latest_notification_id(self) -> int:
        with self.db.session() as session:
            return int(session.execute(select(func.max(Notification.id))).scalar() or 0)

    def notifications_since(self, cursor: int, limit: int) -> list[Notification]:
        """Every account's notifications after id `cursor`, oldest first."""
        with self.db.session() as session:
            return list(
                session.execute(
                    select(Notification).where(Notification.id > cursor).order_by(Notification.id).limit(limit)
                ).scalars()
            )

    def notifications_after(self, account: str, cursor: int, limit: int = 100) -> list[Notification]:
        with self.db.session() as session:
            return list(
                session.execute(
                    select(Notification)
                    .where(Notification.account == account, Notification.id > cursor)
                    .order_by(Notification.id)
                    .limit(limit)
                ).scalars()
            )
