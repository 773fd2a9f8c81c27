"""``hpo study ...``: create, inspect, steer, export and import studies through the HTTP API."""

from __future__ import annotations

import argparse
import itertools
import sys
from typing import Any

from service.cli import trial_import
from service.cli.api import api_client, study_id
from service.cli.errors import CliError
from service.cli.options import command, group
from service.cli.output import print_json, print_table
from service.cli.study_file import parse_value, read_study
from service.cli.study_summary import print_best, print_study, print_trials
from workers.client import ApiError, HPOClient

STATES = ("running", "paused", "stopped", "completed")
_STEER = {
    "pause": ("paused", "pause a study: no new trials; running ones finish"),
    "resume": ("running", "resume a paused or stopped study"),
    "stop": ("stopped", "stop a study: running trials checkpoint and stop at their next report"),
}


def add_commands(commands: Any) -> None:
    _, sub = group(commands, "study", "create, inspect and steer studies through the API", api=True)
    create = command(sub, "create", "create a study from a YAML or JSON file", api=True)
    create.add_argument("file", help="same body as POST /api/v1/studies (.json: JSON; - : stdin)")
    create.set_defaults(handler=_create)
    listing = command(sub, "list", "list studies with their trial counts", api=True, json=True)
    listing.add_argument("--state", choices=STATES)
    listing.set_defaults(handler=_list)
    show = command(sub, "show", "a study's settings, progress and best trial", api=True, json=True)
    show.add_argument("study", help="name or id")
    show.set_defaults(handler=_show)
    trials = command(sub, "trials", "a study's trials as a table", api=True, json=True)
    trials.add_argument("study", help="name or id")
    trials.add_argument(
        "--sort", choices=["number", "-number", "value", "-value"], default="number"
    )
    trials.add_argument("--state", action="append", help="only this state (repeatable)")
    trials.add_argument("--limit", type=int, help="at most this many rows")
    trials.set_defaults(handler=_trials)
    best = command(
        sub, "best", "the best trial (the Pareto front: several objectives)", api=True, json=True
    )
    best.add_argument("study", help="name or id")
    best.set_defaults(handler=_best)
    export = command(sub, "export", "every trial as CSV or JSON Lines", api=True)
    export.add_argument("study", help="name or id")
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("-o", "--output", help="write to this file (default: standard output)")
    export.set_defaults(handler=_export)
    imports = command(
        sub, "import", "import finished trials: an export (CSV, JSON Lines) or an Optuna study",
        api=True,
    )  # fmt: skip
    imports.add_argument("study", help="name or id of the study to import into")
    imports.add_argument("file", nargs="?", help="a file `hpo study export` wrote (.csv, .jsonl)")
    imports.add_argument("--optuna-storage", metavar="URL", help="an Optuna storage URL")
    imports.add_argument("--optuna-study", metavar="NAME", help="the Optuna study's name")
    imports.set_defaults(handler=_import)
    enqueue = command(sub, "enqueue", "queue a configuration ahead of new samples", api=True)
    enqueue.add_argument("study", help="name or id")
    enqueue.add_argument("params", nargs="+", metavar="NAME=VALUE", help="e.g. lr=1e-3 n_layers=2")
    enqueue.set_defaults(handler=_enqueue)
    for name, (state, text) in _STEER.items():
        steer = command(sub, name, text, api=True)
        steer.add_argument("study", help="name or id")
        steer.set_defaults(handler=_steer, state=state)
    delete = command(sub, "delete", "delete a study, its trials and checkpoints", api=True)
    delete.add_argument("study", help="name or id")
    delete.add_argument("--yes", action="store_true", help="do not ask")
    delete.set_defaults(handler=_delete)


def _create(args: argparse.Namespace) -> int:
    spec = read_study(args.file)
    with api_client(args) as client:
        study = client.create_study(spec)
    print(f"created study {study['id']} ({study['name']})")
    return 0


def _list(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        studies = list(client.list_studies(args.state))
    if args.json:
        print_json(studies)
        return 0
    headers = [">ID", "STATE", ">STARTED", ">COMPLETE", ">PRUNED", ">FAILED", ">RUNNING", "NAME"]
    print_table(headers, [_list_row(s) for s in studies])
    return 0


def _list_row(study: dict[str, Any]) -> list[object]:
    counts = study["trial_counts"]
    budget = study["max_trials"]
    started = study["n_trials_started"]
    return [
        study["id"],
        study["state"],
        f"{started}/{budget}" if budget else started,
        counts["complete"],
        counts["pruned"],
        counts["failed"],
        counts["running"],
        study["name"],
    ]


def _show(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        study = client.get_study(args.study)
        best = client.best(study["id"])
    if args.json:
        print_json({"study": study, **best})
    else:
        print_study(study, best)
    return 0


def _trials(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")
    page = min(args.limit or 1000, 1000)
    with api_client(args) as client:
        sid = study_id(client, args.study)
        found = client.trials(sid, sort=args.sort, state=args.state, limit=page)
        trials = list(itertools.islice(found, args.limit))
    if args.json:
        print_json(trials)
    else:
        print_trials(trials)
    return 0


def _best(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        study = client.get_study(args.study)
        best = client.best(study["id"])
    if args.json:
        print_json(best)
    else:
        print_best(study, best)
    return 0


def _export(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        sid = study_id(client, args.study)
        if args.output is None:
            _write(client, sid, args.format, sys.stdout.buffer)
            return 0
        with open(args.output, "wb") as out:
            _write(client, sid, args.format, out)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _write(client: HPOClient, sid: int, fmt: str, out: Any) -> None:
    for chunk in client.export(sid, fmt):
        out.write(chunk)
    out.flush()


def _import(args: argparse.Namespace) -> int:
    optuna = args.optuna_storage is not None or args.optuna_study is not None
    if optuna and args.file is not None:
        raise CliError("give a file or an Optuna study, not both")
    if optuna and (args.optuna_storage is None or args.optuna_study is None):
        raise CliError(
            "an Optuna study needs both --optuna-storage URL and --optuna-study NAME",
            "e.g. --optuna-storage sqlite:///optuna.db --optuna-study my-study",
        )
    if not optuna and args.file is None:
        raise CliError(
            "give the file to import (an export, .csv or .jsonl), or an Optuna study",
            "e.g. hpo study import STUDY trials.jsonl, or --optuna-storage URL --optuna-study NAME",
        )
    with api_client(args) as client:
        study = client.get_study(args.study)
        target = trial_import.Target.of(study)
        if optuna:
            source = trial_import.read_optuna(args.optuna_storage, args.optuna_study, target)
        else:
            source = trial_import.read_file(args.file, target)
        if not source.rows:
            raise CliError(f"{source.label} holds no finished trial: nothing to import")

        def post(items: Any, dry_run: bool) -> Any:
            return client.import_trials(study["id"], items, source=source.label, dry_run=dry_run)

        imported = trial_import.send(source.rows, post, _import_refusal)
    notes = [f"{source.unfinished} unfinished left out"] if source.unfinished else []
    if source.dropped_constraints:
        names = ", ".join(sorted(source.dropped_constraints))
        notes.append(f"constraint values the study does not declare left out: {names}")
    more = f" ({'; '.join(notes)})" if notes else ""
    print(f"imported {imported} trials into {study['name']} from {source.label}{more}")
    return 0


def _import_refusal(exc: Exception) -> dict[str, Any] | None:
    """The details of the API's refusal of a trial (their ``index`` names it)."""
    if isinstance(exc, ApiError) and exc.status == 422 and isinstance(exc.details, dict):
        return exc.details
    return None


def _enqueue(args: argparse.Namespace) -> int:
    params = {}
    for pair in args.params:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"{pair!r} is not NAME=VALUE", "e.g. lr=1e-3 n_layers=2 batch_size=64")
        params[name] = parse_value(value)
    with api_client(args) as client:
        study = client.get_study(args.study)
        trial = client.enqueue(study["id"], params)
    print(f"queued trial #{trial['number']} of {study['name']}: {trial['params']}")
    return 0


def _steer(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        study = client.get_study(args.study)
        changed = client.update_study(study["id"], state=args.state)
    print(f"study {changed['name']}: {study['state']} -> {changed['state']}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with api_client(args) as client:
        study = client.get_study(args.study)
        if not args.yes:
            _confirm(study)
        client.delete_study(study["id"])
    print(f"deleted study {study['name']} (id {study['id']})")
    return 0


def _confirm(study: dict[str, Any]) -> None:
    if not sys.stdin.isatty():
        raise CliError(f"not deleting {study['name']} without --yes (no terminal to ask at)")
    started = study["n_trials_started"]
    answer = input(f"delete study {study['name']} and its {started} trials? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("not deleted")
