"""What the app does with its wallet besides deciding payments: temporary addresses for QR codes
(DESIGN.md §5), push tokens and sessions, each signed by the wallet (EIP-712), and the notifications
a session may stream.

Every such signature is short-lived and accepted once: its EIP-712 digest is recorded in the
transaction of the action it authorises, so a replay (here or on another relay instance, through
the shared database) finds it and is refused."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from relay import typed_data
from relay.chain import Chain, checksum
from relay.config import Settings
from relay.db import Database, insert_if_absent
from relay.errors import InvalidSession, InvalidSignature, TemporaryAccountNotFound
from relay.models import AppSession, Notification, PushToken, TemporaryAccount, UsedSignature, now
from relay.services import limits
from relay.services.signatures import digest, require_deadline, verify

MAX_DEADLINE_AHEAD = 300  # an app signature's deadline is at most 5 minutes ahead
GRACE = 60  # seconds a used signature is kept past its deadline: relay instances' clocks differ a little
PURGE_EVERY = 60.0  # seconds between deletions of expired rows, per process
# A temporary account is kept a day past its expiry: a KIOSK that still shows it hears that it
# expired (404), not that an unknown wallet has no balance.
TEMPORARY_KEPT = 86_400
RESUME_WINDOW = 100  # a resumed stream replays at most this many of the wallet's latest notifications
TOKEN_PREFIX = "as_"  # tells a session token from a KIOSK access key sent the same way
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


def is_session_token(bearer: str | None) -> bool:
    return bool(bearer and bearer.startswith(TOKEN_PREFIX))


def session_of(session: Session, token: str | None) -> AppSession:
    """The live session of a bearer token (InvalidSession otherwise)."""
    found = session.get(AppSession, _hash(token)) if is_session_token(token) else None
    if found is None or found.expires_at <= now():
        raise InvalidSession(
            "The session token is missing, unknown or expired: POST /v1/payment/account/session for a new one."
        )
    return found


def _hash(token: str | None) -> str:
    return hashlib.sha256((token or "").encode()).hexdigest()


class Wallets:
    def __init__(self, db: Database, chain: Chain, settings: Settings) -> None:
        self.db = db
        self.chain = chain
        self.settings = settings
        self._next_purge = 0.0

    def chain_info(self) -> dict[str, Any]:
        """What the app signs in: the chain id, the contracts' addresses and their EIP-712 domains."""
        contracts = {name: contract.address for name, contract in self.chain.contracts.items()}
        domains = {"payment": self.chain.payment_domain(), "shop": self.chain.shop_domain()}
        return {"chain_id": self.chain.chain_id, "contracts": contracts, "domains": domains}

    @contextmanager
    def _signed(self, primary_type: str, message: dict[str, Any], signature: str) -> Iterator[Session]:
        """The transaction of an action the wallet signed: the signature verified (before, as it may ask
        the node), its single use recorded."""
        deadline = int(message["deadline"])
        require_deadline(deadline, MAX_DEADLINE_AHEAD)
        typed = typed_data.build(primary_type, self.chain.payment_domain(), message)
        verify(self.chain, typed, signature, message["account"])
        limits.check("wallet", message["account"])  # counted once verified: no one else spends a wallet's quota
        with self.db.session() as session:
            self._purge(session)
            row = {"digest": "0x" + digest(typed).hex(), "expires_at": deadline + GRACE}
            first_use = insert_if_absent(self.db, UsedSignature, **row).returning(UsedSignature.digest)
            if session.execute(first_use).first() is None:
                raise InvalidSignature(
                    f"This {primary_type} signature was already used: each is accepted once; sign a new one."
                )
            yield session

    def _purge(self, session: Session) -> None:
        """Deletes expired sessions, used signatures and temporary accounts (an index range each), now
        and then."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY
        for model in (AppSession, UsedSignature):
            session.execute(delete(model).where(model.expires_at < now()))
        session.execute(delete(TemporaryAccount).where(TemporaryAccount.expires_at < now() - TEMPORARY_KEPT))

    def temporary_account(self, account: str, deadline: int, signature: str) -> TemporaryAccount:
        address = checksum("0x" + secrets.token_hex(20))
        expires_at = now() + self.settings.temporary_account_ttl
        created = TemporaryAccount(address=address, account=account, expires_at=expires_at)
        with self._signed("TemporaryAccount", {"account": account, "deadline": deadline}, signature) as session:
            session.add(created)
        return created

    def register_push_token(self, account: str, token: str, deadline: int, signature: str) -> None:
        message = {"account": account, "token": token, "deadline": deadline}
        with self._signed("RegisterPushToken", message, signature) as session:
            if session.get(PushToken, (account, token)) is None:
                session.add(PushToken(account=account, token=token))

    def open_session(self, account: str, deadline: int, signature: str) -> tuple[AppSession, str]:
        """A session of the wallet, and its token (given out once).

        Stored (hashed) rather than a signed stateless token: every relay instance checks it in the
        shared database without sharing a signing key, and a session can be ended before it expires
        by deleting its row."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = now() + self.settings.app_session_ttl
        opened = AppSession(token_hash=_hash(token), account=account, expires_at=expires_at)
        with self._signed("AppSession", {"account": account, "deadline": deadline}, signature) as session:
            session.add(opened)
        return opened, token

    def end_session(self, token: str | None) -> str:
        """Ends a live session before its expiry (the app logs out); its wallet."""
        with self.db.session() as session:
            ended = session_of(session, token)
            session.delete(ended)
        return ended.account

    def open_stream(self, token: str | None, last_event_id: int | None) -> tuple[AppSession, int]:
        """Authorises a notification stream: its session, and the id after which it starts. By default
        the stream starts with the next notification; with `last_event_id` it resumes after that one,
        but not before the wallet's RESUME_WINDOW latest notifications (a token opens no more history)."""
        with self.db.session() as session:
            opened = session_of(session, token)
            latest = (
                select(Notification.id).where(Notification.account == opened.account).order_by(Notification.id.desc())
            )
            if last_event_id is None:
                return opened, session.execute(latest.limit(1)).scalar() or 0
            floor = session.execute(latest.offset(RESUME_WINDOW).limit(1)).scalar() or 0
            return opened, max(last_event_id, floor)

    def session_alive(self, token: str | None) -> bool:
        with self.db.session() as session:
            try:
                session_of(session, token)
            except InvalidSession:
                return False
        return True

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
