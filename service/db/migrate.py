"""Both schemas, Optuna's and the service's, brought up to date and checked.

Optuna's tables are created and upgraded by Optuna itself (``RDBStorage`` creates a fresh schema
and stamps its Alembic head; ``RDBStorage.upgrade`` runs Optuna's own revisions on an old one).
The service's tables are created by the revisions in ``migrations/``, tracked in
``hpo_alembic_version``. ``hpo db upgrade`` runs both, Optuna's first (ours refer to its tables).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.engine import URL

import migrations
from service.db.tables import VERSION_TABLE
from service.db.url import render_url
from service.errors import SchemaOutOfDate

OPTUNA_VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class SchemaStatus:
    optuna_current: str | None
    optuna_head: str
    service_current: str | None
    service_head: str

    @property
    def up_to_date(self) -> bool:
        return self.optuna_current == self.optuna_head and self.service_current == self.service_head

    def describe(self) -> str:
        return (
            f"optuna schema {self.optuna_current or 'missing'} (head {self.optuna_head}), "
            f"service schema {self.service_current or 'missing'} (head {self.service_head})"
        )


def alembic_config(url: URL | None = None) -> Config:
    """Alembic config for the service's revisions (``alembic -c`` is not needed)."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if url is not None:
        config.set_main_option("sqlalchemy.url", render_url(url).replace("%", "%%"))
    return config


def service_head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@functools.cache
def _optuna_head() -> str:
    """The head of the installed Optuna's schema revisions (``RDBStorage.get_head_version``,
    asked of a throwaway storage on an in-memory SQLite database: the public way to ask)."""
    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    try:
        return storage.get_head_version()
    finally:
        storage.engine.dispose()


def schema_status(engine: Engine) -> SchemaStatus:
    """Read both version tables (two cheap queries); a missing table reads as ``None``."""
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        optuna_current = None
        if OPTUNA_VERSION_TABLE in tables:
            optuna_current = MigrationContext.configure(conn).get_current_revision()
        service_current = None
        if VERSION_TABLE in tables:
            service_current = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
    return SchemaStatus(optuna_current, _optuna_head(), service_current, service_head())


def ensure_current(engine: Engine) -> SchemaStatus:
    """Raise :class:`SchemaOutOfDate` naming the fix unless both schemas are at head."""
    status = schema_status(engine)
    if not status.up_to_date:
        raise SchemaOutOfDate(
            f"the database schema is not up to date ({status.describe()}); "
            "run `hpo db upgrade` against the same database first"
        )
    return status


def upgrade(url: URL) -> SchemaStatus:
    """Create or upgrade Optuna's schema, then the service's. Safe to run again."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    storage = optuna.storages.RDBStorage(render_url(url), skip_compatibility_check=True)
    try:
        if storage.get_current_version() != storage.get_head_version():
            storage.upgrade()
    finally:
        storage.engine.dispose()
    command.upgrade(alembic_config(url), "head")
    from service.db.engine import create_db_engine

    engine = create_db_engine(url, pool_size=1, max_overflow=0)
    try:
        return schema_status(engine)
    finally:
        engine.dispose()


def downgrade_service(url: URL, revision: str = "base") -> None:
    """Downgrade the service's own schema only (Optuna's is never downgraded)."""
    command.downgrade(alembic_config(url), revision)
