"""``hpo demo``: the whole product on one machine, in one command.

Starts the embedded PostgreSQL, the API server and CPU workers, submits a study that tunes the
learning rate, depth and batch size of an MLP on scikit-learn's digits with median pruning,
shows live progress, prints the best trial and how to look at the results, then stops.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from workers.client import HPOClient

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def demo_study(trials: int, epochs: int, parallel: int) -> dict[str, Any]:
    return {
        "name": f"digits-mlp-{time.strftime('%Y%m%d-%H%M%S')}",
        "directions": ["minimize"],
        "metric_names": ["val_loss"],
        "search_space": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
            "n_layers": {"type": "int", "low": 1, "high": 4},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256]},
        },
        "sampler": {"name": "tpe", "options": {"n_startup_trials": 6, "seed": 0}},
        "pruner": {"name": "median", "options": {"n_startup_trials": 4, "n_warmup_steps": 3}},
        "task": {"name": "mlp_classifier", "dataset": "digits", "epochs": epochs},
        "max_trials": trials,
        "max_parallel": parallel,
        "lease_seconds": 60,
        "metadata": {"created_by": "hpo demo"},
    }


def run_demo(trials: int, epochs: int, n_workers: int, port: int, keep_serving: bool) -> int:
    console = Console()
    from service.db import migrate
    from service.db.engine import resolve_url
    from service.db.url import render_url
    from service.settings import ServerSettings

    settings = ServerSettings()
    where = "HPO_DATABASE_URL" if settings.database_url else f"embedded, in {settings.data_dir}"
    console.print(f"[bold]1/4[/] PostgreSQL ({where}): bringing the schema up to date")
    url = resolve_url(settings)
    migrate.upgrade(url)
    # The server wants a team's token on every call: the demo makes its own (team "local"),
    # an admin one for itself and the person running it, a worker one for its workers.
    admin_token, worker_token = _local_tokens(url)
    port = port or _free_port()
    if not _port_free(port):
        console.print(f"port {port} is taken; using a free one")
        port = _free_port()
    api = f"http://127.0.0.1:{port}"
    logs = settings.data_dir / "demo-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HPO_DATABASE_URL": render_url(url),
        "HPO_API_URL": api,
        "HPO_API_TOKEN": worker_token,
    }
    threads = max(1, (os.cpu_count() or 1) // max(1, n_workers))
    with ExitStack() as stack:
        console.print(f"[bold]2/4[/] API server on {api}")
        stack.enter_context(
            _process(
                [sys.executable, "-m", "service", "serve", "--port", str(port)],
                env,
                logs / "api.log",
            )
        )
        _wait_ready(api, console)
        client = stack.enter_context(HPOClient(api, token=admin_token))
        study = client.create_study(demo_study(trials, epochs, n_workers))
        console.print(
            f"[bold]3/4[/] {n_workers} CPU workers ({threads} torch thread each); logs in {logs}"
        )
        for i in range(n_workers):
            cmd = [
                sys.executable,
                "-m",
                "workers",
                "--device",
                "cpu",
                "--slots",
                "1",
                "--name",
                f"demo-{i}",
                "--poll-wait",
                "2",
            ]
            stack.enter_context(
                _process(cmd, {**env, "HPO_TORCH_THREADS": str(threads)}, logs / f"worker-{i}.log")
            )
        console.print(
            f"[bold]4/4[/] study [cyan]{study['name']}[/] (id {study['id']}): "
            f"{trials} trials of {epochs} epochs, TPE + median pruning"
        )
        finished = _watch(client, study["id"], trials, console)
        found_at = _Where(api, render_url(url), settings.data_dir, admin_token)
        _report(client, study, finished, found_at, console)
        if keep_serving:
            console.print(f"\nThe API keeps serving on {api} (Ctrl-C to stop).")
            _wait_for_ctrl_c()
    return 0


def _watch(client: HPOClient, study_id: int, trials: int, console: Console) -> dict[str, Any]:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "best {task.fields[best]}  pruned {task.fields[pruned]}  "
            "failed {task.fields[failed]}  running {task.fields[running]}"
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("trials", total=trials, best="-", pruned=0, failed=0, running=0)
        while True:
            study = client.get_study(study_id)
            counts = study["trial_counts"]
            done = counts["complete"] + counts["pruned"] + counts["failed"]
            best = client.best(study_id)["best"]
            progress.update(
                bar,
                completed=done,
                best=f"{best['value']:.4f}" if best else "-",
                pruned=counts["pruned"],
                failed=counts["failed"],
                running=counts["running"],
            )
            if study["state"] == "completed" or done >= trials:
                return study
            time.sleep(0.5)


@dataclass(frozen=True)
class _Where:
    api: str
    db_url: str
    data_dir: Path
    token: str


def _local_tokens(url: URL) -> tuple[str, str]:
    """An admin and a worker token of team ``local``, valid for a week."""
    from service.auth.service import issue_token

    week = dt.timedelta(days=7)
    admin = issue_token(url, "local", "admin", name="hpo demo", expires_in=week)
    worker = issue_token(url, "local", "worker", name="hpo demo workers", expires_in=week)
    return admin, worker


def _report(
    client: HPOClient,
    study: dict[str, Any],
    finished: dict[str, Any],
    where: _Where,
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
    console.print(
        "\n[bold]Look at the results[/] (the study stays in the database):\n"
        "  [cyan]hpo serve[/]  then open http://127.0.0.1:8000/dashboard "
        "(API docs at /docs); it asks for this token (team local, admin, valid 7 days):\n"
        f"    {where.token}\n"
        f"  [cyan]HPO_API_TOKEN={where.token} hpo study show {study['name']}[/]\n"
        "  [cyan]hpo token create --team local --role admin[/] makes another one.\n"
        "  Optuna reads the same database while [cyan]hpo serve[/] runs:\n"
        f"    optuna-dashboard '{where.db_url}'\n"
        f"    optuna.load_study(study_name='{study['optuna_study_name']}', storage=<that URL>)\n"
        f"[dim]database files: {where.data_dir}; this run's API: {where.api}[/]",
        soft_wrap=True,
    )


@contextmanager
def _process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(api: str, console: Console, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API did not come up on {api}; see its log")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_ctrl_c() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
