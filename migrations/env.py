"""Alembic environment for the service's own tables.

Two rules keep this schema apart from Optuna's, which lives in the same database:
- our revisions are recorded in ``hpo_alembic_version`` (Optuna uses ``alembic_version``);
- autogenerate only ever looks at tables named ``hpo_*``, so it never proposes to touch Optuna's.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool

from service.db.tables import VERSION_TABLE, include_name, include_object, metadata


def _configure(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=True,
    )


def run_migrations_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url or pass a connection in config.attributes")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run `hpo db upgrade`")
run_migrations_online()
