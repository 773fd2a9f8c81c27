"""``max_gpu_hours`` across two real server processes: clients that declare ``cuda:0`` (a
stand-in for GPU workers; this runs on a CPU machine) ask, report and complete on both
processes at once. No attempt is handed out once the GPU time used reaches the budget, checked
exactly from the attempts' timestamps in PostgreSQL, and the study completes."""

from __future__ import annotations

import itertools
import math
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.api.helpers import study_body
from tests.support import ServerProcess

pytestmark = pytest.mark.slow

BUDGET_S = 3.0  # GPU-seconds
STEPS = 4
STEP_S = 0.05


def _run_trial(http: httpx.Client, urls: Any, trial: dict[str, Any], errors: list[str]) -> None:
    token = trial["lease"]["token"]
    for step in range(STEPS):
        time.sleep(STEP_S)
        answer = http.post(
            f"{next(urls)}/api/v1/trials/{trial['id']}/report",
            json={"lease_token": token, "step": step, "value": trial["params"]["x"] + step},
        )
        answer.raise_for_status()
        if answer.json()["should_stop"]:  # the budget is used: hand the trial back
            http.post(
                f"{next(urls)}/api/v1/trials/{trial['id']}/release", json={"lease_token": token}
            ).raise_for_status()
            return
    done = http.post(
        f"{next(urls)}/api/v1/trials/{trial['id']}/complete",
        json={"lease_token": token, "values": [trial["params"]["x"]]},
    )
    if done.status_code != 200:
        errors.append(done.text)


def _client(
    urls_in: list[str], auth: dict[str, str], sid: int, name: str, errors: list[str]
) -> None:
    urls = itertools.cycle(urls_in)  # alternate between the two processes
    with httpx.Client(timeout=30, headers=auth) as http:
        for _ in range(500):
            response = http.post(
                f"{next(urls)}/api/v1/studies/{sid}/trials",
                json={"worker_id": name, "device": "cuda:0"},
            )
            if response.status_code == 204:
                if response.headers.get("HPO-No-Trial-Reason") == "budget_spent":
                    return
                continue
            if response.status_code != 200:
                errors.append(response.text)
                return
            _run_trial(http, urls, response.json(), errors)


def _used_before(attempts: list[dict[str, Any]], index: int) -> float:
    """The GPU-seconds the attempts leased before ``attempts[index]`` (attempt ids follow the
    ask lock's order) had used when it started."""
    start = attempts[index]["started_at"]
    return math.fsum(
        a["gpus"] * max(0.0, (min(a["ended_at"], start) - a["started_at"]).total_seconds())
        for a in attempts[:index]
    )


def test_max_gpu_hours_is_exact_across_two_processes(
    two_servers: list[ServerProcess], engine: Engine
) -> None:
    urls = [s.url for s in two_servers]
    auth = two_servers[0].headers
    body = study_body(
        "gpu-two-processes",
        search_space={"x": {"type": "float", "low": 0.0, "high": 1.0}},
        sampler={"name": "random", "options": {"seed": 7}},
        pruner={"name": "none", "options": {}},
        task=None,
        max_trials=None,
        max_parallel=None,
        max_gpu_hours=BUDGET_S / 3600,
    )
    created = httpx.post(f"{urls[0]}/api/v1/studies", json=body, headers=auth)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    errors: list[str] = []
    threads = [
        threading.Thread(target=_client, args=(urls, auth, sid, f"c{i}", errors)) for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors

    with engine.connect() as conn:
        attempts = [
            dict(r)
            for r in conn.execute(
                text(
                    "SELECT gpus, started_at, ended_at FROM hpo_trial_attempts"
                    " WHERE study_id = :s ORDER BY attempt_id"
                ),
                {"s": sid},
            ).mappings()
        ]
    assert len(attempts) > 6 and all(a["ended_at"] is not None for a in attempts)
    assert all(a["gpus"] == 1 for a in attempts)
    for index in range(len(attempts)):  # each was handed out while the budget was not used
        assert _used_before(attempts, index) < BUDGET_S, index
    used = sum((a["ended_at"] - a["started_at"]).total_seconds() for a in attempts)
    assert used >= BUDGET_S

    study = httpx.get(f"{urls[1]}/api/v1/studies/{sid}", headers=auth).json()
    assert study["state"] == "completed", study
    assert abs(study["gpu_hours_used"] * 3600 - used) < 1e-6
    counts = study["trial_counts"]
    assert counts["running"] == counts["waiting"] == counts["paused"] == 0
    assert counts["pruned"] >= 1  # the trials stopped by the budget, at their last value
