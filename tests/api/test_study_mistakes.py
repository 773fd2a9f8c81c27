"""Mistakes that used to sit silently: a task no worker has, a space the built-in task cannot run,
a study whose every trial fails for the same reason."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import API, ask, assert_error, complete, create_study, study_body


def _claim_as_worker_with(client: TestClient, tasks: list[str], study_ids: list[int]) -> None:
    """A new worker that announces ``tasks`` (and finds nothing to run in ``study_ids``)."""
    response = client.post(
        f"{API}/trials/claim",
        json={"worker_id": f"gpu-{'-'.join(tasks)}", "tasks": tasks, "study_ids": study_ids},
    )
    assert response.status_code in (200, 204), response.text


def test_a_task_no_worker_announced_is_a_warning_until_one_does(client: TestClient) -> None:
    typo = {"name": "mlp_clasifier", "dataset": "digits", "epochs": 5}
    created = create_study(client, name="typo", task=typo)
    assert len(created["warnings"]) == 1
    assert "'mlp_clasifier'" in created["warnings"][0]
    assert "tasks announced: none" in created["warnings"][0]

    parked = create_study(client, name="parked", task=None)  # no task: never a warning
    assert parked["warnings"] == []
    _claim_as_worker_with(client, ["mlp_classifier"], [parked["id"]])
    shown = client.get(f"{API}/studies/{created['id']}").json()
    assert "tasks announced: mlp_classifier" in shown["warnings"][0]
    listed = client.get(f"{API}/studies").json()["items"]
    assert [s["warnings"] != [] for s in listed] == [True, False]

    _claim_as_worker_with(client, ["mlp_clasifier"], [parked["id"]])
    assert client.get(f"{API}/studies/{created['id']}").json()["warnings"] == []


def test_a_started_or_paused_study_has_no_worker_warning(client: TestClient) -> None:
    study = create_study(client, name="odd-task", task={"name": "my_task"})
    assert study["warnings"] != []
    ask(client, study["id"])  # somebody runs it (a Python client asking this very study)
    assert client.get(f"{API}/studies/{study['id']}").json()["warnings"] == []
    other = create_study(client, name="odd-task-2", task={"name": "my_task"})
    client.patch(f"{API}/studies/{other['id']}", json={"state": "paused"})
    assert client.get(f"{API}/studies/{other['id']}").json()["warnings"] == []


_SPACE = study_body()["search_space"]


@pytest.mark.parametrize(
    ("overrides", "loc", "words"),
    [
        (
            {"search_space": {k: v for k, v in _SPACE.items() if k != "n_layers"}},
            ["search_space"],
            "needs the hyperparameter 'n_layers'",
        ),
        (
            {"search_space": {**_SPACE, "beta1": {"type": "float", "low": 0, "high": 1}}},
            ["search_space", "beta1"],
            "has no hyperparameter 'beta1'",
        ),
        (
            {"search_space": {**_SPACE, "lr": {"type": "float", "low": 0.0, "high": 0.1}}},
            ["search_space", "lr"],
            "refuses lr=0.0",
        ),
        (
            {
                "search_space": {
                    **_SPACE,
                    "optimizer": {"type": "categorical", "choices": ["adam", "lion"]},
                }
            },
            ["search_space", "optimizer"],
            "refuses optimizer='lion'",
        ),
        (
            {"task": {"name": "mlp_classifier", "dataset": "digit", "epochs": 5}},
            ["task", "dataset"],
            "unknown dataset 'digit'",
        ),
        ({"task": {"name": "mlp_classifier", "dataset": "digits"}}, ["task"], "'epochs'"),
    ],
)
def test_the_built_in_task_is_checked_at_creation(
    client: TestClient, overrides: dict[str, Any], loc: list[str], words: str
) -> None:
    response = client.post(f"{API}/studies", json=study_body("bad-fit", **overrides))
    error = assert_error(response, 422, "invalid_spec")
    assert words in error["message"]
    assert [d["loc"] for d in error["details"]] == [loc]
    assert client.get(f"{API}/studies").json()["items"] == []  # nothing stored


def test_the_built_in_task_accepts_every_hyperparameter_it_knows(client: TestClient) -> None:
    space = {
        **_SPACE,
        "hidden_size": {"type": "int", "low": 16, "high": 512, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "weight_decay": {"type": "float", "low": 0.0, "high": 0.1},
        "optimizer": {"type": "categorical", "choices": ["adam", "adamw", "sgd"]},
    }
    create_study(client, name="full-space", search_space=space)


def _fail(client: TestClient, trial: dict[str, Any], reason: str, message: str) -> None:
    response = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={
            "lease_token": trial["lease"]["token"],
            "state": "failed",
            "reason": reason,
            "user_attrs": {"fail_message": message},
        },
    )
    assert response.status_code == 200, response.text


def test_a_study_whose_first_trials_all_fail_alike_is_paused_with_the_reason(
    client: TestClient,
) -> None:
    study = create_study(client, name="doomed", task=None, max_trials=50)
    for i in range(5):
        state = client.get(f"{API}/studies/{study['id']}").json()
        assert (state["state"], state["state_reason"]) == ("running", None), i
        _fail(client, ask(client, study["id"]), "bad_params", f"'lr' is required ({i})")
    paused = client.get(f"{API}/studies/{study['id']}").json()
    assert paused["state"] == "paused"
    assert "first 5 trials all failed with reason 'bad_params'" in paused["state_reason"]
    assert "'lr' is required (4)" in paused["state_reason"]
    assert paused["trial_counts"]["failed"] == 5
    refused = client.post(f"{API}/studies/{study['id']}/trials", json={"worker_id": "w"})
    assert (refused.status_code, refused.headers["HPO-No-Trial-Reason"]) == (204, "paused")

    resumed = client.patch(f"{API}/studies/{study['id']}", json={"state": "running"}).json()
    assert (resumed["state"], resumed["state_reason"]) == ("running", None)
    _fail(client, ask(client, study["id"]), "bad_params", "still")  # the 6th: paused again
    assert client.get(f"{API}/studies/{study['id']}").json()["state"] == "paused"


def test_the_next_trial_of_a_failing_complete_is_refused_once_paused(client: TestClient) -> None:
    study = create_study(client, name="doomed-next", task=None)
    trial = ask(client, study["id"])
    for _ in range(5):
        response = client.post(
            f"{API}/trials/{trial['id']}/complete",
            json={
                "lease_token": trial["lease"]["token"],
                "state": "failed",
                "reason": "oom",
                "next": {"worker_id": "w-1"},
            },
        )
        body = response.json()
        if body["next_trial"] is None:
            break
        trial = body["next_trial"]
    assert body["no_trial_reason"] == "paused"
    assert client.get(f"{API}/studies/{study['id']}").json()["trial_counts"]["failed"] == 5


@pytest.mark.parametrize("first", ["complete", "other reason"])
def test_failures_after_a_success_or_for_several_reasons_do_not_pause(
    client: TestClient, first: str
) -> None:
    study = create_study(client, name=f"mixed-{first}", task=None)
    if first == "complete":
        complete(client, ask(client, study["id"]), 0.5)
    else:
        _fail(client, ask(client, study["id"]), "nan", "loss was NaN")
    for _ in range(6):
        _fail(client, ask(client, study["id"]), "oom", "CUDA out of memory")
    shown = client.get(f"{API}/studies/{study['id']}").json()
    assert (shown["state"], shown["state_reason"]) == ("running", None)
