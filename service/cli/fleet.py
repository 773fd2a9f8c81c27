"""``hpo worker list``: the team's workers, what they run and what they hold."""

from __future__ import annotations

import argparse

from service.cli.api import api_client
from service.cli.options import command
from service.cli.output import print_json, print_table, timestamp


def add_commands(worker: argparse.ArgumentParser) -> None:
    """``list`` under ``hpo worker`` (which, without a subcommand, runs a worker)."""
    sub = worker.add_subparsers(title="worker commands", metavar="[list]")
    listing = command(
        sub, "list", "workers seen lately, with the trials they hold", api=True, json=True
    )
    listing.add_argument(
        "--seen-within", type=int, metavar="SECONDS", help="seen this recently (default 3600)"
    )
    listing.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    # `hpo worker --api URL list`: the worker's own --api and --token count too
    args.api = args.api or getattr(args, "api_url", None)
    args.token = args.token or getattr(args, "api_token", None)
    with api_client(args) as client:
        workers = list(client.workers(args.seen_within))
    if args.json:
        print_json(workers)
        return 0
    rows = [
        [
            w["worker_id"],
            ", ".join(w["tasks"]) if w["tasks"] is not None else "any",
            timestamp(w["last_seen_at"]),
            " ".join(f"{t['study_id']}#{t['number']}" for t in w["trials"]) or "-",
        ]
        for w in workers
    ]
    print_table(["WORKER", "TASKS", "LAST SEEN", "TRIALS (study#number)"], rows)
    return 0
