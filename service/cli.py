"""The ``hpo`` command: serve, db, study, token (and worker, demo from the ``workers`` package)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from service.auth.cli import add_commands as add_token_commands
from service.settings import ServerSettings

DEFAULT_API = "http://127.0.0.1:8000"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return handler(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Bayesian optimization service: API server, database, studies, workers.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_serve(commands)
    _add_db(commands)
    _add_study(commands)
    add_token_commands(commands)
    _add_workers(commands)
    return parser


# ---- serve ----


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", help="bind address (HPO_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (HPO_PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="server processes (HPO_WORKERS, default 1)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.db.engine import create_db_engine, resolve_url
    from service.db.migrate import ensure_current
    from service.errors import SchemaOutOfDate
    from service.observability.logs import logging_config
    from service.observability.multiprocess import shared_metrics_dir

    for flag, env in (("host", "HPO_HOST"), ("port", "HPO_PORT"), ("workers", "HPO_WORKERS")):
        value = getattr(args, flag)
        if value is not None:
            os.environ[env] = str(value)  # server processes read their settings from env
    settings = ServerSettings()
    engine = create_db_engine(resolve_url(settings), pool_size=1, max_overflow=0)
    try:
        ensure_current(engine)
    except SchemaOutOfDate as exc:
        print(f"hpo serve: {exc.message}", file=sys.stderr)
        return 1
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


# ---- db ----


def _add_db(commands: Any) -> None:
    db = commands.add_parser("db", help="database schema (Optuna's and the service's)")
    sub = db.add_subparsers(title="db commands", metavar="DB_COMMAND")
    upgrade = sub.add_parser("upgrade", help="create or upgrade both schemas to the latest")
    upgrade.set_defaults(handler=_db_upgrade)
    status = sub.add_parser("status", help="show both schema versions")
    status.set_defaults(handler=_db_status)
    db.set_defaults(handler=lambda args: (db.print_help(), 2)[1])


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
    print(status.describe())
    return 0 if status.up_to_date else 1


# ---- study (over HTTP) ----


def _add_study(commands: Any) -> None:
    study = commands.add_parser("study", help="create and inspect studies through the API")
    study.add_argument("--api", default=None, help=f"API URL (HPO_API_URL, default {DEFAULT_API})")
    study.add_argument("--token", default=None, help="bearer token (HPO_API_TOKEN)")
    sub = study.add_subparsers(title="study commands", metavar="STUDY_COMMAND")
    create = sub.add_parser("create", help="create a study from a YAML or JSON file")
    create.add_argument("file", type=Path, help="same body as POST /api/v1/studies")
    create.set_defaults(handler=_study_create)
    listing = sub.add_parser("list", help="list studies")
    listing.add_argument("--state", choices=["running", "paused", "stopped", "completed"])
    listing.set_defaults(handler=_study_list)
    show = sub.add_parser("show", help="show a study and its best trial")
    show.add_argument("study", help="name or id")
    show.set_defaults(handler=_study_show)
    study.set_defaults(handler=lambda args: (study.print_help(), 2)[1])


def _client(args: argparse.Namespace) -> Any:
    from workers.client import HPOClient

    api = args.api or os.environ.get("HPO_API_URL", DEFAULT_API)
    token = args.token or os.environ.get("HPO_API_TOKEN")
    return HPOClient(api, token=token, retry_for_s=5.0)


def _api_call(args: argparse.Namespace, call: Callable[[Any], int]) -> int:
    from workers.client import ApiError, Unavailable

    try:
        with _client(args) as client:
            return call(client)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.details:
            print(json.dumps(exc.details, indent=2), file=sys.stderr)
        return 1
    except Unavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _study_create(args: argparse.Namespace) -> int:
    try:
        spec = yaml.safe_load(args.file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 1

    def call(client: Any) -> int:
        study = client.create_study(spec)
        print(f"created study {study['id']} ({study['name']})")
        return 0

    return _api_call(args, call)


def _study_list(args: argparse.Namespace) -> int:
    def call(client: Any) -> int:
        rows = list(client.list_studies(args.state))
        print(f"{'ID':>5}  {'STATE':<10} {'TRIALS':>7} {'DONE':>6}  NAME")
        for s in rows:
            c = s["trial_counts"]
            done = c["complete"] + c["pruned"] + c["failed"]
            print(
                f"{s['id']:>5}  {s['state']:<10} {s['n_trials_started']:>7} {done:>6}  {s['name']}"
            )
        return 0

    return _api_call(args, call)


def _study_show(args: argparse.Namespace) -> int:
    def call(client: Any) -> int:
        study = client.get_study(args.study)
        best = client.best(study["id"])
        print(json.dumps({"study": study, **best}, indent=2, default=str))
        return 0

    return _api_call(args, call)


# ---- worker and demo (the workers package) ----


def _add_workers(commands: Any) -> None:
    try:
        from workers.cli import add_commands
    except ImportError:  # the worker's extra (PyTorch) is not installed
        return
    add_commands(commands)


if __name__ == "__main__":
    raise SystemExit(main())
