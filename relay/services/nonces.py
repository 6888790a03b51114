"""The relay signers' next nonces in the database: the row lock serialises sends across relay
instances sharing a signer, and whatever the sender writes with the nonce commits with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from relay.db import Database, insert_if_absent
from relay.models import Signer

_SIGNERS = cast(Table, Signer.__table__)
# Built once, on the table itself: per send, an ORM UPDATE built each time cost more CPU than its round trip.
_TAKE = (
    update(_SIGNERS)
    .where(_SIGNERS.c.address == bindparam("signer"), _SIGNERS.c.next_nonce.is_not(None))
    .values(next_nonce=_SIGNERS.c.next_nonce + 1)
    .returning(_SIGNERS.c.next_nonce)
)


@dataclass
class Slot:
    session: Session
    nonce: int


class SignerNonces:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def take(self, signer: str, count: Callable[[], int]) -> Iterator[Slot]:
        with self.db.session() as session:
            taken = session.execute(_TAKE, {"signer": signer}).scalar_one_or_none()
            if taken is not None:
                yield Slot(session, taken - 1)
                return
            row = self._lock(session, signer)
            nonce = row.next_nonce if row.next_nonce is not None else count()
            row.next_nonce = nonce + 1
            yield Slot(session, nonce)

    def forget(self, signer: str) -> None:
        with self.db.session() as session:
            session.execute(update(Signer).where(Signer.address == signer).values(next_nonce=None))

    @contextmanager
    def locked(self, signer: str) -> Iterator[int | None]:
        with self.db.session() as session:
            yield self._lock(session, signer).next_nonce

    def _lock(self, session: Session, signer: str) -> Signer:
        """The signer's row, locked; created first if needed (only then: on SQLite the insert takes
        the database's write lock for the whole send)."""
        lock = select(Signer).where(Signer.address == signer).with_for_update()
        row = session.execute(lock).scalar_one_or_none()
        if row is None:
            session.execute(insert_if_absent(self.db, Signer, address=signer))
            row = session.execute(lock).scalar_one()
        return row
