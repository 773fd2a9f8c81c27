"""``hpo demo`` runs to the end (shortened): embedded PostgreSQL, API, two workers, a study."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_to_the_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HPO_DATABASE_URL"}
    env["HPO_DATA_DIR"] = str(tmp_path / "hpo")
    result = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--trials", "6", "--epochs", "3", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "6/6" in out and "Best trial #" in out and "val_loss" in out
    assert "hpo study show digits-mlp-" in out
    # The hints run as printed: `hpo` (and optuna-dashboard, installed by the dev extra) by
    # their path when not on PATH, the data dir of this run given.
    (hpo,) = re.findall(r"^  HPO_DATA_DIR=\S+ (\S+) serve$", out, re.M)
    assert shutil.which(hpo) is not None or Path(hpo).exists(), hpo
    assert re.search(
        rf"^  HPO_API_TOKEN=hpo_\S+ {re.escape(hpo)} study show digits-mlp-", out, re.M
    )
    (dashboard,) = re.findall(r"^    (\S+) 'postgresql", out, re.M)
    assert Path(dashboard).name == "optuna-dashboard"
    assert shutil.which(dashboard) is not None or Path(dashboard).exists(), dashboard
    logs = tmp_path / "hpo" / "demo-logs"
    assert (logs / "worker-0.log").exists() and (logs / "worker-1.log").exists()
    assert "Traceback" not in (logs / "api.log").read_text()


def _start_demo(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """A demo long enough to interrupt, in its own process group (as a terminal's job)."""
    data = tmp_path / "hpo"
    env = {k: v for k, v in os.environ.items() if k != "HPO_DATABASE_URL"}
    env["HPO_DATA_DIR"] = str(data)
    out = tmp_path / "demo.out"
    cmd = [sys.executable, "-m", "service", "demo", "--trials", "30", "--epochs", "40"]
    cmd += ["--port", "0"]
    with out.open("wb") as sink:
        demo = subprocess.Popen(
            cmd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return demo, data, out


def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _processes_of(data: Path) -> list[int]:
    """Processes started for this demo (they have its HPO_DATA_DIR): none may be left."""
    marker = f"HPO_DATA_DIR={data}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _ctrl_c(demo: subprocess.Popen[bytes]) -> None:
    os.killpg(demo.pid, signal.SIGINT)  # what a terminal sends to its foreground job


def test_ctrl_c_pauses_the_study_and_stops_the_workers_gracefully(tmp_path: Path) -> None:
    demo, data, out = _start_demo(tmp_path)
    worker_log = data / "demo-logs" / "worker-0.log"
    try:
        _wait_until(
            lambda: worker_log.exists() and " trial " in worker_log.read_text(),
            240,
            "a trial to run",
        )  # fmt: skip
        _ctrl_c(demo)
        assert demo.wait(timeout=120) == 130
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = out.read_text()
    assert "Traceback" not in text, text
    assert "Ctrl-C" in text and "is paused" in text and "handed back to the queue" in text
    assert "study resume digits-mlp-" in text
    logs = [(data / "demo-logs" / f"worker-{i}.log").read_text() for i in (0, 1)]
    assert any("handed back" in log for log in logs), logs
    assert not any("exiting now" in log for log in logs), logs
    assert _processes_of(data) == []  # workers, API and PostgreSQL stopped


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    demo, data, out = _start_demo(tmp_path)
    try:
        _wait_until(lambda: "4/4" in out.read_text(), 240, "the study to start")
        _ctrl_c(demo)
        _wait_until(lambda: "Ctrl-C:" in out.read_text(), 30, "the first Ctrl-C to be seen")
        _ctrl_c(demo)
        assert demo.wait(timeout=60) == 130
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
    text = out.read_text()
    assert "Second Ctrl-C" in text and "Traceback" not in text, text
    assert _processes_of(data) == []
