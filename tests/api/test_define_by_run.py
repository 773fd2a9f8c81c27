"""Define-by-run over HTTP: parameters a study does not declare, sampled by the server for a
running trial (``POST /trials/{id}/suggest``), stored like declared ones and seen everywhere."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.sampling.view import RELATIVE_KEY
from service.spec.samplers import torch_available
from tests.api.helpers import API, ask, assert_error, complete, create_study
from tests.conftest import server_settings
from tests.support import ScratchDatabase

X = {"type": "float", "low": -3.0, "high": 3.0}
KIND = {"type": "categorical", "choices": ["a", "b", "c"]}
DEPTH = {"type": "int", "low": 1, "high": 8, "log": True}


def open_study(client: TestClient, name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "search_space": {},
        "sampler": {"name": "tpe", "options": {"seed": 3, "n_startup_trials": 3}},
        "pruner": {"name": "none", "options": {}},
        "task": None,
        "max_trials": None,
        **overrides,
    }
    return create_study(client, **body)


def suggest(
    client: TestClient, trial: dict[str, Any], name: str, distribution: dict[str, Any]
) -> Any:
    return client.post(
        f"{API}/trials/{trial['id']}/suggest",
        json={"lease_token": trial["lease"]["token"], "name": name, "distribution": distribution},
    )


def value_of(
    client: TestClient, trial: dict[str, Any], name: str, distribution: dict[str, Any]
) -> Any:
    response = suggest(client, trial, name, distribution)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == name
    return response.json()["value"]


def test_an_open_space_is_sampled_by_the_server_and_seen_everywhere(
    client: TestClient, db: ScratchDatabase
) -> None:
    created = open_study(client, "open")
    sid = created["id"]
    assert created["search_space"] == {}
    by_number: dict[int, dict[str, Any]] = {}
    for _ in range(8):
        trial = ask(client, sid)
        assert trial["params"] == {}
        x = value_of(client, trial, "x", X)
        assert value_of(client, trial, "x", X) == x  # a repeat answers the same value
        params: dict[str, Any] = {"x": x}
        if x > 0:  # conditional logic in the objective's code
            params["kind"] = value_of(client, trial, "kind", KIND)
        params["depth"] = value_of(client, trial, "depth", DEPTH)
        assert -3.0 <= x <= 3.0 and 1 <= params["depth"] <= 8
        assert isinstance(params["depth"], int) and params.get("kind", "a") in "abc"
        complete(client, trial, x**2)
        by_number[trial["number"]] = params

    listed = client.get(f"{API}/studies/{sid}/trials", params={"limit": 100}).json()["items"]
    assert {t["number"]: t["params"] for t in listed} == by_number
    one = client.get(f"{API}/trials/{listed[0]['id']}").json()
    assert one["params"] == by_number[one["number"]]

    study = optuna.load_study(study_name=created["optuna_study_name"], storage=db.url_string)
    for frozen in study.trials:
        assert frozen.params == by_number[frozen.number]
        assert frozen.distributions["x"] == optuna.distributions.FloatDistribution(-3.0, 3.0)
        assert frozen.distributions["depth"] == optuna.distributions.IntDistribution(1, 8, log=True)

    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/studies/{sid}/trials.csv").text)))
    assert {f"params_{n}" for n in ("x", "kind", "depth")} <= set(rows[0])
    assert {int(r["number"]): float(r["params_x"]) for r in rows} == {
        n: p["x"] for n, p in by_number.items()
    }


def test_a_partly_declared_space_mixes_lease_values_and_suggestions(client: TestClient) -> None:
    sid = open_study(
        client, "partly", search_space={"lr": {"type": "float", "low": 0.1, "high": 1}}
    )["id"]
    trial = ask(client, sid)
    assert set(trial["params"]) == {"lr"}
    width = value_of(client, trial, "width", {"type": "int", "low": 8, "high": 64, "step": 8})
    assert width % 8 == 0
    error = assert_error(
        suggest(client, trial, "lr", {"type": "float", "low": 0.1, "high": 1}), 422, "invalid_input"
    )
    assert "declared" in error["message"] and error["details"]["name"] == "lr"
    done = complete(client, trial, 1.0)
    assert done["params"] == {"lr": trial["params"]["lr"], "width": width}


def test_what_cannot_be_suggested_is_refused_and_changes_nothing(client: TestClient) -> None:
    sid = open_study(client, "refusals")["id"]
    trial = ask(client, sid)
    x = value_of(client, trial, "x", X)

    other = assert_error(suggest(client, trial, "x", {**X, "high": 4.0}), 422, "invalid_input")
    assert other["details"]["held"] != other["details"]["asked"]
    when = assert_error(
        suggest(client, trial, "y", {**X, "when": {"x": {"min": 0}}}), 422, "invalid_input"
    )
    assert "when" in when["message"]
    bad = suggest(client, trial, "y", {"type": "float", "low": 2.0, "high": 1.0})
    assert_error(bad, 422, "validation_error")
    unknown_type = suggest(client, trial, "y", {"type": "complex", "low": 0, "high": 1})
    assert_error(unknown_type, 422, "validation_error")

    stranger = {**trial, "lease": {**trial["lease"], "token": "not-the-token"}}
    assert_error(suggest(client, stranger, "y", X), 409, "lease_lost")
    missing = {**trial, "id": trial["id"] + 1000}
    assert_error(suggest(client, missing, "y", X), 404, "not_found")

    complete(client, trial, 0.0)
    assert_error(suggest(client, trial, "y", X), 409, "trial_finished")
    shown = client.get(f"{API}/trials/{trial['id']}").json()
    assert shown["params"] == {"x": x}  # nothing of the refused requests was stored


def test_a_grid_study_refuses_undeclared_parameters(client: TestClient) -> None:
    space = {"k": {"type": "categorical", "choices": [1, 2]}}
    sid = open_study(client, "grid", search_space=space, sampler={"name": "grid"}, max_trials=2)[
        "id"
    ]
    error = assert_error(suggest(client, ask(client, sid), "x", X), 422, "invalid_input")
    assert error["details"]["sampler"] == "grid"


def test_a_released_trial_keeps_its_undeclared_parameters(client: TestClient) -> None:
    sid = open_study(client, "retry")["id"]
    first = ask(client, sid)
    x = value_of(client, first, "x", X)
    released = client.post(
        f"{API}/trials/{first['id']}/release", json={"lease_token": first["lease"]["token"]}
    )
    assert released.status_code == 204
    again = ask(client, sid)
    assert again["id"] == first["id"] and again["params"] == {"x": x}
    assert value_of(client, again, "x", X) == x  # under the new lease, the same value
    assert_error(suggest(client, first, "z", X), 409, "lease_lost")  # the old token is dead


def test_another_process_sees_a_suggested_parameter(db: ScratchDatabase, tmp_path: Path) -> None:
    """Process B's view of the study is built before A suggests: B must read A's parameter
    (change_xid stamped), not sample a second value."""
    headers = db.auth_headers
    with (
        TestClient(create_app(server_settings(db, tmp_path / "a")), headers=headers) as a,
        TestClient(create_app(server_settings(db, tmp_path / "b")), headers=headers) as b,
    ):
        sid = open_study(a, "two-processes")["id"]
        trial = ask(b, sid)  # B builds its view
        ask(b, sid)  # and moves its cursor past the first hand-out's transaction
        x = value_of(a, trial, "x", X)
        assert value_of(b, trial, "x", X) == x


def test_a_relative_sample_at_hand_out_serves_undeclared_names_every_trial_has(
    client: TestClient, db: ScratchDatabase
) -> None:
    """With x and y in every finished trial, multivariate TPE draws them jointly when it hands
    the trial out (as Optuna draws a trial's relative params once); suggest answers those."""
    options = {"seed": 5, "n_startup_trials": 3, "multivariate": True}
    created = open_study(client, "relative", sampler={"name": "tpe", "options": options})
    sid = created["id"]
    y = {"type": "int", "low": 0, "high": 10}
    answered: dict[int, tuple[float, int]] = {}
    for _ in range(6):
        trial = ask(client, sid)
        pair = (value_of(client, trial, "x", X), value_of(client, trial, "y", y))
        complete(client, trial, pair[0] ** 2 + pair[1])
        answered[trial["number"]] = pair
    study = optuna.load_study(study_name=created["optuna_study_name"], storage=db.url_string)
    kept = {t.number: t.system_attrs.get(RELATIVE_KEY) for t in study.trials}
    assert all(kept[n] is None for n in range(3))  # startup: nothing relative to keep
    for number in range(4, 6):
        entry = kept[number]
        assert entry is not None and set(entry) == {"x", "y"}, kept
        assert answered[number] == (entry["x"][0], int(entry["y"][0]))


SAMPLERS = ["random", "tpe", "cmaes", "qmc", "nsga2"] + (["gp"] if torch_available() else [])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_but_grid_samples_undeclared_parameters_without_warnings(
    client: TestClient, sampler: str
) -> None:
    """Warnings are errors in the tests, and the app runs in this process."""
    options: dict[str, Any] = {"seed": 1}
    if sampler in ("tpe", "cmaes", "gp"):
        options["n_startup_trials"] = 2
    if sampler == "nsga2":
        options["population_size"] = 2
    sid = open_study(client, f"open-{sampler}", sampler={"name": sampler, "options": options})["id"]
    for _ in range(5):
        trial = ask(client, sid)
        x = value_of(client, trial, "x", X)
        depth = value_of(client, trial, "depth", DEPTH)
        complete(client, trial, x**2 + depth)
