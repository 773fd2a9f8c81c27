"""``hpo serve`` and ``hpo db``: the API server and the schema, on the database."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType
from typing import Any

from service.cli.options import command, group
from service.cli.output import print_json
from service.settings import ServerSettings


def add_commands(commands: Any) -> None:
    serve = command(commands, "serve", "run the API server")
    serve.add_argument("--host", help="bind address (HPO_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (HPO_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="server processes (HPO_WORKERS, default 1)")
    serve.set_defaults(handler=_serve)

    _, db = group(commands, "db", "database schema (Optuna's and the service's)")
    upgrade = command(db, "upgrade", "create or upgrade both schemas to the latest")
    upgrade.set_defaults(handler=_db_upgrade)
    status = command(db, "status", "show both schema versions", json=True)
    status.set_defaults(handler=_db_status)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.db.engine import create_db_engine, resolve_url
    from service.db.migrate import ensure_current
    from service.observability.logs import logging_config
    from service.observability.multiprocess import shared_metrics_dir

    for flag, env in (("host", "HPO_HOST"), ("port", "HPO_PORT"), ("workers", "HPO_WORKERS")):
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = str(value)  # server processes read their settings from env
    settings = ServerSettings()
    _exit_on_sigterm()
    engine = create_db_engine(resolve_url(settings), pool_size=1, max_overflow=0)
    try:
        ensure_current(engine)
    finally:
        engine.dispose()
    # Several worker processes share their metrics through files (before any of them starts).
    with shared_metrics_dir(settings.workers):
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            log_config=logging_config(settings.log_format, settings.log_level),
            # Long polls (up to 60 s) would hold a shutdown that long; cut them after 5 s
            # (clients retry with the same Idempotency-Key, so nothing is handed out twice).
            timeout_graceful_shutdown=5,
        )
    return 0


def _exit_on_sigterm() -> None:
    """SIGTERM exits through ``sys.exit``, so that ``atexit`` runs (it stops the embedded
    PostgreSQL this process started). uvicorn handles SIGTERM while it serves, then raises it
    again once it has shut down: that lands here."""

    def handle(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, handle)


def _db_upgrade(args: argparse.Namespace) -> int:
    from service.db import migrate
    from service.db.engine import resolve_url

    status = migrate.upgrade(resolve_url(ServerSettings()))
    print(f"database up to date: {status.describe()}")
    return 0


def _db_status(args: argparse.Namespace) -> int:
    from service.db.engine import create_db_engine, resolve_url
    from service.db.migrate import schema_status

    engine = create_db_engine(resolve_url(ServerSettings()), pool_size=1, max_overflow=0)
    try:
        status = schema_status(engine)
    finally:
        engine.dispose()
    if args.json:
        print_json({**vars(status), "up_to_date": status.up_to_date})
    else:
        print(status.describe())
    return 0 if status.up_to_date else 1
