"""Engines and the one place that decides which database a process talks to."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL

from service.db.embedded import start_embedded
from service.db.url import normalize_url
from service.settings import ServerSettings


def resolve_url(settings: ServerSettings) -> URL:
    """``HPO_DATABASE_URL`` if set, else the embedded PostgreSQL (started on demand)."""
    if settings.database_url is not None:
        return normalize_url(settings.database_url.get_secret_value())
    return start_embedded(settings.data_dir)


def create_db_engine(url: URL, *, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """A psycopg2 engine. Statements run in READ COMMITTED; every use case is one transaction."""
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping (a round trip per transaction): a connection broken by a database
        # restart fails one request with 503 and is replaced (see service.db.unit_of_work).
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"application_name": "hpo-service"},
    )
