"""Alembic environment: the URL comes from the caller (relay.db.upgrade) or from the relay's settings."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from relay import models  # noqa: F401  (registers the tables)
from relay.config import get_settings
from relay.db import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))


def run() -> None:
    connectable = engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run()
