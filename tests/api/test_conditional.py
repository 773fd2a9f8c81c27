"""Conditional search spaces end to end: a study is created, its trials hold exactly their
active parameters over the API, in Optuna's tables, in the exports and in what the dashboard
reads, and enqueued configurations must be consistent."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import API, ask, assert_error, complete, create_study, study_body
from tests.support import ScratchDatabase
from tests.unit.test_conditions import EXAMPLE
from workers.demo import demo_study

SPACE = EXAMPLE  # the example space
ALL = ["optimizer", "momentum", "n_layers", "width_l3"]


def conditional_study(client: TestClient, name: str = "conditional") -> dict[str, Any]:
    return create_study(
        client,
        name=name,
        search_space=SPACE,
        sampler={"name": "tpe", "options": {"seed": 7}},
        pruner={"name": "none", "options": {}},
        task=None,
        max_trials=None,
    )


def active(params: dict[str, Any]) -> set[str]:
    """The parameters a trial with these values must hold, by the example's rules."""
    names = {"optimizer", "n_layers"}
    if params["optimizer"] == "sgd":
        names.add("momentum")
    if params["n_layers"] >= 3:
        names.add("width_l3")
    return names


def with_when(name: str, when: object, **extra: Any) -> dict[str, Any]:
    return {**SPACE, **extra, name: {**SPACE[name], "when": when}}


@pytest.mark.parametrize(
    ("space", "loc"),
    [
        (with_when("momentum", {"momentum": ["sgd"]}), ["momentum", "when", "momentum"]),
        (with_when("momentum", {"optimiser": ["sgd"]}), ["momentum", "when", "optimiser"]),
        (
            with_when(
                "momentum",
                {"width_l3": {"min": 16}},
                width_l3={**SPACE["width_l3"], "when": {"momentum": {"max": 0.5}}},
            ),
            ["momentum", "when", "width_l3"],
        ),
        (with_when("momentum", {"optimizer": ["rmsprop"]}), ["momentum", "when", "optimizer", 0]),
        (with_when("width_l3", {"n_layers": {"min": 5}}), ["width_l3", "when", "n_layers"]),
        (with_when("width_l3", {"n_layers": {"max": 0}}), ["width_l3", "when", "n_layers"]),
        (with_when("width_l3", {"momentum": [0.5]}), ["width_l3", "when", "momentum"]),
        (
            with_when("width_l3", {"optimizer": ["adam"], "momentum": {"min": 0.1}}),
            ["width_l3", "when"],
        ),
    ],
    ids=[
        "itself",
        "unknown-parent",
        "cycle",
        "not-a-choice",
        "range-above",
        "range-below",
        "float-parent-with-a-list",
        "never-together",
    ],
)
def test_unsound_conditions_are_422_naming_the_parameter(
    client: TestClient, space: dict[str, Any], loc: list[str | int]
) -> None:
    body = study_body("bad-conditions", search_space=space, task=None)
    error = assert_error(client.post(f"{API}/studies", json=body), 422, "invalid_spec")
    assert [d["loc"] for d in error["details"]] == [["search_space", *loc]]
    assert error["message"].startswith(f"search_space.{loc[0]}.when")
    assert client.get(f"{API}/studies").json()["items"] == []  # nothing stored


def test_a_condition_of_no_known_form_is_a_validation_error(client: TestClient) -> None:
    body = study_body("bad-form", search_space=with_when("width_l3", {"n_layers": 3}), task=None)
    error = assert_error(client.post(f"{API}/studies", json=body), 422, "validation_error")
    # FastAPI's loc names the member of the parameter union ("int"), as for any field of it.
    (only,) = error["details"]
    assert only["loc"] == ["body", "search_space", "width_l3", "int", "when", "n_layers"]
    assert only["msg"].startswith("a condition is a list of values (categorical parent)")


def test_trials_hold_exactly_their_active_parameters_everywhere(
    client: TestClient, db: ScratchDatabase
) -> None:
    created = conditional_study(client)
    sid = created["id"]
    assert created["search_space"]["momentum"]["when"] == {"optimizer": ["sgd"]}
    assert "when" not in created["search_space"]["optimizer"]
    asked = []
    for _ in range(30):  # past TPE's 10 startup trials: the grouped multivariate TPE samples
        trial = ask(client, sid)
        params = trial["params"]
        assert set(params) == active(params), params
        assert 1 <= params["n_layers"] <= 4
        assert 0.0 <= params.get("momentum", 0.0) <= 0.99
        assert 16 <= params.get("width_l3", 16) <= 1024
        value = (params.get("momentum", 0.5) - 0.9) ** 2 + params["n_layers"] / 10
        complete(client, trial, value)
        asked.append(trial)
    # Both branches of both conditions came up.
    assert {t["params"]["optimizer"] for t in asked} == {"sgd", "adam"}
    assert {t["params"]["n_layers"] >= 3 for t in asked} == {True, False}

    by_number = {t["number"]: t["params"] for t in asked}
    listed = client.get(f"{API}/studies/{sid}/trials", params={"limit": 100}).json()["items"]
    assert {t["number"]: t["params"] for t in listed} == by_number

    # Optuna's own tables hold the same parameters and nothing else.
    study = optuna.load_study(study_name=created["optuna_study_name"], storage=db.url_string)
    assert len(study.trials) == 30
    for frozen in study.trials:
        assert frozen.params == by_number[frozen.number]
        assert set(frozen.distributions) == set(frozen.params)

    # The exports: an empty CSV cell where a trial lacks a parameter, no key in JSON Lines.
    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/studies/{sid}/trials.csv").text)))
    assert [name for name in rows[0] if name.startswith("params_")] == [f"params_{n}" for n in ALL]
    for row in rows:
        params = by_number[int(row["number"])]
        for name in ALL:
            assert (row[f"params_{name}"] == "") == (name not in params), (name, row)
    lines = client.get(f"{API}/studies/{sid}/trials.jsonl").text.splitlines()
    assert {t["number"]: t["params"] for t in map(json.loads, lines)} == by_number

    # What the dashboard reads: the study's space (with `when`) and the change feed's trials.
    shown = client.get(f"{API}/studies/{sid}").json()
    assert shown["search_space"]["width_l3"]["when"] == {"n_layers": {"min": 3}}
    changes = client.get(f"{API}/studies/{sid}/changes").json()["items"]
    assert {t["number"]: t["params"] for t in changes} == by_number


def test_enqueued_configurations_must_be_consistent(client: TestClient) -> None:
    sid = conditional_study(client, "conditional-queue")["id"]

    def enqueue(params: dict[str, Any]) -> Any:
        return client.post(f"{API}/studies/{sid}/trials/enqueue", json={"params": params})

    inactive = assert_error(enqueue({"optimizer": "adam", "momentum": 0.5}), 422, "invalid_spec")
    assert [d["loc"] for d in inactive["details"]] == [["params", "momentum"]]
    orphan = assert_error(enqueue({"width_l3": 64}), 422, "invalid_spec")
    assert [d["loc"] for d in orphan["details"]] == [["params", "width_l3"]]

    assert enqueue({"optimizer": "sgd", "n_layers": 4}).status_code == 201
    assert enqueue({"optimizer": "adam", "n_layers": 1}).status_code == 201
    first, second = ask(client, sid), ask(client, sid)
    # The active children of the fixed parents are sampled; nothing inactive is.
    assert set(first["params"]) == set(ALL)
    assert first["params"]["optimizer"] == "sgd" and first["params"]["n_layers"] == 4
    assert second["params"] == {"optimizer": "adam", "n_layers": 1}


def test_the_built_in_task_takes_a_conditional_space(client: TestClient) -> None:
    space = demo_study(trials=5, epochs=1, parallel=1)["search_space"]
    assert any("when" in spec for spec in space.values())  # the demo's space is conditional
    create_study(client, name="mlp-conditional", search_space=space)  # task: mlp_classifier
    required = {**space, "batch_size": {**space["batch_size"], "when": {"optimizer": ["sgd"]}}}
    body = study_body("mlp-required-conditional", search_space=required)
    error = assert_error(client.post(f"{API}/studies", json=body), 422, "invalid_spec")
    assert [d["loc"] for d in error["details"]] == [["search_space", "batch_size", "when"]]
