"""Worker tests: a real server process, real worker processes, real training on small data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth.service import issue_token
from tests.support import ScratchDatabase, ServerProcess

API = "/api/v1"


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string, token=db.token) as s:
        yield s


class WorkerProcess:
    """``python -m workers`` in a subprocess, its log in a file the test can read."""

    def __init__(self, api: str, log: Path, args: list[str], env: dict[str, str]) -> None:
        self.log = log
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers",
                "--api",
                api,
                "--device",
                "cpu",
                "--slots",
                "1",
                "--poll-wait",
                "1",
                *args,
            ],
            env={**os.environ, **env},
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Signal the worker and its slot processes at once, as Slurm's scancel and systemd do
        (the worker runs in its own session, so its process group is its own)."""
        os.killpg(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def start_worker(
    server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> Iterator[StartWorker]:
    started: list[WorkerProcess] = []
    worker_token = issue_token(db.url, "tests", "worker")  # workers run with the worker role

    def start(*args: str, name: str | None = None, test_tasks: bool = False) -> WorkerProcess:
        name = name or f"w{len(started)}"
        env = {
            "HPO_SPOOL_DIR": str(tmp_path / "spool"),
            "HPO_TORCH_THREADS": "1",
            "HPO_API_RETRY_S": "20",
            "HPO_ENABLE_TEST_TASKS": "1" if test_tasks else "0",
            "HPO_API_TOKEN": worker_token,
        }
        log = tmp_path / f"{name}-{len(started)}.log"
        worker = WorkerProcess(server.url, log, ["--name", name, *args], env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def create_study(server: ServerProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}{API}/studies", json=body, headers=server.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def get(server: ServerProcess, path: str) -> Any:
    response = httpx.get(f"{server.url}{API}{path}", timeout=10, headers=server.headers)
    assert response.status_code == 200, response.text
    return response.json()


def trials_of(server: ServerProcess, study_id: int) -> list[dict[str, Any]]:
    page = get(server, f"/studies/{study_id}/trials?limit=1000&include_intermediate=true")
    return list(page["items"])
