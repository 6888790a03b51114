"""Alembic environment: the URL comes from the caller (relay.db.upgrade) or from the relay's settings."""

from alembic import context
from sqlalchemy import engine_from_config, pool, text

from relay import models  # noqa: F401  (registers the tables)
from relay.config import get_settings
from relay.db import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))

# PostgreSQL advisory lock key of the migrations: relay processes that start together on one
# database (`loyalty serve --workers N`, instances behind a load balancer) each upgrade it; they
# take turns, and those after the first find it up to date, instead of racing to create tables.
MIGRATION_LOCK = 0x6C6F79616C7479  # "loyalty"


def run() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Held to the end of this transaction, which is the whole upgrade (DDL is
                # transactional on PostgreSQL); the current revision is read after it is taken.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()


run()
