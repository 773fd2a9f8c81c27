"""The embedded default: no database configured, the service runs PostgreSQL itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.helpers import study_body
from tests.support import ServerProcess
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
