"""``hpo slurm submit`` on a real single-node Slurm (Debian's slurm-wlm and munge, started by
the test): an array of two workers runs a study against a real server; ``scancel`` of one
worker mid-trial hands its trial back, and the other worker resumes it from its checkpoint.

The node has CPUs only: it stands in for a GPU node, so the job is submitted with
``--gpus-per-worker 0`` (no ``--gres``, the workers train on CPU). Everything else is what a
GPU cluster runs: the same script, ``--signal=B:TERM``, the worker ``exec``'d as the batch shell.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth.service import issue_token
from service.cli.slurm_script import parse_directives
from tests.deploy.slurm_cluster import SlurmCluster, missing
from tests.support import ScratchDatabase, ServerProcess, hpo
from tests.workers.conftest import create_study, get, trials_of, wait_for
from tests.workers.test_worker import sleep_study

pytestmark = pytest.mark.slow

STEPS = 10


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    started = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield started.start()
    finally:
        started.stop()
    assert not started.leftovers, f"processes outlived the cluster: {started.leftovers}"


@pytest.fixture(scope="module")
def server(test_db: ScratchDatabase) -> Iterator[ServerProcess]:
    """One server for the module (ids are never reused, so its caches stay right)."""
    with ServerProcess(test_db.url_string, token=test_db.token) as s:
        yield s


def _checkpointed(server: ServerProcess, study_id: int) -> tuple[dict[str, Any], int] | None:
    """A trial running on a Slurm worker with a checkpoint at step 1, 2 or 3 (so that more than
    half of its steps are still to run when it is cancelled), and that step."""
    for trial in trials_of(server, study_id):
        if trial["state"] != "running" or not str(trial["worker_id"]).startswith("slurm-"):
            continue
        meta = httpx.get(
            f"{server.url}/api/v1/trials/{trial['id']}/checkpoint/meta",
            headers=server.headers,
            timeout=10,
        )
        if meta.status_code == 200 and 1 <= meta.json()["step"] <= 3:
            return trial, int(meta.json()["step"])
    return None


def _array_task(worker_id: str) -> str:
    """``slurm-12_0:0`` (worker of array job 12, task 0, slot 0) → ``12_0``."""
    return worker_id.rsplit(":", 1)[0].removeprefix("slurm-")


def test_scancel_mid_trial_resumes_on_the_other_worker_and_every_trial_finishes(
    cluster: SlurmCluster, server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    study = create_study(server, sleep_study("slurm", steps=STEPS, sleep_s=0.5, max_trials=3))
    token = issue_token(db.url, "tests", "worker")
    worker_env = {
        **cluster.env,
        "HPO_ENABLE_TEST_TASKS": "1",
        "HPO_SPOOL_DIR": str(tmp_path / "spool"),
        "HPO_POLL_WAIT_S": "1",
        "HPO_API_RETRY_S": "20",
    }
    submitted = hpo(
        *("slurm", "submit", "--study", "slurm", "--workers", "2", "--api", server.url),
        *("--token", token, "--partition", cluster.partition, "--gpus-per-worker", "0"),
        *("--cpus-per-worker", "1", "--time", "10", "--signal-lead", "60"),
        env=worker_env,
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    assert job_id.isdigit(), submitted.stdout
    script = (tmp_path / "hpo-slurm-logs" / f"hpo-worker-{study['id']}.sbatch").read_text()
    assert token not in script  # it travels in sbatch's environment
    assert "--array=0-1" in script and "--gres" not in script

    trial, step = wait_for(
        lambda: _checkpointed(server, study["id"]), 90, "a checkpoint at step 1 on a worker"
    )
    victim = _array_task(trial["worker_id"])
    assert victim.startswith(f"{job_id}_")
    cluster.run("scancel", victim)  # SIGTERM to the worker, SIGKILL after KillWait

    done = wait_for(
        lambda: (s := get(server, f"/studies/{study['id']}"))["state"] == "completed" and s,
        120,
        "the study to complete",
    )
    assert done["trial_counts"]["complete"] == 3 and done["n_trials_started"] == 3
    final = next(t for t in trials_of(server, study["id"]) if t["id"] == trial["id"])
    assert final["attempt"] == 2 and final["worker_id"] != trial["worker_id"]
    assert _array_task(final["worker_id"]).startswith(f"{job_id}_")
    resumed = final["user_attrs"]["resumed_from_step"]
    assert resumed is not None and step + 1 <= resumed < STEPS  # from the checkpoint, not 0
    assert [v["step"] for v in final["intermediate_values"]] == list(range(STEPS))
    log = tmp_path / "hpo-slurm-logs" / f"hpo-worker-{victim}.out"
    assert "SIGTERM: finishing the current epoch" in log.read_text()  # the worker got it
    wait_for(lambda: victim not in cluster.jobs(), 60, "the cancelled worker to leave the queue")


def test_the_written_script_has_the_examples_directives(
    server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    """``--dry-run`` prints what submit writes; it sets the directives of the documented
    example (deploy/slurm/hpo-worker.sbatch), with this study's values."""
    study = create_study(server, sleep_study("dry", steps=1, sleep_s=0))
    printed = hpo(
        *("slurm", "submit", "--study", "dry", "--workers", "3", "--api", server.url),
        *("--token", server.token, "--partition", "gpu", "--time", "04:00:00", "--dry-run"),
        env={"PATH": "/nonexistent"},  # no sbatch needed to print
        cwd=tmp_path,
    )
    assert printed.returncode == 0, printed.stderr
    example = Path(__file__).parents[2] / "deploy" / "slurm" / "hpo-worker.sbatch"
    mine, theirs = parse_directives(printed.stdout), parse_directives(example.read_text())
    assert mine.keys() == theirs.keys()
    assert mine["--array"] == "0-2" and mine["--job-name"] == "hpo-dry"
    assert f"export HPO_STUDIES={study['id']}" in printed.stdout
    assert server.token not in printed.stdout
    assert not (tmp_path / "hpo-slurm-logs").exists()  # nothing written


def _job_state(cluster: SlurmCluster, job_id: str) -> str:
    """``JobState`` of a one-task array job, as slurmctld keeps it (MinJobAge) after it ends."""
    line = cluster.run("scontrol", "-o", "show", "job", job_id).stdout
    fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
    return fields["JobState"]


def test_the_time_limit_signal_checkpoints_and_hands_the_trial_back_before_the_limit(
    cluster: SlurmCluster, server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    """``--signal=B:TERM@50`` with a one-minute limit: the worker (the batch shell, by exec)
    gets SIGTERM ahead of the limit, checkpoints, hands the trial back and exits 0, so the job
    ends COMPLETED, not TIMEOUT (what a worker that never saw the signal would end as)."""
    study = create_study(server, sleep_study("limit", steps=400, sleep_s=0.25))
    env = {
        **cluster.env,
        "HPO_ENABLE_TEST_TASKS": "1",
        "HPO_SPOOL_DIR": str(tmp_path / "spool"),
        "HPO_API_TOKEN": issue_token(db.url, "tests", "worker"),
    }
    submitted = hpo(
        *("slurm", "submit", "--study", str(study["id"]), "--workers", "1", "--api", server.url),
        *("--gpus-per-worker", "0", "--cpus-per-worker", "1", "--time", "1"),
        *("--signal-lead", "50"),
        env=env,
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    ended = wait_for(
        lambda: (
            (s := _job_state(cluster, job_id)) not in ("PENDING", "RUNNING", "COMPLETING") and s
        ),
        150,
        "the worker's job to end",
    )
    log = (tmp_path / "hpo-slurm-logs" / f"hpo-worker-{job_id}_0.out").read_text()
    assert ended == "COMPLETED", log
    assert "SIGTERM: finishing the current epoch" in log
    trial = trials_of(server, study["id"])[0]
    assert trial["state"] == "waiting" and trial["attempt"] == 1
    reported = len(trial["intermediate_values"])
    assert 1 <= reported < 400
    meta = get(server, f"/trials/{trial['id']}/checkpoint/meta")
    assert meta["step"] == reported - 1  # the last epoch it ran is checkpointed


def _fake_sbatch(bin_dir: Path, body: str) -> dict[str, str]:
    """An ``sbatch`` on PATH that runs ``body`` (for what submit does without a cluster)."""
    bin_dir.mkdir()
    fake = bin_dir / "sbatch"
    fake.write_text(f"#!/bin/sh\n{body}\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin"}


def test_submit_runs_sbatch_parsable_with_the_token_in_its_environment_only(
    server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    seen = tmp_path / "seen"
    env = _fake_sbatch(
        tmp_path / "bin",
        f'echo "$@" > {seen}.args; printf %s "$HPO_API_TOKEN" > {seen}.token; echo "77;hpotest"',
    )
    study = create_study(server, sleep_study("fake", steps=1, sleep_s=0))
    submitted = hpo(
        *("slurm", "submit", "--study", "fake", "--workers", "2", "--api", server.url),
        *("--token", server.token, "--log-dir", str(tmp_path / "logs")),
        env=env,
        cwd=tmp_path,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout == "77\n"  # the job id alone, for scripts
    script = tmp_path / "logs" / f"hpo-worker-{study['id']}.sbatch"
    assert Path(f"{seen}.args").read_text().split() == ["--parsable", str(script)]
    assert Path(f"{seen}.token").read_text() == server.token
    assert server.token not in script.read_text()
    assert "scancel 77" in submitted.stderr


def test_a_refused_submission_says_what_sbatch_said_and_where_the_script_is(
    server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    said = "sbatch: error: Batch job submission failed: Invalid partition name specified"
    env = _fake_sbatch(tmp_path / "bin", f'echo "{said}" >&2; exit 1')
    create_study(server, sleep_study("refused", steps=1, sleep_s=0))
    submitted = hpo(
        *("slurm", "submit", "--study", "refused", "--workers", "1", "--api", server.url),
        *("--token", server.token, "--partition", "nope"),
        env=env,
        cwd=tmp_path,
    )
    assert submitted.returncode == 1
    lines = submitted.stderr.splitlines()
    assert f"error: sbatch refused the job: {said}" in lines
    assert any("hpo-slurm-logs/hpo-worker-" in line and "fix it" in line for line in lines)
