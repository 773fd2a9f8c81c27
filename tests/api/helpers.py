"""Request bodies and small helpers shared by the API tests."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

API = "/api/v1"


def study_body(name: str = "digits-mlp", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "directions": ["minimize"],
        "search_space": {
            "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
            "n_layers": {"type": "int", "low": 1, "high": 6},
            "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
        },
        "sampler": {"name": "tpe", "options": {}},
        "pruner": {"name": "median", "options": {"n_warmup_steps": 2}},
        "task": {"name": "mlp_classifier", "dataset": "digits", "epochs": 20},
        "max_trials": 50,
        "max_parallel": 8,
        "max_retries": 2,
        "lease_seconds": 120,
        "metadata": {"owner": "vision-team"},
    }
    body.update(overrides)
    return body


def create_study(client: TestClient, **overrides: Any) -> dict[str, Any]:
    response = client.post(f"{API}/studies", json=study_body(**overrides))
    assert response.status_code == 201, response.text
    return dict(response.json())


def ask(client: TestClient, study_id: int, worker: str = "w-1") -> dict[str, Any]:
    response = client.post(f"{API}/studies/{study_id}/trials", json={"worker_id": worker})
    assert response.status_code == 200, response.text
    return dict(response.json())


def complete(client: TestClient, trial: dict[str, Any], value: float) -> dict[str, Any]:
    response = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": trial["lease"]["token"], "values": [value]},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def report(client: TestClient, trial: dict[str, Any], step: int, value: float) -> dict[str, Any]:
    response = client.post(
        f"{API}/trials/{trial['id']}/report",
        json={"lease_token": trial["lease"]["token"], "step": step, "value": value},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)
