"""Study endpoints against a real PostgreSQL: creation, validation, listing, states, deletion."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import API, ask, assert_error, complete, create_study, study_body


def test_create_returns_the_whole_study(client: TestClient) -> None:
    body = study_body()
    response = client.post(f"{API}/studies", json=body)
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["name"] == "digits-mlp"
    assert study["state"] == "running"
    assert isinstance(study["id"], int)
    assert study["directions"] == ["minimize"]
    assert list(study["search_space"]) == ["lr", "n_layers", "batch_size"]  # order kept
    assert study["search_space"]["lr"]["log"] is True
    assert study["search_space"]["batch_size"]["choices"] == [16, 32, 64, 128, 256, 512]
    assert study["sampler"]["name"] == "tpe" and study["pruner"]["name"] == "median"
    assert study["task"] == body["task"]
    for field in ("max_trials", "max_parallel", "max_retries", "lease_seconds", "metadata"):
        assert study[field] == body[field]
    assert study["trial_counts"] == {
        "waiting": 0,
        "running": 0,
        "complete": 0,
        "pruned": 0,
        "failed": 0,
        "paused": 0,
    }
    assert study["created_at"].endswith("Z") or "+" in study["created_at"]


def test_defaults_fill_in_a_minimal_study(client: TestClient) -> None:
    response = client.post(
        f"{API}/studies",
        json={"name": "minimal", "search_space": {"x": {"type": "float", "low": 0, "high": 1}}},
    )
    assert response.status_code == 201, response.text
    study = response.json()
    assert study["directions"] == ["minimize"]
    assert study["sampler"]["name"] == "tpe" and study["pruner"]["name"] == "none"
    assert study["max_trials"] is None and study["task"] is None


def test_duplicate_name_is_409_and_creates_nothing(client: TestClient) -> None:
    create_study(client, name="twice")
    assert_error(client.post(f"{API}/studies", json=study_body("twice")), 409, "duplicate_name")
    names = [s["name"] for s in client.get(f"{API}/studies").json()["items"]]
    assert names == ["twice"]


@pytest.mark.parametrize(
    ("space", "fragment"),
    [
        ({"lr": {"type": "float", "low": 1.0, "high": 0.1}}, "low"),
        ({"lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}, "log"),
        ({"b": {"type": "categorical", "choices": []}}, "choices"),
        ({"n": {"type": "int", "low": 1.5, "high": 3}}, "low"),
        ({"n": {"type": "vector", "low": 1, "high": 3}}, "type"),
        ({}, "search_space"),
    ],
)
def test_invalid_search_space_is_422_with_a_precise_message(
    client: TestClient, space: dict[str, Any], fragment: str
) -> None:
    response = client.post(f"{API}/studies", json=study_body(search_space=space))
    error = assert_error(response, 422, response.json()["error"]["code"])
    assert error["code"] in {"validation_error", "invalid_spec"}
    text = (error["message"] + str(error["details"])).lower()
    assert fragment in text
    assert client.get(f"{API}/studies").json()["items"] == []


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"sampler": {"name": "annealing"}}, "sampler"),
        ({"sampler": {"name": "tpe", "options": {"n_startup": 3}}}, "n_startup"),
        ({"sampler": {"name": "tpe", "options": {"n_startup_trials": "many"}}}, "n_startup_trials"),
        ({"pruner": {"name": "median", "options": {"warmup": 1}}}, "warmup"),
        ({"pruner": {"name": "percentile", "options": {}}}, "percentile"),
        ({"directions": ["minimize", "maximize"], "sampler": {"name": "cmaes"}}, "objective"),
        ({"directions": ["minimize", "maximize"]}, "pruner"),
        ({"sampler": {"name": "grid"}}, "grid"),
        ({"directions": []}, "directions"),
        ({"max_trials": 0}, "max_trials"),
        ({"task": {"dataset": "digits"}}, "task"),
    ],
)
def test_invalid_sampler_pruner_or_budget_is_422(
    client: TestClient, overrides: dict[str, Any], fragment: str
) -> None:
    response = client.post(f"{API}/studies", json=study_body(**overrides))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert fragment in (error["message"] + str(error["details"])).lower(), error


def test_every_sampler_and_pruner_is_accepted_where_it_fits(client: TestClient) -> None:
    grid_space = {
        "n": {"type": "int", "low": 1, "high": 3},
        "c": {"type": "categorical", "choices": ["a", "b"]},
    }
    cases: list[dict[str, Any]] = [
        {"sampler": {"name": "random", "options": {"seed": 1}}},
        {"sampler": {"name": "cmaes"}},
        {"sampler": {"name": "qmc", "options": {"qmc_type": "halton"}}},
        {"sampler": {"name": "gp", "options": {"n_startup_trials": 3}}},
        {"sampler": {"name": "grid"}, "search_space": grid_space, "max_trials": None, "task": None},
        {"sampler": {"name": "nsga2"}, "directions": ["minimize", "maximize"], "pruner": {}},
        {"pruner": {"name": "percentile", "options": {"percentile": 25.0}}},
        {"pruner": {"name": "successive_halving"}},
        {"pruner": {"name": "hyperband", "options": {"max_resource": 20}}},
        {"pruner": {"name": "threshold", "options": {"upper": 2.0}}},
        {"pruner": {"name": "wilcoxon"}},
        {"pruner": {"name": "none"}},
    ]
    for i, case in enumerate(cases):
        response = client.post(f"{API}/studies", json=study_body(f"s{i}", **case))
        assert response.status_code == 201, (case, response.text)
    grid = client.get(f"{API}/studies", params={"limit": 100}).json()["items"][4]
    assert grid["max_trials"] == 6  # a grid's budget defaults to its size


def test_get_unknown_study_is_404(client: TestClient) -> None:
    assert_error(client.get(f"{API}/studies/987654"), 404, "not_found")
    assert_error(client.get(f"{API}/studies/by-name/nope"), 404, "not_found")


def test_get_by_name(client: TestClient) -> None:
    study = create_study(client, name="by-name")
    assert client.get(f"{API}/studies/by-name/by-name").json()["id"] == study["id"]


def test_list_is_paginated_and_filtered_by_state(client: TestClient) -> None:
    ids = [create_study(client, name=f"s{i}")["id"] for i in range(5)]
    client.patch(f"{API}/studies/{ids[1]}", json={"state": "paused"})
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"{API}/studies", params=params).json()
        assert len(page["items"]) <= 2
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    paused = client.get(f"{API}/studies", params={"state": "paused"}).json()["items"]
    assert [s["id"] for s in paused] == [ids[1]]
    running = client.get(f"{API}/studies", params={"state": "running"}).json()["items"]
    assert ids[1] not in [s["id"] for s in running] and len(running) == 4


def test_bad_list_parameters(client: TestClient) -> None:
    assert_error(client.get(f"{API}/studies", params={"cursor": "@@@"}), 400, "bad_cursor")
    assert_error(client.get(f"{API}/studies", params={"limit": 0}), 422, "validation_error")
    assert_error(client.get(f"{API}/studies", params={"state": "odd"}), 422, "validation_error")
    sid = create_study(client)["id"]
    studies_cursor = "eyJrIjoieCIsInYiOjF9"  # a well-formed cursor of another list
    foreign = client.get(f"{API}/studies/{sid}/trials", params={"cursor": studies_cursor})
    assert_error(foreign, 400, "bad_cursor")


def test_patch_changes_state_and_budget(client: TestClient) -> None:
    study = create_study(client, max_trials=1)
    sid = study["id"]
    paused = client.patch(f"{API}/studies/{sid}", json={"state": "paused"})
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    no_trial = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"})
    assert no_trial.status_code == 204
    assert no_trial.headers["HPO-No-Trial-Reason"] == "paused"
    client.patch(f"{API}/studies/{sid}", json={"state": "running"})
    trial = ask(client, sid)
    complete(client, trial, 0.5)
    assert client.get(f"{API}/studies/{sid}").json()["state"] == "completed"
    completed = client.get(f"{API}/studies", params={"state": "completed"}).json()["items"]
    assert [s["id"] for s in completed] == [sid]
    raised = client.patch(f"{API}/studies/{sid}", json={"max_trials": 2}).json()
    assert raised["state"] == "running" and raised["max_trials"] == 2
    assert ask(client, sid)["number"] == 1


def test_patch_validation(client: TestClient) -> None:
    sid = create_study(client)["id"]
    assert_error(
        client.patch(f"{API}/studies/{sid}", json={"state": "done"}), 422, "validation_error"
    )
    assert_error(client.patch(f"{API}/studies/{sid}", json={"colour": 1}), 422, "validation_error")
    assert_error(client.patch(f"{API}/studies/424242", json={"state": "paused"}), 404, "not_found")
    meta = client.patch(f"{API}/studies/{sid}", json={"metadata": {"owner": "nlp"}}).json()
    assert meta["metadata"] == {"owner": "nlp"}


def test_stopped_study_tells_workers_to_stop(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    client.patch(f"{API}/studies/{sid}", json={"state": "stopped"})
    beat = client.post(
        f"{API}/trials/{trial['id']}/heartbeat", json={"lease_token": trial["lease"]["token"]}
    )
    assert beat.status_code == 200 and beat.json()["should_stop"] is True
    assert client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"}).status_code == 204


def test_delete_removes_the_study_and_its_trials(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    complete(client, trial, 0.3)
    assert client.delete(f"{API}/studies/{sid}").status_code == 204
    assert_error(client.get(f"{API}/studies/{sid}"), 404, "not_found")
    assert_error(client.get(f"{API}/trials/{trial['id']}"), 404, "not_found")
    assert_error(client.delete(f"{API}/studies/{sid}"), 404, "not_found")
    # The name is free again.
    create_study(client)


def test_malformed_json_and_wrong_types(client: TestClient) -> None:
    malformed = client.post(
        f"{API}/studies", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(malformed, 400, "malformed_json")
    wrong = client.post(f"{API}/studies", json={"name": 5, "search_space": "all"})
    error = assert_error(wrong, 422, "validation_error")
    assert {tuple(d["loc"]) for d in error["details"]} >= {
        ("body", "name"),
        ("body", "search_space"),
    }
    assert_error(client.post(f"{API}/studies", json=[1, 2]), 422, "validation_error")
    unknown_field = client.post(f"{API}/studies", json=study_body(colour="red"))
    assert_error(unknown_field, 422, "validation_error")


def test_unknown_route_and_method_have_the_error_shape(client: TestClient) -> None:
    assert_error(client.get(f"{API}/nothing-here"), 404, "not_found")
    assert_error(client.put(f"{API}/studies"), 405, "method_not_allowed")
    assert_error(client.get(f"{API}/studies/not-a-number"), 422, "validation_error")


def test_health_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/studies",
        "/api/v1/studies/{study_id}",
        "/api/v1/studies/{study_id}/trials",
        "/api/v1/trials/claim",
        "/api/v1/studies/{study_id}/trials/enqueue",
        "/api/v1/trials/{trial_id}/heartbeat",
        "/api/v1/trials/{trial_id}/report",
        "/api/v1/trials/{trial_id}/complete",
        "/api/v1/trials/{trial_id}",
        "/api/v1/studies/{study_id}/best",
    ):
        assert path in paths, path


def test_idempotent_create(client: TestClient) -> None:
    headers = {"Idempotency-Key": "create-1"}
    first = client.post(f"{API}/studies", json=study_body("idem"), headers=headers)
    again = client.post(f"{API}/studies", json=study_body("idem"), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = client.post(f"{API}/studies", json=study_body("other"), headers=headers)
    assert_error(other, 409, "idempotency_key_reused")
