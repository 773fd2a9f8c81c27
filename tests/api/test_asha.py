"""The asha pruner (pause and promote) against a hand-computed example, over the API.

reduction_factor 3, min_resource 1, max_resource 9, one bracket: the rungs are at 1 and 3
units, decided on the reports of steps 0 and 2; a trial in the top floor(n/3) of its rung
continues, any other pauses, and a paused trial in the top of its rung now is promoted.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.trial import TrialState

from tests.api.helpers import API, ask, assert_error, complete, create_study, report
from tests.support import ScratchDatabase

ASHA = {
    "name": "asha",
    "options": {"min_resource": 1, "reduction_factor": 3, "max_resource": 9, "brackets": 1},
}
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def _study(client: TestClient, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "search_space": SPACE,
        "sampler": {"name": "random", "options": {"seed": 1}},
        "pruner": ASHA,
        "task": None,
        "max_trials": 7,
        "max_parallel": None,
        **overrides,
    }
    return create_study(client, **body)


def _release(client: TestClient, trial: dict[str, Any]) -> None:
    response = client.post(
        f"{API}/trials/{trial['id']}/release", json={"lease_token": trial["lease"]["token"]}
    )
    assert response.status_code == 204, response.text


def _steps(client: TestClient, trial: dict[str, Any], values: dict[int, float]) -> list[bool]:
    """Report each step's value; the should_pause answers, in order."""
    answers = [report(client, trial, step, value) for step, value in values.items()]
    assert not any(a["should_prune"] for a in answers)
    return [bool(a["should_pause"]) for a in answers]


def _state(client: TestClient, trial_id: int) -> str:
    return str(client.get(f"{API}/trials/{trial_id}").json()["state"])


def _optuna_states(db: ScratchDatabase, study: dict[str, Any]) -> dict[int, TrialState]:
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    return {t.number: t.state for t in loaded.trials}


def test_pause_and_promote_follow_the_hand_computed_example(
    client: TestClient, db: ScratchDatabase
) -> None:
    study = _study(client)
    sid = study["id"]
    t0, t1, t2 = ask(client, sid), ask(client, sid), ask(client, sid)
    assert [t["number"] for t in (t0, t1, t2)] == [0, 1, 2]
    # Rung 0 (step 0): n=1 and n=2 give a top of 0 -> pause; n=3 -> the best one continues.
    assert _steps(client, t0, {0: 0.5}) == [True]
    _release(client, t0)
    assert _steps(client, t1, {0: 0.4}) == [True]
    _release(client, t1)
    assert _steps(client, t2, {0: 0.3, 1: 0.3, 2: 0.3}) == [False, False, True]  # rung 1: n=1
    _release(client, t2)
    paused = client.get(f"{API}/trials/{t0['id']}").json()
    assert (paused["state"], paused["attempt"], paused["lease_expires_at"]) == ("paused", 1, None)
    assert paused["intermediate_values"] == [{"step": 0, "value": 0.5}]
    curves = client.get(f"{API}/studies/{sid}/intermediate").json()["items"]
    assert {c["number"]: c["state"] for c in curves}[0] == "paused"  # the dashboard's curves
    states = _optuna_states(db, study)
    assert states == {0: TrialState.WAITING, 1: TrialState.WAITING, 2: TrialState.WAITING}

    # Nothing is in the top of its rung: new trials are sampled.
    t3 = ask(client, sid)
    assert (t3["number"], t3["resume_from_step"]) == (3, None)
    assert _steps(client, t3, {0: 0.45}) == [True]  # n=4, top 1 = trial 2
    _release(client, t3)
    t4 = ask(client, sid)
    assert _steps(client, t4, {0: 0.42}) == [True]  # n=5, top 1
    _release(client, t4)
    t5 = ask(client, sid)
    assert _steps(client, t5, {0: 0.9}) == [True]  # n=6, top 2 = trials 2 and 1
    _release(client, t5)

    # Trial 1 (0.4) is in the top 2 of rung 0 now: promoted before any new sample.
    promoted = ask(client, sid)
    assert (promoted["id"], promoted["number"], promoted["attempt"]) == (t1["id"], 1, 1)
    assert promoted["params"] == t1["params"] and promoted["resume_from_step"] == 1
    assert promoted["lease"]["token"] != t1["lease"]["token"]
    assert _state(client, t1["id"]) == "running"
    assert _steps(client, promoted, {1: 0.2, 2: 0.2}) == [False, True]  # rung 1: n=2, top 0
    _release(client, promoted)

    # The last trial of the budget: best at rung 0, third at rung 1.
    t6 = ask(client, sid)
    assert t6["number"] == 6
    assert _steps(client, t6, {0: 0.1, 1: 0.25, 2: 0.25}) == [False, False, True]
    _release(client, t6)
    counts = client.get(f"{API}/studies/{sid}").json()["trial_counts"]
    assert counts == {"waiting": 0, "running": 0, "complete": 0, "pruned": 0, "failed": 0,
                      "paused": 7}  # fmt: skip
    listed = client.get(f"{API}/studies/{sid}/trials", params={"state": "paused"}).json()
    assert [t["number"] for t in listed["items"]] == [0, 1, 2, 3, 4, 5, 6]
    assert (
        client.get(f"{API}/studies/{sid}/trials", params={"state": "waiting"}).json()["items"] == []
    )
    assert set(_optuna_states(db, study).values()) == {TrialState.WAITING}

    # Rung 1 = {1: 0.2, 6: 0.25, 2: 0.3}: trial 1 is its top 1, promoted again (same trial).
    again = ask(client, sid)
    assert (again["id"], again["attempt"], again["resume_from_step"]) == (t1["id"], 1, 3)
    assert _steps(client, again, {s: 0.15 for s in range(3, 9)}) == [False] * 6
    # Nothing else can be promoted; nothing is leased; the budget is spent.
    assert client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"}).status_code == 204
    done = complete(client, again, 0.15)
    assert done["attempt"] == 1 and [v["step"] for v in done["intermediate_values"]] == list(
        range(9)
    )

    # The budget end: every paused trial is finished as pruned, and the study completes.
    study_now = client.get(f"{API}/studies/{sid}").json()
    assert study_now["state"] == "completed"
    assert study_now["trial_counts"] == {"waiting": 0, "running": 0, "complete": 1,
                                         "pruned": 6, "failed": 0, "paused": 0}  # fmt: skip
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    by_number = {t.number: t for t in loaded.trials}
    assert by_number[1].state == TrialState.COMPLETE and by_number[1].value == 0.15
    assert all(by_number[n].state == TrialState.PRUNED for n in (0, 2, 3, 4, 5, 6))
    assert by_number[2].value == 0.3 and by_number[6].value == 0.25  # their last values


def test_a_paused_trial_whose_worker_died_is_still_promotable(client: TestClient) -> None:
    sid = _study(client, lease_seconds=1, max_retries=0)["id"]
    dead = ask(client, sid, worker="dies")
    assert _steps(client, dead, {0: 0.1}) == [True]  # n=1: paused; the worker never releases
    deadline = time.monotonic() + 10
    while _state(client, dead["id"]) != "paused":
        assert time.monotonic() < deadline, "the expired lease never paused the trial"
        time.sleep(0.1)
    shown = client.get(f"{API}/trials/{dead['id']}").json()
    assert (shown["attempt"], shown["fail_reason"]) == (1, None)  # no retry used (max_retries 0)
    for value in (0.5, 0.6):
        other = ask(client, sid)
        assert other["id"] != dead["id"]
        assert _steps(client, other, {0: value}) == [True]
        _release(client, other)
    promoted = ask(client, sid, worker="survivor")  # n=3, top 1 = the dead worker's trial
    assert (promoted["id"], promoted["attempt"], promoted["resume_from_step"]) == (
        dead["id"],
        1,
        1,
    )
    late = client.post(
        f"{API}/trials/{dead['id']}/report",
        json={"lease_token": dead["lease"]["token"], "step": 1, "value": 0.0},
    )
    assert_error(late, 409, "lease_lost")


def test_other_pruners_never_pause(client: TestClient) -> None:
    sid = _study(client, pruner={"name": "median", "options": {}})["id"]
    trial = ask(client, sid)
    assert report(client, trial, 0, 0.5)["should_pause"] is False
    _release(client, trial)
    assert _state(client, trial["id"]) == "waiting"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"reduction_factor": 1}, "reduction_factor"),
        ({"min_resource": 0}, "min_resource"),
        ({"min_resource": 9, "max_resource": 9}, "every bracket needs a rung"),
        ({"min_resource": 1, "max_resource": 9, "brackets": 3}, "every bracket needs a rung"),
        ({"brackets": 0}, "brackets"),
        ({"grace_period": 1}, "grace_period"),
    ],
)
def test_asha_options_are_checked(
    client: TestClient, options: dict[str, Any], problem: str
) -> None:
    body = {
        "search_space": SPACE,
        "pruner": {"name": "asha", "options": options},
        "name": "bad-asha",
    }
    response = client.post(f"{API}/studies", json={**_body(), **body})
    assert response.status_code == 422, response.text
    assert problem in response.text


def test_asha_needs_a_single_objective(client: TestClient) -> None:
    response = client.post(
        f"{API}/studies",
        json={**_body(), "directions": ["minimize", "maximize"], "pruner": ASHA},
    )
    assert response.status_code == 422, response.text
    assert "single-objective" in response.text


def _body() -> dict[str, Any]:
    from tests.api.helpers import study_body

    return study_body(name="asha-body", search_space=SPACE, task=None, max_parallel=None)


def test_a_trial_that_finishes_instead_of_pausing_is_never_promoted(client: TestClient) -> None:
    sid = _study(client, max_trials=3)["id"]
    ignores = ask(client, sid)
    assert _steps(client, ignores, {0: 0.1}) == [True]  # n=1: told to pause...
    done = complete(client, ignores, 0.1)  # ...but the client completes it anyway
    assert done["state"] == "complete"
    for value in (0.5, 0.6):  # trial 0 is the top of rung 0 now: it would be promotable
        other = ask(client, sid)
        assert _steps(client, other, {0: value}) == [True]
        _release(client, other)
    assert client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"}).status_code == 204
    assert _state(client, ignores["id"]) == "complete"


def test_paused_trials_count_as_ready_for_autoscalers(client: TestClient) -> None:
    """hpo_trials_ready counts paused trials on top of the budget: with max_trials all
    started, two trials paused and one running, a worker autoscaler still sees work (the
    running trial's report may make a paused one promotable)."""
    sid = _study(client, max_trials=3, task={"name": "asha-task"})["id"]
    t0, t1, _ = ask(client, sid), ask(client, sid), ask(client, sid)
    for trial in (t0, t1):  # n = 1, then 2 at rung 0: both pause
        assert _steps(client, trial, {0: 0.5}) == [True]
        _release(client, trial)
    text = client.get("/metrics").text
    ready = [line for line in text.splitlines() if line.startswith("hpo_trials_ready{")]
    assert 'hpo_trials_ready{task="asha-task"} 2.0' in ready, ready
