"""The processes of a fault scenario: API servers to kill and restart, and a fleet of real
worker processes (``python -m workers``, the scripted test tasks) to kill with SIGKILL.

Every call to the API carries the admin token of the database (``Authorization: Bearer``);
workers get it as ``HPO_API_TOKEN``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.db.url import normalize_url, render_url
from tests.support import ServerProcess
from tests.workers.conftest import WorkerProcess

API = "/api/v1"

# Servers of the scenarios: the reaper looks every 0.2 s, long polls re-check every second (a
# notification sent while a process had no LISTEN connection is not replayed), quiet logs.
SERVER_ENV: Mapping[str, str] = {
    "HPO_REAPER_INTERVAL_S": "0.2",
    "HPO_CLAIM_REPOLL_S": "1",
    "HPO_LOG_LEVEL": "error",
}


def kill_server(server: ServerProcess) -> None:
    """SIGKILL: no graceful shutdown, connections reset, nothing handed back."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(timeout=10)


def restart_server(server: ServerProcess) -> None:
    """Start the killed server again on its port; returns once it is ready."""
    server.start(timeout_s=60)


@dataclass(frozen=True)
class Database:
    """A migrated database, an admin token of a team for the scenario's own calls, and a token
    for its workers (the team's worker role; the admin token where none was made)."""

    url: str  # SQLAlchemy URL, as the server takes it
    token: str
    worker_token: str = ""

    @property
    def for_workers(self) -> str:
        return self.worker_token or self.token

    @property
    def dsn(self) -> str:
        return render_url(normalize_url(self.url).set(drivername="postgresql"))


class Api:
    """Plain HTTP calls a scenario makes itself (not through a worker)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def create_study(self, body: Mapping[str, Any]) -> int:
        response = httpx.post(f"{self.url}{API}/studies", json=dict(body), headers=self.headers)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def set_state(self, study_id: int, state: str) -> None:
        """Pause, resume or stop the study."""
        response = httpx.patch(
            f"{self.url}{API}/studies/{study_id}", json={"state": state}, headers=self.headers
        )
        assert response.status_code == 200, response.text


@dataclass(frozen=True)
class StudyPlan:
    """The study a scenario runs: ``trials`` trials of ``steps`` steps of ``sleep_s`` each,
    on ``workers`` worker processes."""

    trials: int
    workers: int
    steps: int = 6
    sleep_s: float = 0.15
    lease_seconds: int = 3
    max_retries: int = 10

    def study_body(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "search_space": {
                "x": {"type": "float", "low": -1.0, "high": 1.0},
                "y": {"type": "int", "low": 0, "high": 9},
            },
            "sampler": {"name": "random", "options": {"seed": 7}},
            "task": {"name": "test_sleep", "steps": self.steps, "sleep_s": self.sleep_s},
            "max_trials": self.trials,
            "lease_seconds": self.lease_seconds,
            "max_retries": self.max_retries,
        }


class WorkerFleet:
    """Worker processes of one study; each has a fresh name (so ``worker_id`` = ``name:0``)."""

    def __init__(self, workdir: Path, study_id: int, token: str, api_retry_s: float = 30) -> None:
        self._workdir = workdir
        self._study_id = study_id
        self._env = {
            "HPO_SPOOL_DIR": str(workdir / "spool"),
            "HPO_TORCH_THREADS": "1",
            "HPO_API_RETRY_S": str(api_retry_s),
            "HPO_ENABLE_TEST_TASKS": "1",
            "HPO_LOG_LEVEL": os.environ.get("HPO_FAULTS_WORKER_LOG", "warning"),
            **({"HPO_API_TOKEN": token} if token else {}),
        }
        self.live: dict[str, WorkerProcess] = {}  # worker_id → process
        self.started = 0

    def start(self, api: str) -> str:
        """Start a worker against ``api`` (one URL or several, comma-separated); its id."""
        name = f"w{self.started}"
        self.started += 1
        log = self._workdir / f"{name}.log"
        args = ["--name", name, "--tasks", "test_sleep", "--study", str(self._study_id)]
        self.live[f"{name}:0"] = WorkerProcess(api, log, args, self._env)
        return f"{name}:0"

    def kill(self, worker_id: str) -> None:
        """SIGKILL the worker (it hands nothing back, its lease must expire)."""
        worker = self.live.pop(worker_id)
        worker.proc.kill()
        worker.proc.wait(timeout=10)
        worker.stop()  # closes its log

    def stop(self) -> None:
        for worker in self.live.values():
            worker.stop()
        self.live.clear()
