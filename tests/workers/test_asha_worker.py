"""Pause and promote with real worker processes: a trial the asha pruner pauses is handed back
by its worker, promoted later and resumed from its checkpoint on another worker, as the same
trial, without repeating a step."""

from __future__ import annotations

import re
import signal
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess
from tests.workers.conftest import StartWorker, create_study, get, trials_of, wait_for

pytestmark = pytest.mark.slow


def _enqueue(server: ServerProcess, study_id: int, x: float) -> None:
    response = httpx.post(
        f"{server.url}/api/v1/studies/{study_id}/trials/enqueue",
        json={"params": {"x": x}},
        headers=server.headers,
    )
    assert response.status_code == 201, response.text


def _reported_steps(log: str, trial_id: int) -> list[int]:
    return [int(s) for s in re.findall(rf"trial {trial_id}: reporting step (\d+)", log)]


def _study_done(server: ServerProcess, study_id: int) -> dict[str, Any] | None:
    study = get(server, f"/studies/{study_id}")
    return study if study["state"] == "completed" else None


def test_a_paused_trial_is_promoted_and_resumed_on_another_worker(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    # One rung, at 2 units (step 1); max_resource 4 = the task's 4 steps; top floor(n/2).
    body: dict[str, Any] = {
        "name": "asha-workers",
        "search_space": {"x": {"type": "float", "low": -1.0, "high": 1.0}},
        "sampler": {"name": "random", "options": {"seed": 3}},
        "pruner": {
            "name": "asha",
            "options": {"min_resource": 2, "reduction_factor": 2, "max_resource": 4},
        },
        "task": {"name": "test_sleep", "steps": 4, "sleep_s": 1.0},
        "max_trials": 2,
        "lease_seconds": 30,
    }
    study = create_study(server, body)
    sid = study["id"]
    _enqueue(server, sid, 0.1)  # trial 0: loss 0.01
    _enqueue(server, sid, 0.9)  # trial 1: loss 0.81

    first = start_worker("--name", "a", test_tasks=True)
    wait_for(
        lambda: any(len(t["intermediate_values"] or []) >= 1 for t in trials_of(server, sid)),
        60,
        "trial 0's first step",
    )
    # SIGTERM during step 1: the report of step 1 pauses the trial (alone at its rung), the
    # task checkpoints it, the worker hands the lease back and exits.
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    t0 = next(t for t in trials_of(server, sid) if t["number"] == 0)
    assert (t0["state"], t0["attempt"]) == ("paused", 1)
    assert [v["step"] for v in t0["intermediate_values"]] == [0, 1]
    meta = httpx.get(
        f"{server.url}/api/v1/trials/{t0['id']}/checkpoint/meta", headers=server.headers
    )
    assert meta.status_code == 200 and meta.json()["step"] == 1

    # Trial 1 (worse) pauses at the rung, which puts trial 0 in its top: promoted to b.
    second = start_worker("--name", "b", test_tasks=True)
    done = wait_for(lambda: _study_done(server, sid), 90, "the study to complete")
    assert done["trial_counts"]["complete"] == 1 and done["trial_counts"]["pruned"] == 1
    assert done["n_trials_started"] == 2
    final = {t["number"]: t for t in trials_of(server, sid)}
    resumed = final[0]
    assert (resumed["id"], resumed["state"], resumed["attempt"]) == (t0["id"], "complete", 1)
    assert resumed["worker_id"].startswith("b")
    assert resumed["user_attrs"]["resumed_from_step"] == 2
    assert [v["step"] for v in resumed["intermediate_values"]] == [0, 1, 2, 3]
    assert final[1]["state"] == "pruned"  # paused, never promoted: finished at the budget's end

    # No step of trial 0 ran twice: a ran steps 0 and 1, b ran 2 and 3.
    a_log, b_log = first.text(), second.text()
    assert _reported_steps(a_log, t0["id"]) == [0, 1]
    assert _reported_steps(b_log, t0["id"]) == [2, 3]
    assert f"trial {t0['id']}: paused at step 1" in a_log
    both = Counter(_reported_steps(a_log, t0["id"]) + _reported_steps(b_log, t0["id"]))
    assert all(n == 1 for n in both.values())
