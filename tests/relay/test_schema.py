"""The migrations build the schema the models describe, on both database backends: a column,
index or constraint added to a model without its migration (or the other way round) fails here,
not on an operator's first upgrade."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

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
