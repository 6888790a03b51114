"""Database engine, sessions and migrations (SQLAlchemy 2 + Alembic)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PING_AFTER_IDLE = 2.0  # seconds
SQLITE_BUSY_TIMEOUT = 30
COMMIT_TOPICS = "relay.commit_topics"  # Session.info key of the topics a transaction marked


class Base(DeclarativeBase):
    pass


def make_engine(
    url: str,
    pool_size: int = 10,
    max_overflow: int = 10,
    lock_timeout: float = 30.0,
    idle_transaction_timeout: float | None = None,
) -> Engine:
    """The engine; statement parameters are left out of its errors and logs (they hold signatures,
    callback secrets and push tokens).

    PostgreSQL: a statement waits at most `lock_timeout` seconds for a row another transaction
    holds, so a request answers 503 instead of hanging behind a relay instance that stopped inside
    a transaction; the server ends such an instance's session, releasing its locks, once it has
    been idle in a transaction for `idle_transaction_timeout`. SQLite (one relay process, one writer
    at a time) waits up to SQLITE_BUSY_TIMEOUT for the database's write lock."""
    if url.startswith("sqlite"):
        create_sqlite_file(url)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT}, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: Any, _: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL keeps the database consistent on a crash; a power cut may lose the
            # last commits, which the relay reconciles from the chain (the source of truth).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    options = f"-c lock_timeout={round(lock_timeout * 1000)}"
    if idle_transaction_timeout is not None:
        options += f" -c idle_in_transaction_session_timeout={round(idle_transaction_timeout * 1000)}"
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        hide_parameters=True,
        connect_args={"options": options},
    )
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """A connection idle in the pool for PING_AFTER_IDLE is pinged before use (the server may have
    restarted): pinging every checkout (pool_pre_ping) adds a round trip to each transaction of a
    busy relay. A connection in steady use that fails makes its request answer 503 and the pool
    replace its connections."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) >= PING_AFTER_IDLE:
            try:
                dbapi_connection.cursor().execute("SELECT 1")
                dbapi_connection.rollback()
            except Exception as error:
                raise exc.DisconnectionError() from error


def create_sqlite_file(url: str) -> None:
    """Creates a SQLite database's file readable by its owner only (it holds callback secrets)."""
    path = url.split("///", 1)[-1]
    if url.startswith("sqlite") and path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Only a file that does not exist is opened: closing a descriptor of a database this process
        # has open would drop SQLite's POSIX locks on it.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def upgrade(url: str, revision: str = "head") -> None:
    """Brings the database schema to the latest migration (or to `revision`)."""
    create_sqlite_file(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, revision)


class Database:
    def __init__(self, url: str, **engine: Any) -> None:
        """`engine`: make_engine's options."""
        self.engine = make_engine(url, **engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._on_commit: dict[str, list[Callable[[], None]]] = {}
        event.listen(self.sessions, "after_commit", self._committed)

    def on_commit(self, topic: str, hook: Callable[[], None]) -> None:
        """Calls `hook` after each commit of a transaction that `mark`ed `topic` (in this process)."""
        self._on_commit.setdefault(topic, []).append(hook)

    @staticmethod
    def mark(session: Session, topic: str) -> None:
        session.info.setdefault(COMMIT_TOPICS, set()).add(topic)

    def _committed(self, session: Session) -> None:
        for topic in session.info.pop(COMMIT_TOPICS, ()):
            for hook in self._on_commit.get(topic, ()):
                hook()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session


def insert_if_absent(db: Database, model: Any, **values: Any) -> Any:
    """INSERT of a row unless one with its key exists (processes starting together may each try)."""
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    return insert(model).values(**values).on_conflict_do_nothing()
