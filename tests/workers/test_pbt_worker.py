"""Population-based training with a real worker process and real PyTorch training: a member
that gets to a decision step first pauses for the one behind; the one behind, in the bottom, is
stopped, and a child resumes the checkpoint of the top member with its own learning rate, as a
new trial with its lineage, while the paused member resumes as the same trial."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess
from tests.workers.conftest import StartWorker, create_study, get, trials_of, wait_for

pytestmark = pytest.mark.slow

GOOD_LR, AWFUL_LR = 1e-2, 1e-6
EPOCHS = 3  # one decision, at step 1


def _enqueue(server: ServerProcess, study_id: int, lr: float) -> None:
    params = {"lr": lr, "n_layers": 1, "hidden_size": 32, "batch_size": 64}
    response = httpx.post(
        f"{server.url}/api/v1/studies/{study_id}/trials/enqueue",
        json={"params": params},
        headers=server.headers,
    )
    assert response.status_code == 201, response.text


def _done(server: ServerProcess, study_id: int) -> dict[str, Any] | None:
    study = get(server, f"/studies/{study_id}")
    return study if study["state"] == "completed" else None


def _curve(trial: dict[str, Any]) -> dict[int, float]:
    return {v["step"]: v["value"] for v in trial["intermediate_values"] or []}


def _api(server: ServerProcess, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1{path}", json=body, headers=server.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _checkpoint_step(server: ServerProcess, trial_id: int) -> int | None:
    response = httpx.get(
        f"{server.url}/api/v1/trials/{trial_id}/checkpoint/meta", headers=server.headers
    )
    return int(response.json()["step"]) if response.status_code == 200 else None


def test_a_child_resumes_its_parents_weights_with_its_own_learning_rate(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    # population 2, quantile 0.5: at step 1 the worse of the two is the bottom.
    body: dict[str, Any] = {
        "name": "pbt-workers",
        "search_space": {
            "lr": {"type": "float", "low": 1e-7, "high": 1.0, "log": True},
            "n_layers": {"type": "int", "low": 1, "high": 2},
            "hidden_size": {"type": "categorical", "choices": [32, 64]},
            "batch_size": {"type": "categorical", "choices": [64]},
        },
        "sampler": {"name": "random", "options": {"seed": 3}},
        "scheduler": {
            "name": "pbt",
            "options": {
                "population": 2,
                "interval": 2,
                "quantile": 0.5,
                "mutable": ["lr"],
                "perturb": [0.5, 2.0],
                "resample_probability": 0.0,
                "seed": 1,
            },
        },
        "task": {"name": "mlp_classifier", "dataset": "digits", "epochs": EPOCHS},
        "lease_seconds": 60,
    }
    sid = create_study(server, body)["id"]
    _enqueue(server, sid, AWFUL_LR)  # trial 0: the test plays it, with losses of its own
    _enqueue(server, sid, GOOD_LR)  # trial 1: a real worker trains it
    bottom = _api(server, f"/studies/{sid}/trials", {"worker_id": "test"})
    assert bottom["number"] == 0
    report = f"/trials/{bottom['id']}/report"
    token = bottom["lease"]["token"]
    assert not _api(server, report, {"lease_token": token, "step": 0, "value": 9.0})["should_prune"]

    worker = start_worker("--slots", "2", "--exit-when-idle", "5")
    # Trial 1 reaches step 1 while trial 0 is behind: it checkpoints, pauses and is handed back.
    top = wait_for(
        lambda: next((t for t in trials_of(server, sid) if t["state"] == "paused"), None),
        60,
        "trial 1 to pause at step 1",
    )
    assert top["number"] == 1 and _checkpoint_step(server, top["id"]) == 1
    # Trial 0 gets there last and is decided on at once: worse than trial 1, it is stopped and
    # replaced by a child of trial 1, from trial 1's checkpoint.
    assert _api(server, report, {"lease_token": token, "step": 1, "value": 9.0})["should_prune"]
    _api(server, f"/trials/{bottom['id']}/complete", {"lease_token": token, "state": "pruned"})

    done = wait_for(lambda: _done(server, sid), 240, "the study to complete")
    assert worker.wait(60) == 0
    trials = {t["number"]: t for t in trials_of(server, sid)}
    assert len(trials) == 3
    child, parent = trials[2], trials[1]
    assert (child["parent_trial_id"], child["replaced_trial_id"]) == (parent["id"], bottom["id"])
    start = child["started_from_step"]
    assert 2 <= start < EPOCHS
    # Its own learning rate, its parent's other parameters.
    assert child["params"]["lr"] / parent["params"]["lr"] in (
        pytest.approx(0.5),
        pytest.approx(2.0),
    )
    assert {k: v for k, v in child["params"].items() if k != "lr"} == {
        k: v for k, v in parent["params"].items() if k != "lr"
    }
    # It ran from its start to the last epoch on from its parent's weights: its first loss is
    # well below a fresh model's after one epoch (its parent's step 0).
    curve, parent_curve = _curve(child), _curve(parent)
    assert sorted(curve) == list(range(start, EPOCHS))
    assert child["state"] == "complete"
    assert curve[start] < 0.7 * parent_curve[0]
    assert child["user_attrs"]["resumed_from_epoch"] == start
    assert child["value"] == pytest.approx(min(curve.values()))  # its own epochs only
    assert f"trial {child['id']}: resuming from the checkpoint of step {start - 1}" in worker.text()
    # The parent was resumed (the same trial, attempt 1) and trained its last step too.
    assert parent["state"] == "complete" and sorted(parent_curve) == list(range(EPOCHS))
    assert (parent["attempt"], parent["user_attrs"]["resumed_from_epoch"]) == (1, 2)
    assert done["trial_counts"]["complete"] == 2 and done["trial_counts"]["pruned"] == 1
    assert all(math.isfinite(v) for v in curve.values())
