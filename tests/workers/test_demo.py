"""``hpo demo`` runs to the end (shortened): embedded PostgreSQL, API, two workers, a study."""

from __future__ import annotations

import os
import subprocess
import sys
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
    logs = tmp_path / "hpo" / "demo-logs"
    assert (logs / "worker-0.log").exists() and (logs / "worker-1.log").exists()
    assert "Traceback" not in (logs / "api.log").read_text()
