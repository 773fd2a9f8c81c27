"""``hpo demo``: the whole product on one machine, in one command.

Starts the embedded PostgreSQL, the API server and CPU workers, submits a study that tunes the
learning rate, depth, per-layer widths, batch size and optimizer (SGD's momentum only when SGD
is chosen: a conditional space) of an MLP on scikit-learn's digits with median pruning, shows
live progress, prints the best trial and how to look at the results, then stops.

Ctrl-C once: the study is paused, the workers stop gracefully, the demo says how to go on;
twice: every process is killed at once.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from workers.client import ApiError, HPOClient, Unavailable
from workers.demo_report import Where, report, report_interrupted

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def _width(layer: int) -> dict[str, Any]:
    """The width of hidden layer ``layer``, which exists when the MLP has that many layers."""
    spec: dict[str, Any] = {"type": "int", "low": 16, "high": 256, "log": True}
    return spec if layer == 1 else {**spec, "when": {"n_layers": {"min": layer}}}


def demo_study(trials: int, epochs: int, parallel: int) -> dict[str, Any]:
    return {
        "name": f"digits-mlp-{time.strftime('%Y%m%d-%H%M%S')}",
        "directions": ["minimize"],
        "metric_names": ["val_loss"],
        "search_space": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
            "n_layers": {"type": "int", "low": 1, "high": 4},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256]},
            "optimizer": {"type": "categorical", "choices": ["adam", "sgd"]},
            # A conditional space: momentum only for SGD, a width for each layer there is.
            "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": ["sgd"]}},
            "width_l1": _width(1),
            "width_l2": _width(2),
            "width_l3": _width(3),
            "width_l4": _width(4),
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
    """The whole demo. Ctrl-C (or SIGTERM) once: the study is paused, the workers finish their
    epoch, checkpoint and hand their trials back, the API stops; exit status 130. Twice: every
    process is killed at once."""
    console = Console()
    demo = _Demo(console)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        try:
            demo.run(trials, epochs, n_workers, port, keep_serving)
            demo.stop()
            return 0
        except KeyboardInterrupt:
            demo.interrupted()
            return 130
    except KeyboardInterrupt:  # again, while stopping
        demo.kill()
        console.print(
            "\n[red]Second Ctrl-C: stopped at once.[/] Trials that were running go back to the "
            "queue when their leases expire (60 s)."
        )
        return 130
    finally:
        demo.kill()  # whatever is still running after an error


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Demo:
    """The demo's processes (one API, the workers), in their own sessions: a Ctrl-C reaches
    only the demo, which stops them in order."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.client: HPOClient | None = None
        self.study: dict[str, Any] | None = None
        self.where: Where | None = None

    def run(self, trials: int, epochs: int, n_workers: int, port: int, keep: bool) -> None:
        from service.db import migrate
        from service.db.engine import resolve_url
        from service.db.url import render_url
        from service.settings import ServerSettings

        console = self.console
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
        self.where = Where(api, render_url(url), settings.data_dir, admin_token, worker_token)
        logs = settings.data_dir / "demo-logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "HPO_DATABASE_URL": render_url(url),
            "HPO_API_URL": api,
            "HPO_API_TOKEN": worker_token,
        }
        console.print(f"[bold]2/4[/] API server on {api}")
        serve = [sys.executable, "-m", "service", "serve", "--port", str(port)]
        self.api = _start(serve, env, logs / "api.log")
        _wait_ready(api, self.api)
        self.client = HPOClient(api, token=admin_token, retry_for_s=10.0)
        self.study = self.client.create_study(demo_study(trials, epochs, n_workers))
        threads = max(1, (os.cpu_count() or 1) // max(1, n_workers))
        console.print(
            f"[bold]3/4[/] {n_workers} CPU workers ({threads} torch thread each); logs in {logs}"
        )
        worker_env = {**env, "HPO_TORCH_THREADS": str(threads)}
        for i in range(n_workers):
            cmd = [sys.executable, "-m", "workers", "--device", "cpu", "--slots", "1"]
            cmd += ["--name", f"demo-{i}", "--poll-wait", "2"]
            self.workers.append(_start(cmd, worker_env, logs / f"worker-{i}.log"))
        console.print(
            f"[bold]4/4[/] study [cyan]{self.study['name']}[/] (id {self.study['id']}): "
            f"{trials} trials of {epochs} epochs, TPE + median pruning "
            "[dim](Ctrl-C pauses it and stops)[/]"
        )
        finished = _watch(self.client, self.study["id"], trials, console)
        report(self.client, self.study, finished, self.where, console)
        if keep:
            console.print(f"\nThe API keeps serving on {api} (Ctrl-C to stop).")
            _wait_for_ctrl_c()

    def stop(self) -> None:
        self._stop_workers()
        self._stop_api()

    def _stop_workers(self) -> None:
        """One SIGTERM each: a worker finishes its epoch, checkpoints, hands its trial back."""
        for proc in self.workers:
            _signal(proc, signal.SIGTERM)
        for proc in self.workers:
            _wait(proc, 60)

    def _stop_api(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.api is not None:
            _signal(self.api, signal.SIGTERM)
            _wait(self.api, 30)

    def interrupted(self) -> None:
        """The first Ctrl-C: pause the study, stop the workers gracefully, then the API, and
        say in which state the study is left."""
        self.console.print(
            "\n[yellow]Ctrl-C:[/] pausing the study; the workers finish their epoch, "
            "checkpoint and hand their trials back (Ctrl-C again to stop at once)"
        )
        self._pause()
        self._stop_workers()
        study = self._study_now()
        self._stop_api()
        if self.where is not None:
            report_interrupted(study, self.where, self.console)

    def _pause(self) -> None:
        if self.client is None or self.study is None:
            return
        try:
            if self.client.get_study(self.study["id"])["state"] == "running":
                self.client.update_study(self.study["id"], state="paused")
        except (ApiError, Unavailable) as exc:
            self.console.print(f"[red]could not pause the study:[/] {exc}")

    def _study_now(self) -> dict[str, Any] | None:
        if self.client is None or self.study is None:
            return None
        try:
            return self.client.get_study(self.study["id"])
        except (ApiError, Unavailable):
            return self.study

    def kill(self) -> None:
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


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


def _local_tokens(url: URL) -> tuple[str, str]:
    """An admin and a worker token of team ``local``, valid for a week."""
    from service.auth.service import issue_token

    week = dt.timedelta(days=7)
    admin = issue_token(url, "local", "admin", name="hpo demo", expires_in=week)
    worker = issue_token(url, "local", "worker", name="hpo demo workers", expires_in=week)
    return admin, worker


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own session: the terminal's Ctrl-C reaches the demo, not the child."""
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_ready(api: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with status {proc.returncode}; see its log")
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
