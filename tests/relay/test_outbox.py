"""Commits that queue callbacks or notifications wake this process's workers (Database.on_commit);
a rolled-back transaction wakes nobody."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay import db as database
from relay.services.outbox import CALLBACK_TOPIC, NOTIFICATION_TOPIC, notify

ACCOUNT = "0x" + "11" * 20


def test_hooks_run_after_commit_of_what_the_transaction_queued(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'relay.db'}"
    database.upgrade(url)
    db = database.Database(url)
    woken: list[str] = []
    db.on_commit(NOTIFICATION_TOPIC, lambda: woken.append("push"))
    db.on_commit(NOTIFICATION_TOPIC, lambda: woken.append("streams"))
    db.on_commit(CALLBACK_TOPIC, lambda: woken.append("callbacks"))

    with pytest.raises(RuntimeError), db.session() as session:
        notify(session, ACCOUNT, "payment.new", None, {})
        raise RuntimeError("rolled back")
    assert woken == []

    with db.session() as session:
        notify(session, ACCOUNT, "payment.new", None, {})
        assert woken == []  # not before the commit
    assert woken == ["push", "streams"]

    with db.session():
        pass
    assert woken == ["push", "streams"]
    db.engine.dispose()
