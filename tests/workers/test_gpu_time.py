"""Workers say what device a trial runs on; only a cuda device's wall time is GPU time.

A real worker process runs on this machine's CPU (its slot claims with its device, ``cpu``).
This machine has no GPU, so the cuda side is a stand-in: the dispatcher of a ``--device cuda:0``
worker claims for its slots (its claims say ``cuda``; nothing touches a GPU), and the test
finishes the leased trials itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine, text

from service.auth.service import issue_token
from tests.support import ScratchDatabase, ServerProcess
from tests.workers.conftest import StartWorker, create_study, get, wait_for
from tests.workers.test_dispatch import Slots
from tests.workers.test_worker import sleep_study
from workers.client import HPOClient, Lease
from workers.settings import WorkerSettings


def _attempts(engine: Engine, study_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT device, gpus, started_at, ended_at FROM hpo_trial_attempts"
                " WHERE study_id = :s ORDER BY attempt_id"
            ),
            {"s": study_id},
        ).mappings()
        return [dict(r) for r in rows]


def _completed(server: ServerProcess, study_id: int) -> dict[str, Any] | None:
    study = get(server, f"/studies/{study_id}")
    return study if study["state"] == "completed" else None


def test_a_cpu_worker_says_cpu_and_uses_no_gpu_time(
    server: ServerProcess, start_worker: StartWorker, engine: Engine
) -> None:
    study = create_study(server, sleep_study("gpu-cpu-worker", steps=2, sleep_s=0.1, max_trials=2))
    start_worker(test_tasks=True)
    done = wait_for(lambda: _completed(server, study["id"]), 120, "the study to complete")
    assert done["gpu_hours_used"] == 0.0
    attempts = _attempts(engine, study["id"])
    assert [(a["device"], a["gpus"]) for a in attempts] == [("cpu", 0), ("cpu", 0)]
    assert all(a["ended_at"] > a["started_at"] for a in attempts)  # wall time recorded


def _settings(server: ServerProcess, token: str, tmp_path: Path, **extra: Any) -> WorkerSettings:
    return WorkerSettings(
        api_url=server.url,
        api_token=SecretStr(token),
        worker_name="gpu-node",
        poll_wait_s=1.0,
        spool_dir=str(tmp_path / "spool"),
        **extra,
    )


def test_a_cuda_worker_counts_one_gpu_per_trial(
    server: ServerProcess, db: ScratchDatabase, engine: Engine, tmp_path: Path
) -> None:
    study = create_study(server, sleep_study("gpu-cuda-worker", steps=1, sleep_s=0, max_trials=3))
    token = issue_token(db.url, "tests", "worker")
    client = HPOClient(server.url, token=token)
    leases: list[Lease] = []
    slots = Slots(_settings(server, token, tmp_path, device="cuda:0"), 3)
    for index in range(3):
        slots.wants.put(index)
    slots.start()
    try:
        for index in range(3):
            item = slots.inboxes[index].get(timeout=30)
            assert isinstance(item, Lease)
            leases.append(item)
    finally:
        slots.close()
    time.sleep(0.2)
    for lease in leases:
        client.complete(lease.trial_id, lease.token, values=[1.0])

    attempts = _attempts(engine, study["id"])
    # The dispatcher says the kind of device all its slots share: one GPU per trial.
    assert [(a["device"], a["gpus"]) for a in attempts] == [("cuda", 1)] * 3
    expected = sum((a["ended_at"] - a["started_at"]).total_seconds() for a in attempts)
    assert expected >= 3 * 0.2
    shown = get(server, f"/studies/{study['id']}")["gpu_hours_used"] * 3600
    assert abs(shown - expected) < 1e-6
    client.close()
