"""``hpo worker`` and ``hpo demo`` (also ``python -m workers``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from workers.settings import WorkerSettings


def add_commands(commands: Any) -> argparse.ArgumentParser:
    """``hpo worker`` and ``hpo demo``; returns the ``worker`` parser (``hpo worker list`` is
    added to it by ``service.cli``)."""
    worker: argparse.ArgumentParser = commands.add_parser(
        "worker",
        help="run a worker: claim trials, train them, report back",
        description="Claims trials of the tasks it has from the service, trains them on the "
        "given device(s), reports validation loss per epoch and completes them. Settings "
        "also come from HPO_* environment variables (HPO_API_URL, HPO_API_TOKEN, ...).",
    )
    add_worker_arguments(worker)
    worker.set_defaults(handler=worker_command)
    demo = commands.add_parser(
        "demo",
        help="the main job: embedded database, API, two CPU workers, a study on digits",
    )
    demo.add_argument("--trials", type=int, default=40, help="trials in the study (default 40)")
    demo.add_argument("--epochs", type=int, default=15, help="epochs per trial (default 15)")
    demo.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    demo.add_argument("--port", type=int, default=8000, help="API port (0 = any free port)")
    demo.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep the API running after the study ends (Ctrl-C stops it)",
    )
    demo.set_defaults(handler=demo_command)
    for parser in (worker, demo):
        parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks of errors"
        )
    return worker


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        dest="api_url",
        help="service URL, or several comma-separated to fail over between (HPO_API_URL)",
    )
    parser.add_argument("--token", dest="api_token", help="bearer token (HPO_API_TOKEN)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (HPO_DEVICE, default auto)")
    parser.add_argument("--slots", type=int, help="trials at once (HPO_SLOTS)")
    parser.add_argument("--tasks", help="comma-separated task names to claim (HPO_TASKS)")
    parser.add_argument("--study", dest="studies", help="comma-separated study ids (HPO_STUDIES)")
    parser.add_argument("--name", dest="worker_name", help="worker name (HPO_WORKER_NAME)")
    parser.add_argument("--poll-wait", dest="poll_wait_s", type=float, help="long poll, seconds")
    parser.add_argument(
        "--exit-when-idle",
        dest="exit_when_idle_s",
        type=float,
        metavar="SECONDS",
        help="exit 0 once no trial was found for this long, for batch jobs "
        "(HPO_EXIT_WHEN_IDLE_S; default: never)",
    )
    parser.add_argument("--log-level", dest="log_level", help="debug | info | warning")


def settings_from(args: argparse.Namespace) -> WorkerSettings:
    """Flags override environment variables, which override defaults."""
    fields = (
        "api_url",
        "api_token",
        "device",
        "slots",
        "tasks",
        "studies",
        "worker_name",
        "poll_wait_s",
        "exit_when_idle_s",
        "log_level",
    )
    overrides = {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}
    for key in ("tasks", "studies"):
        if key in overrides:
            os.environ[f"HPO_{key.upper()}"] = overrides.pop(key)
    return WorkerSettings(**overrides)


def worker_command(args: argparse.Namespace) -> int:
    from workers.worker import configure_logging, run_worker

    settings = settings_from(args)
    configure_logging(settings.log_level)
    return run_worker(settings)


def demo_command(args: argparse.Namespace) -> int:
    from workers.demo import run_demo

    return run_demo(
        trials=args.trials,
        epochs=args.epochs,
        n_workers=args.workers,
        port=args.port,
        keep_serving=args.keep_serving,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m workers``: the same worker as ``hpo worker``, with the same short errors."""
    from service.cli.errors import run

    parser = argparse.ArgumentParser(prog="python -m workers", description="HPO worker")
    add_worker_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="tracebacks of errors")
    return run(worker_command, parser.parse_args(argv))
