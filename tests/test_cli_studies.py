"""``hpo study ...`` and ``hpo worker list`` in subprocesses, on a real server: what users read
(tables, summaries) and what scripts read (``--json``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.helpers import study_body
from tests.support import ScratchDatabase, ServerProcess, hpo
from workers.client import HPOClient, Lease

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(test_db: ScratchDatabase) -> Iterator[ServerProcess]:
    """One server for the module (ids are never reused, so its caches stay right)."""
    with ServerProcess(test_db.url_string, token=test_db.token) as s:
        yield s


@pytest.fixture
def study(db: ScratchDatabase, server: ServerProcess, tmp_path: Path) -> dict[str, Any]:
    """Study "cli" with 3 complete trials (values 0.3, 0.1, 0.2), one failed (nan), one pruned
    and one running, asked by worker "cli-worker:0"."""
    spec = tmp_path / "cli.yaml"
    spec.write_text(yaml.safe_dump(study_body("cli")))
    created = hpo("study", "create", str(spec), env=env_of(server))
    assert created.returncode == 0, created.stderr
    with HPOClient(server.url, token=server.token) as client:
        found = client.get_study("cli")
        for outcome in (0.3, 0.1, 0.2, "failed", "pruned", "running"):
            lease = client.ask(found["id"], "cli-worker:0")
            assert isinstance(lease, Lease)
            if outcome == "failed":
                client.complete(lease.trial_id, lease.token, state="failed", reason="nan")
            elif outcome == "pruned":
                client.report(lease.trial_id, lease.token, 0, 1.0)
                client.complete(lease.trial_id, lease.token, state="pruned")
            elif isinstance(outcome, float):
                client.complete(lease.trial_id, lease.token, values=[outcome])
        return found


def env_of(server: ServerProcess) -> dict[str, str]:
    return {"HPO_API_URL": server.url, "HPO_API_TOKEN": server.token}


def ok(*args: str, env: dict[str, str]) -> str:
    result = hpo(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_shows_the_counts_of_each_state(server: ServerProcess, study: dict[str, Any]) -> None:
    lines = ok("study", "list", env=env_of(server)).splitlines()
    assert lines[0].split() == [
        "ID", "STATE", "STARTED", "COMPLETE", "PRUNED", "FAILED", "RUNNING", "NAME"
    ]  # fmt: skip
    assert lines[1].split() == [str(study["id"]), "running", "6/50", "3", "1", "1", "1", "cli"]
    (listed,) = json.loads(ok("study", "list", "--json", env=env_of(server)))
    assert listed["trial_counts"]["failed"] == 1 and listed["trial_counts"]["pruned"] == 1


def test_global_options_before_and_after_the_command(
    server: ServerProcess, study: dict[str, Any]
) -> None:
    env = {"HPO_API_URL": "http://127.0.0.1:1", "HPO_API_TOKEN": ""}
    after = ok("study", "list", "--api", server.url, "--token", server.token, env=env)
    before = ok("study", "--api", server.url, "--token", server.token, "list", env=env)
    assert after == before and "cli" in after
    workers = ok("worker", "list", "--api", server.url, "--token", server.token, env=env)
    assert "cli-worker:0" in workers


def test_show_is_a_summary_and_json_on_request(
    server: ServerProcess, study: dict[str, Any]
) -> None:
    text = ok("study", "show", "cli", env=env_of(server))
    assert text.startswith(f"cli  (id {study['id']}, team tests)  running\n")
    assert "lr: float 1e-05 .. 0.1, log" in text
    assert "6 of 50 started: 3 complete, 1 pruned, 1 failed, 1 running, 0 waiting" in text
    assert "best          #1  0.1  " in text
    assert "{" not in text  # not JSON
    doc = json.loads(ok("study", "show", str(study["id"]), "--json", env=env_of(server)))
    assert doc["study"]["name"] == "cli" and doc["best"]["value"] == 0.1


def test_trials_table_sorts(server: ServerProcess, study: dict[str, Any]) -> None:
    env = env_of(server)
    table = ok("study", "trials", "cli", env=env).splitlines()
    assert table[0].split()[:3] == ["#", "STATE", "VALUE"] and "lr" in table[0]
    assert [line.split()[0] for line in table[1:]] == ["0", "1", "2", "3", "4", "5"]
    assert "nan" in table[4] and "cli-worker:0" in table[6]
    by_value = ok("study", "trials", "cli", "--sort", "value", "--state", "complete", env=env)
    assert [line.split()[2] for line in by_value.splitlines()[1:]] == ["0.1", "0.2", "0.3"]
    args = ("--sort", "-value", "--state", "complete", "--json")
    worst = json.loads(ok("study", "trials", "cli", *args, env=env))
    assert [t["value"] for t in worst] == [0.3, 0.2, 0.1]
    assert len(json.loads(ok("study", "trials", "cli", "--limit", "2", "--json", env=env))) == 2


def test_best_export_and_enqueue(
    server: ServerProcess, study: dict[str, Any], tmp_path: Path
) -> None:
    env = env_of(server)
    best = ok("study", "best", "cli", env=env)
    assert best.startswith("trial #1 of cli: value 0.1\n") and "  lr " in best
    assert json.loads(ok("study", "best", "cli", "--json", env=env))["best"]["number"] == 1
    rows = list(csv.DictReader(io.StringIO(ok("study", "export", "cli", env=env))))
    assert [r["state"] for r in rows] == ["complete"] * 3 + ["failed", "pruned", "running"]
    out = tmp_path / "cli.jsonl"
    ok("study", "export", "cli", "--format", "jsonl", "-o", str(out), env=env)
    assert [json.loads(line)["number"] for line in out.read_text().splitlines()] == list(range(6))
    queued = ok("study", "enqueue", "cli", "lr=1e-3", "n_layers=2", "batch_size=64", env=env)
    assert queued.startswith("queued trial #6 of cli")
    (waiting,) = json.loads(ok("study", "trials", "cli", "--state", "waiting", "--json", env=env))
    with HPOClient(server.url, token=server.token) as client:
        lease = client.ask(study["id"], "cli-worker:1")
    assert isinstance(lease, Lease) and lease.number == waiting["number"] == 6
    assert lease.params == {"lr": 0.001, "n_layers": 2, "batch_size": 64}
    bad = hpo("study", "enqueue", "cli", "lr", env=env)
    assert bad.returncode == 1 and "NAME=VALUE" in bad.stderr


def test_pause_resume_stop_delete(server: ServerProcess, study: dict[str, Any]) -> None:
    env = env_of(server)
    assert ok("study", "pause", "cli", env=env) == "study cli: running -> paused\n"
    assert json.loads(ok("study", "show", "cli", "--json", env=env))["study"]["state"] == "paused"
    assert ok("study", "resume", "cli", env=env) == "study cli: paused -> running\n"
    assert ok("study", "stop", "cli", env=env) == "study cli: running -> stopped\n"
    unasked = hpo("study", "delete", "cli", env=env)  # no terminal to ask at
    assert unasked.returncode == 1 and "--yes" in unasked.stderr
    assert ok("study", "delete", "cli", "--yes", env=env).startswith("deleted study cli")
    gone = hpo("study", "show", "cli", env=env)
    assert gone.returncode == 1 and gone.stderr.startswith("error: ")
    assert "study list" in gone.stderr and len(gone.stderr.splitlines()) == 2


def test_worker_list(server: ServerProcess, study: dict[str, Any]) -> None:
    env = env_of(server)
    table = ok("worker", "list", env=env).splitlines()
    assert table[0].split()[:2] == ["WORKER", "TASKS"]
    (row,) = [line for line in table if line.startswith("cli-worker:0")]
    assert f"{study['id']}#5" in row  # the running trial it holds
    (worker,) = json.loads(ok("worker", "list", "--json", env=env))
    assert worker["worker_id"] == "cli-worker:0" and len(worker["trials"]) == 1


def test_show_says_why_a_study_sits_still(
    server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    """A task no worker announced is a warning; a study the server paused says why."""
    env = env_of(server)
    typo = study_body("typo", task={"name": "mlp_clasifier", "dataset": "digits", "epochs": 2})
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(typo))
    created = hpo("study", "create", str(tmp_path / "typo.yaml"), env=env)
    assert created.returncode == 0, created.stderr
    assert "'mlp_clasifier'" in ok("study", "show", "typo", env=env)
    (tmp_path / "doomed.yaml").write_text(yaml.safe_dump(study_body("doomed", task=None)))
    assert hpo("study", "create", str(tmp_path / "doomed.yaml"), env=env).returncode == 0
    with HPOClient(server.url, token=server.token) as client:
        doomed = client.get_study("doomed")
        for _ in range(5):
            lease = client.ask(doomed["id"], "cli-worker:1")
            assert isinstance(lease, Lease)
            client.complete(lease.trial_id, lease.token, state="failed", reason="bad_params")
    text = ok("study", "show", "doomed", env=env)
    assert "  paused\n" in text.splitlines(keepends=True)[0]
    assert "why           paused by the server: its first 5 trials all failed" in text
