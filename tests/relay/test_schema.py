"""The migrations build the schema the models describe, on both database backends: a column,
index or constraint added to a model without its migration (or the other way round) fails here,
not on an operator's first upgrade. Relay processes that start together on a new PostgreSQL
database each upgrade it, and all of them start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from relay import db as database
from relay import models  # noqa: F401  (registers the tables on Base.metadata)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrated_schema_matches_the_models(backend: str, new_database: Callable[[str], str]) -> None:
    url = new_database(backend)
    database.upgrade(url)
    engine = database.make_engine(url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), database.Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


# Imports the relay, says so, and upgrades the database once told to go (so that every process
# has finished importing and they upgrade at the same moment).
_UPGRADE_ON_GO = """
import sys
from relay import db
print("ready", flush=True)
sys.stdin.readline()
db.upgrade(sys.argv[1])
"""


def test_processes_that_start_together_upgrade_a_new_database_in_turn(new_database: Callable[[str], str]) -> None:
    """`loyalty serve --workers N`, or instances behind a load balancer started at once: each
    process migrates the database as it starts. Without taking turns, all but one failed (a table
    created twice) and uvicorn stopped the whole relay."""
    url = new_database("postgresql")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _UPGRADE_ON_GO, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        failures = [stderr[-600:] for _, stderr in (p.communicate(timeout=120) for p in processes) if stderr]
        codes = [p.returncode for p in processes]
    finally:
        for process in processes:
            process.kill()
    assert codes == [0, 0, 0, 0], failures
    engine = database.make_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    config = Config()
    config.set_main_option("script_location", str(database.MIGRATIONS))
    assert set(current) == set(ScriptDirectory.from_config(config).get_heads())
