"""What ``hpo demo`` prints at its end: the best trial, and how to look at the results or go
on with the study. Every command it prints runs as printed: ``hpo`` by its path when it is not
on PATH (``.venv/bin/hpo`` after the quick start), ``HPO_DATA_DIR`` when the demo ran with one,
``optuna-dashboard`` only when it is installed (else how to install it)."""

from __future__ import annotations

import importlib.util
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from service.cli.invocation import console_script, hpo_command
from workers.client import HPOClient


@dataclass(frozen=True)
class Where:
    api: str
    db_url: str
    data_dir: Path
    token: str  # admin, team local
    worker_token: str


def report(
    client: HPOClient,
    study: dict[str, Any],
    finished: dict[str, Any],
    where: Where,
    console: Console,
) -> None:
    best = client.best(study["id"])["best"]
    counts = finished["trial_counts"]
    console.print(
        f"\nDone: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed."
    )
    if best is None:
        console.print("[red]No trial completed.[/]")
        return
    table = Table(title=f"Best trial #{best['number']}")
    table.add_column("")
    table.add_column("value")
    table.add_row("[bold]val_loss[/]", f"[bold]{best['value']:.4f}[/]")
    for name, value in best["params"].items():
        table.add_row(name, f"{value:.5g}" if isinstance(value, float) else str(value))
    for key in ("epochs_run", "wall_time_s", "n_params", "device"):
        if key in best["user_attrs"]:
            table.add_row(f"[dim]{key}[/]", str(best["user_attrs"][key]))
    console.print(table)
    console.print(_look(study, where), soft_wrap=True)


def report_interrupted(study: dict[str, Any] | None, where: Where, console: Console) -> None:
    """After the first Ctrl-C: the study's state and counts, and how to go on with it."""
    if study is None:
        console.print("Stopped.")
        return
    c = study["trial_counts"]
    console.print(
        f"Stopped. Study [cyan]{study['name']}[/] is [bold]{study['state']}[/]: "
        f"{c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed, "
        f"{c['waiting']} handed back to the queue (with their checkpoints)."
    )
    hpo, name, data = hpo_command(), shlex.quote(study["name"]), _data_dir_prefix()
    commands = [
        f"  {data}{hpo} serve",
        f"  HPO_API_TOKEN={where.worker_token} {hpo} worker --device cpu",
        f"  HPO_API_TOKEN={where.token} {hpo} study resume {name}",
    ]
    console.print("\n[bold]To go on with it[/] (each in its own terminal):")
    console.print(escape("\n".join(commands)), soft_wrap=True)


def _look(study: dict[str, Any], where: Where) -> str:
    hpo, name, data = hpo_command(), shlex.quote(study["name"]), _data_dir_prefix()
    url = shlex.quote(where.db_url)
    lines = [
        f"  {data}{hpo} serve",
        "    then open http://127.0.0.1:8000/dashboard (API docs at /docs); it asks for this",
        "    token (team local, admin, valid 7 days):",
        f"    {where.token}",
        f"  HPO_API_TOKEN={where.token} {hpo} study show {name}   (while it serves)",
        f"  {data}{hpo} token create --team local --role admin   makes another token.",
        "  Optuna reads the same database while it serves:",
        *(f"    {line}" for line in _optuna_dashboard(url)),
        f"    optuna.load_study(study_name={study['optuna_study_name']!r}, storage={url})",
    ]
    body = escape("\n".join(lines))
    footer = f"[dim]database files: {where.data_dir}; this run's API: {where.api}[/]"
    return f"\n[bold]Look at the results[/] (the study stays in the database):\n{body}\n{footer}"


def _optuna_dashboard(url: str) -> list[str]:
    command = f"{console_script('optuna-dashboard')} {url}"
    if importlib.util.find_spec("optuna_dashboard") is not None:
        return [command]
    pip = console_script("pip")
    return [f"{pip} install optuna-dashboard   (not installed yet), then", command]


def _data_dir_prefix() -> str:
    """``HPO_DATA_DIR=... `` when the demo ran with one, so the printed command finds it."""
    data_dir = os.environ.get("HPO_DATA_DIR")
    return f"HPO_DATA_DIR={shlex.quote(data_dir)} " if data_dir else ""
