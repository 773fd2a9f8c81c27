"""Warm starts against a real PostgreSQL: finished trials imported into a study
(``POST /studies/{id}/trials/import``) and studies forked from others (``"from"`` in the create
body). Imported trials are stored as Optuna stores finished trials (``optuna.load_study`` sees
them), used by the sampler on the very next ask, and counted neither against ``max_trials`` nor
``max_parallel``; a bad trial refuses the whole request and nothing is stored."""

from __future__ import annotations

import math
import random
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.distributions import FloatDistribution

from service.auth.service import issue_token
from service.spec import (
    ActiveSpace,
    SamplerSpec,
    build_sampler,
    parse_search_space,
    to_distributions,
)
from tests.api.helpers import API, ask, assert_error, complete, create_study
from tests.support import ScratchDatabase
from tests.unit.test_conditions import EXAMPLE

SPACE: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 6},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
}
QUIET = {"pruner": {"name": "none", "options": {}}, "task": None}


def trial(
    lr: Any = 1e-3, n_layers: Any = 2, batch_size: Any = 64, value: float = 0.5, **extra: Any
) -> dict[str, Any]:
    return {
        "params": {"lr": lr, "n_layers": n_layers, "batch_size": batch_size},
        "values": [value],
        **extra,
    }


def random_trials(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` complete trials of SPACE whose value is a smooth function of the parameters."""
    rng = random.Random(seed)
    out = []
    for number in range(n):
        lr = math.exp(rng.uniform(math.log(1e-5), math.log(0.1)))
        layers = rng.randint(1, 6)
        batch = rng.choice([16, 32, 64, 128, 256, 512])
        value = (math.log10(lr) + 3) ** 2 + 0.1 * (layers - 3) ** 2 + batch / 1000
        out.append(trial(lr, layers, batch, value, number=number))
    return out


def post_import(client: TestClient, study_id: int, trials: list[Any], **extra: Any) -> Any:
    return client.post(f"{API}/studies/{study_id}/trials/import", json={"trials": trials, **extra})


def imported(client: TestClient, study_id: int, trials: list[Any], **extra: Any) -> dict[str, Any]:
    response = post_import(client, study_id, trials, **extra)
    assert response.status_code == 201, response.text
    return dict(response.json())


def listed(client: TestClient, study_id: int) -> list[dict[str, Any]]:
    response = client.get(
        f"{API}/studies/{study_id}/trials", params={"limit": 1000, "include_intermediate": True}
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_imported_trials_are_optuna_trials_outside_the_budget(
    client: TestClient, db: ScratchDatabase
) -> None:
    study = create_study(client, max_trials=3, max_parallel=1, **QUIET)
    sid = study["id"]
    trials = [
        trial(1e-3, 2, 64, 0.25, number=7, user_attrs={"run": "a", "odd": 'x"{,}\\ y'}),
        trial(1e-2, 3, 32, 0.5, number=8, datetime_start="2025-01-02T03:04:05Z"),
        {
            "number": 9,
            "state": "pruned",
            "params": {"lr": 1e-4, "n_layers": 1, "batch_size": 16},
            "intermediate_values": [{"step": 0, "value": 0.9}, {"step": 1, "value": None}],
        },
        {
            "state": "failed",
            "reason": "oom",
            "params": {"lr": 1e-4, "n_layers": 6, "batch_size": 512},
        },
    ]
    answer = imported(client, sid, trials, source="last-week.csv")
    assert answer == {
        "study_id": sid, "imported": 4, "first_number": 0, "last_number": 3, "dry_run": False
    }  # fmt: skip

    got = client.get(f"{API}/studies/{sid}").json()
    assert got["n_trials_started"] == 0  # not counted against max_trials
    assert got["trial_counts"] == {
        "waiting": 0, "running": 0, "complete": 2, "pruned": 1, "failed": 1, "paused": 0
    }  # fmt: skip
    by_number = {t["number"]: t for t in listed(client, sid)}
    assert by_number[0]["params"] == {"lr": 1e-3, "n_layers": 2, "batch_size": 64}
    assert by_number[0]["values"] == [0.25]
    assert by_number[0]["user_attrs"] == {"run": "a", "odd": 'x"{,}\\ y'}
    assert by_number[0]["attempt"] == 0 and by_number[0]["worker_id"] is None
    assert by_number[0]["imported_from"] == {"source": "last-week.csv", "number": 7}
    assert by_number[3]["imported_from"] == {"source": "last-week.csv"}
    assert by_number[1]["datetime_start"].startswith("2025-01-02T03:04:05")
    assert by_number[2]["state"] == "pruned"
    assert by_number[2]["intermediate_values"] == [
        {"step": 0, "value": 0.9}, {"step": 1, "value": None}
    ]  # fmt: skip
    assert by_number[3]["state"] == "failed" and by_number[3]["fail_reason"] == "oom"

    # Optuna's own tables: the trials with their distributions, marked as imported.
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    frozen = {t.number: t for t in loaded.trials}
    distributions = to_distributions(parse_search_space(SPACE))
    assert frozen[0].distributions == distributions
    assert frozen[0].params == {"lr": 1e-3, "n_layers": 2, "batch_size": 64}
    assert frozen[0].value == 0.25 and frozen[0].user_attrs["odd"] == 'x"{,}\\ y'
    assert frozen[0].system_attrs["hpo:imported_from"] == {"source": "last-week.csv", "number": 7}
    assert frozen[2].state == optuna.trial.TrialState.PRUNED
    assert math.isnan(frozen[2].intermediate_values[1])
    assert frozen[3].state == optuna.trial.TrialState.FAIL
    assert loaded.best_trial.number == 0

    # The budget and max_parallel ignore them: three asks, one at a time, numbered after them.
    for expected in (4, 5, 6):
        leased = ask(client, sid)
        assert leased["number"] == expected
        complete(client, leased, 1.0)
    assert client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"}).status_code == 204


def test_the_next_suggestion_uses_the_imported_trials(client: TestClient) -> None:
    """After one trial of its own, a study imports 30 trials: the service's next TPE suggestion
    is exactly what an in-process Optuna study with the same seed and options suggests after
    the same trial and the same 30 added with ``add_trial``. Without the import, TPE would
    still be in its random start-up phase (another suggestion)."""
    sampler = {"name": "tpe", "options": {"seed": 11, "n_startup_trials": 5}}
    warm = create_study(client, name="warm", sampler=sampler, search_space=SPACE, **QUIET)
    cold = create_study(client, name="cold", sampler=sampler, search_space=SPACE, **QUIET)
    space = parse_search_space(SPACE)
    spec = SamplerSpec.model_validate(sampler)
    study = optuna.create_study(sampler=build_sampler(spec, space, ["minimize"]))
    active = ActiveSpace(space)

    first = ask(client, warm["id"])  # the study's view now reads only later changes
    local = study.ask()
    assert first["params"] == pytest.approx(active.suggest(local))
    complete(client, first, 3.0)
    study.tell(local, 3.0)
    trials = random_trials(30)
    imported(client, warm["id"], trials)
    suggested = ask(client, warm["id"])["params"]

    distributions = to_distributions(space)
    for t in trials:
        study.add_trial(
            optuna.trial.create_trial(
                params=t["params"], distributions=distributions, value=t["values"][0]
            )
        )
    assert suggested == pytest.approx(active.suggest(study.ask()))

    first_cold = ask(client, cold["id"])
    complete(client, first_cold, 3.0)
    random_start = ask(client, cold["id"])["params"]
    assert random_start != pytest.approx(suggested)


def valid() -> dict[str, Any]:
    return trial(number=1)


PARAMS = trial()["params"]
BAD_TRIALS = [
    (trial(lr="0.001"), ["params", "lr"], "expected a number"),
    (trial(n_layers=2.5), ["params", "n_layers"], "expected an integer"),
    (trial(lr=0.5), ["params", "lr"], "outside"),
    (trial(batch_size=48), ["params", "batch_size"], "not one of the choices"),
    (
        {"params": {"lr": 1e-3, "n_layers": 2}, "values": [1.0]},
        ["params", "batch_size"],
        "required",
    ),
    ({"params": {**PARAMS, "dropout": 0.1}, "values": [1.0]}, ["params", "dropout"], "unknown"),
    (trial(values=[1.0, 2.0]), ["values"], "1 objective(s); 2 value(s)"),
    ({"params": PARAMS}, [], "needs 'values'"),
    ({"params": PARAMS, "state": "pruned", "values": [1.0]}, [], "takes no 'values'"),
    (trial(reason="oops"), [], "only for failed"),
    (trial(state="running"), ["state"], "Input should be"),
    (trial(number=1), ["number"], "number 1 is also trial 0's"),
    (trial(constraints={"mem": 1.0}), ["constraints"], "unknown constraint"),
    (trial(unknown_field=1), ["unknown_field"], "Extra inputs"),
    (trial(intermediate_values=[{"step": 1, "value": 1}] * 2), [], "repeat a step"),
    (
        trial(datetime_start="2025-01-02T00:00Z", datetime_complete="2025-01-01T00:00Z"),
        [],
        "before",
    ),
]


@pytest.mark.parametrize(("bad", "loc", "words"), BAD_TRIALS)
def test_the_first_bad_trial_is_named_and_nothing_is_stored(
    client: TestClient, bad: dict[str, Any], loc: list[Any], words: str
) -> None:
    sid = create_study(client, **QUIET)["id"]
    error = assert_error(post_import(client, sid, [valid(), bad, trial()]), 422, "invalid_input")
    details = error["details"]
    assert details["index"] == 1 and error["message"].startswith("trials[1]: ")
    assert any(
        p["loc"][:2] == ["trials", 1] and p["loc"][2:][: len(loc)] == loc and words in p["msg"]
        for p in details["problems"]
    ), details
    assert "nothing was imported" in error["message"]
    assert listed(client, sid) == []


def test_refused_requests_store_nothing(client: TestClient) -> None:
    sid = create_study(client, **QUIET)["id"]
    too_many = post_import(client, sid, [trial()] * 10_001)
    assert "at most 10000" in assert_error(too_many, 422, "validation_error")["message"]
    not_objects = assert_error(post_import(client, sid, [valid(), 5]), 422, "validation_error")
    assert not_objects["details"][0]["loc"] == ["body", "trials", 1]
    assert_error(post_import(client, sid, []), 422, "validation_error")
    nan = client.post(
        f"{API}/studies/{sid}/trials/import",
        content='{"trials": [{"params": {"lr": 0.001, "n_layers": 2, "batch_size": 64},'
        ' "values": [NaN]}]}',
        headers={"Content-Type": "application/json"},
    )
    assert "NaN" in assert_error(nan, 422, "invalid_input")["message"]
    assert listed(client, sid) == []
    assert_error(post_import(client, 999_999, [trial()]), 404, "not_found")


def test_a_dry_run_checks_and_a_retried_import_stores_once(client: TestClient) -> None:
    sid = create_study(client, **QUIET)["id"]
    checked = client.post(
        f"{API}/studies/{sid}/trials/import", params={"dry_run": True}, json={"trials": [trial()]}
    )
    assert checked.status_code == 201, checked.text
    assert checked.json() == {
        "study_id": sid, "imported": 1, "first_number": None, "last_number": None, "dry_run": True
    }  # fmt: skip
    bad = client.post(
        f"{API}/studies/{sid}/trials/import",
        params={"dry_run": True},
        json={"trials": [trial(lr=1.0)]},
    )
    assert assert_error(bad, 422, "invalid_input")["details"]["index"] == 0
    assert listed(client, sid) == []
    headers = {"Idempotency-Key": "import-1"}
    body = {"trials": [trial(), trial(value=0.1)]}
    first = client.post(f"{API}/studies/{sid}/trials/import", json=body, headers=headers)
    again = client.post(f"{API}/studies/{sid}/trials/import", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() and first.json()["last_number"] == 1
    assert len(listed(client, sid)) == 2
    other = client.post(
        f"{API}/studies/{sid}/trials/import", json={"trials": [trial()]}, headers=headers
    )
    assert_error(other, 409, "idempotency_key_reused")


def test_a_multi_objective_study_takes_values_per_objective(client: TestClient) -> None:
    sid = create_study(client, directions=["minimize", "maximize"], **QUIET)["id"]
    error = assert_error(post_import(client, sid, [trial()]), 422, "invalid_input")
    assert "2 objective(s); 1 value(s)" in error["message"]
    curve = trial(values=[1.0, 2.0], intermediate_values=[{"step": 0, "value": 1.0}])
    assert_error(post_import(client, sid, [curve]), 422, "invalid_input")
    imported(
        client, sid, [trial(values=[1.0, 2.0]), {"state": "pruned", "params": valid()["params"]}]
    )
    assert len(listed(client, sid)) == 2


def test_a_conditional_space_imports_exactly_the_active_parameters(
    client: TestClient, db: ScratchDatabase
) -> None:
    study = create_study(client, search_space=EXAMPLE, **QUIET)
    sid = study["id"]
    good = [
        {"params": {"optimizer": "sgd", "momentum": 0.9, "n_layers": 1}, "values": [1.0]},
        {"params": {"optimizer": "adam", "n_layers": 3, "width_l3": 64}, "values": [2.0]},
    ]
    for bad, words in (
        ({"optimizer": "adam", "momentum": 0.9, "n_layers": 1}, "does not exist when"),
        ({"optimizer": "sgd", "n_layers": 1}, "a value is required"),
        ({"optimizer": "adam", "n_layers": 4}, "a value is required"),
        ({"optimizer": "adam", "n_layers": 2, "width_l3": 64}, "does not exist when"),
    ):
        response = post_import(client, sid, [*good, {"params": bad, "values": [0.0]}])
        error = assert_error(response, 422, "invalid_input")
        assert error["details"]["index"] == 2 and words in error["message"], error
    assert listed(client, sid) == []
    imported(client, sid, good)
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    assert [t.params for t in loaded.trials] == [g["params"] for g in good]
    assert set(loaded.trials[1].distributions) == {"optimizer", "n_layers", "width_l3"}


def test_constraint_values_are_required_as_complete_requires_them(
    client: TestClient, db: ScratchDatabase
) -> None:
    study = create_study(client, constraints=["mem"], **QUIET)
    sid = study["id"]
    error = assert_error(post_import(client, sid, [trial()]), 422, "invalid_input")
    assert "missing constraint value(s): mem" in error["message"]
    imported(client, sid, [trial(constraints={"mem": 2.0}), trial(constraints={"mem": -1.0})])
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    assert [t.constraints for t in loaded.trials] == [{"mem": 2.0}, {"mem": -1.0}]
    assert [t["feasible"] for t in listed(client, sid)] == [False, True]


def test_ten_thousand_trials_with_curves_import_in_one_request(client: TestClient) -> None:
    """The largest request (timed in bench/import_trials.py)."""
    sid = create_study(client, **QUIET)["id"]
    trials = [
        {**t, "intermediate_values": [{"step": s, "value": 1.0 / (s + 1)} for s in range(10)]}
        for t in random_trials(10_000)
    ]
    answer = imported(client, sid, trials)
    assert answer["imported"] == 10_000 and answer["last_number"] == 9_999
    assert client.get(f"{API}/studies/{sid}").json()["trial_counts"]["complete"] == 10_000
    assert ask(client, sid)["number"] == 10_000


# ---- forks ----


def source_study(client: TestClient) -> dict[str, Any]:
    """Study "source" with complete trials at lr 1e-4, 1e-3, 1e-2, 5e-2 (numbers 0-3), one
    pruned (4) and one failed (5)."""
    study = create_study(client, name="source", search_space=SPACE, **QUIET)
    trials = [trial(lr, 2, 64, lr * 10, user_attrs={"lr": lr}) for lr in (1e-4, 1e-3, 1e-2, 5e-2)]
    curve = [{"step": 0, "value": 3.0}]
    trials += [
        {"state": "pruned", "params": PARAMS, "intermediate_values": curve},
        {"state": "failed", "reason": "oom", "params": PARAMS},
    ]
    imported(client, study["id"], trials)
    return study


def fork(client: TestClient, name: str, space: dict[str, Any], **source: Any) -> Any:
    return client.post(
        f"{API}/studies",
        json={"name": name, "search_space": space, **QUIET, "from": source},
    )


def test_a_fork_imports_what_fits_a_changed_range_and_says_why_the_rest_does_not(
    client: TestClient, db: ScratchDatabase
) -> None:
    source = source_study(client)
    narrower = {**SPACE, "lr": {"type": "float", "low": 1e-4, "high": 0.02, "log": True}}
    response = fork(client, "narrower", narrower, study="source", states=["complete", "pruned"])
    assert response.status_code == 201, response.text
    created = response.json()
    report = created["fork"]
    assert report["source_study_id"] == source["id"] and report["source_study"] == "source"
    assert report["imported"] == 4 and report["dropped_params"] == []
    (skipped,) = report["skipped"]
    assert skipped["number"] == 3 and skipped["state"] == "complete"
    assert "params.lr" in skipped["reason"] and "outside" in skipped["reason"]

    trials = listed(client, created["id"])
    assert [t["params"]["lr"] for t in trials] == [1e-4, 1e-3, 1e-2, 1e-3]
    assert [t["state"] for t in trials] == ["complete"] * 3 + ["pruned"]
    assert trials[1]["values"] == [1e-2] and trials[1]["user_attrs"] == {"lr": 1e-3}
    assert trials[3]["intermediate_values"] == [{"step": 0, "value": 3.0}]
    assert client.get(f"{API}/studies/{created['id']}").json()["n_trials_started"] == 0
    loaded = optuna.load_study(study_name=created["optuna_study_name"], storage=db.url_string)
    assert loaded.trials[0].system_attrs["hpo:imported_from"] == {
        "study_id": source["id"], "study": "source", "number": 0
    }  # fmt: skip
    # The new study's distribution:
    assert loaded.trials[0].distributions["lr"] == FloatDistribution(1e-4, 0.02, log=True)
    # Other answers do not carry "fork".
    assert "fork" not in client.get(f"{API}/studies/{created['id']}").json()


def test_a_fork_across_added_and_removed_parameters(client: TestClient) -> None:
    source = source_study(client)
    changed = {
        "lr": SPACE["lr"],
        "n_layers": SPACE["n_layers"],
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    }  # batch_size removed, dropout added
    without = fork(client, "no-default", changed, study=source["id"]).json()["fork"]
    assert without["imported"] == 0 and len(without["skipped"]) == 4
    assert all("no 'dropout'" in s["reason"] for s in without["skipped"])
    assert all("from.defaults.dropout" in s["reason"] for s in without["skipped"])

    response = fork(client, "defaulted", changed, study=source["id"], defaults={"dropout": 0.0})
    report = response.json()["fork"]
    assert report["imported"] == 4 and report["skipped"] == []
    assert report["dropped_params"] == ["batch_size"]
    trials = listed(client, response.json()["id"])
    assert trials[0]["params"] == {"lr": 1e-4, "n_layers": 2, "dropout": 0.0}

    bad_default = fork(client, "bad", changed, study=source["id"], defaults={"dropout": 0.9})
    error = assert_error(bad_default, 422, "invalid_spec")
    assert error["details"][0]["loc"] == ["from", "defaults", "dropout"]

    two = client.post(
        f"{API}/studies",
        json={"name": "two", "search_space": SPACE, "directions": ["minimize", "minimize"],
              **QUIET, "from": {"study": "source"}},
    )  # fmt: skip
    assert all("2 objective(s)" in s["reason"] for s in two.json()["fork"]["skipped"])


def test_a_fork_into_a_conditional_space_drops_inactive_parameters(client: TestClient) -> None:
    flat = {
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        "momentum": {"type": "float", "low": 0.0, "high": 0.99},
        "n_layers": {"type": "int", "low": 1, "high": 4},
    }
    sid = create_study(client, name="flat", search_space=flat, **QUIET)["id"]
    imported(
        client,
        sid,
        [
            {"params": {"optimizer": "sgd", "momentum": 0.9, "n_layers": 2}, "values": [1.0]},
            {"params": {"optimizer": "adam", "momentum": 0.5, "n_layers": 3}, "values": [2.0]},
        ],
    )
    response = fork(client, "conditional", EXAMPLE, study="flat", defaults={"width_l3": 64})
    report = response.json()["fork"]
    assert report["imported"] == 2 and report["dropped_params"] == ["momentum"]
    trials = listed(client, response.json()["id"])
    assert trials[0]["params"] == {"optimizer": "sgd", "momentum": 0.9, "n_layers": 2}
    assert trials[1]["params"] == {"optimizer": "adam", "n_layers": 3, "width_l3": 64}


def test_a_fork_needs_a_study_the_caller_may_read(client: TestClient, db: ScratchDatabase) -> None:
    source = source_study(client)
    other = {"Authorization": f"Bearer {issue_token(db.url, 'other-team', 'admin')}"}
    for ref in (source["id"], "source", 999_999, "nothing"):
        response = client.post(
            f"{API}/studies",
            json={"name": "stolen", "search_space": SPACE, **QUIET, "from": {"study": ref}},
            headers=other,
        )
        assert "from.study" in assert_error(response, 404, "not_found")["message"]
    # Nothing was created: the name is still free in that team.
    assert client.get(f"{API}/studies/by-name/stolen", headers=other).status_code == 404


def test_undeclared_parameters_come_with_their_distributions(
    client: TestClient, db: ScratchDatabase
) -> None:
    """An open (define-by-run) study: parameters it does not declare are imported with the
    distribution each trial gives, and the first trial without one is refused."""
    study = create_study(client, name="open", search_space={"lr": SPACE["lr"]}, **QUIET)
    sid = study["id"]
    momentum = {"type": "float", "low": 0.0, "high": 0.99}
    width = {"type": "int", "low": 16, "high": 256, "log": True}
    trials = [
        {"params": {"lr": 1e-3, "momentum": 0.9}, "distributions": {"momentum": momentum},
         "values": [0.2]},
        {"params": {"lr": 1e-2, "width": 64}, "distributions": {"width": width}, "values": [0.4]},
    ]  # fmt: skip
    bad = [
        ({"params": {"lr": 1e-3, "momentum": 0.9}, "values": [1.0]}, ["params", "momentum"],
         "give its distribution in 'distributions'"),
        ({"params": {"lr": 1e-3, "momentum": 1.5}, "distributions": {"momentum": momentum},
          "values": [1.0]}, ["params", "momentum"], "0.99"),
        ({"params": {"lr": 1e-3}, "distributions": {"lr": SPACE["lr"]}, "values": [1.0]},
         ["distributions", "lr"], "declared by the study"),
        ({"params": {"lr": 1e-3}, "distributions": {"momentum": momentum}, "values": [1.0]},
         ["distributions", "momentum"], "holds no such parameter"),
    ]  # fmt: skip
    for item, loc, words in bad:
        error = assert_error(post_import(client, sid, [trials[0], item]), 422, "invalid_input")
        problems = error["details"]["problems"]
        assert any(p["loc"][2:] == loc and words in p["msg"] for p in problems), problems
    assert listed(client, sid) == []

    imported(client, sid, trials)
    got = {t["number"]: t["params"] for t in listed(client, sid)}
    assert got == {0: {"lr": 1e-3, "momentum": 0.9}, 1: {"lr": 1e-2, "width": 64}}
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    frozen = {t.number: t for t in loaded.trials}
    assert frozen[0].distributions["momentum"] == optuna.distributions.FloatDistribution(0, 0.99)
    assert frozen[1].distributions["width"] == optuna.distributions.IntDistribution(
        16, 256, log=True
    )
    assert frozen[1].distributions["lr"] == to_distributions(parse_search_space(SPACE))["lr"]


def test_a_fork_keeps_define_by_run_parameters_and_drops_removed_ones(
    client: TestClient, db: ScratchDatabase
) -> None:
    space = {"lr": SPACE["lr"], "n_layers": SPACE["n_layers"]}
    source = create_study(client, name="dbr-source", search_space=space, **QUIET)
    momentum = {"type": "float", "low": 0.0, "high": 0.99}
    imported(
        client,
        source["id"],
        [
            {"params": {"lr": 1e-3, "n_layers": 2, "momentum": 0.5},
             "distributions": {"momentum": momentum}, "values": [0.1]},
            {"params": {"lr": 1e-2, "n_layers": 3}, "values": [0.2]},
        ],
    )  # fmt: skip
    answer = fork(client, "dbr-fork", {"lr": SPACE["lr"]}, study="dbr-source")
    assert answer.status_code == 201, answer.text
    got = answer.json()["fork"]
    assert got["imported"] == 2 and got["dropped_params"] == ["n_layers"]
    forked = answer.json()
    assert [t["params"] for t in listed(client, forked["id"])] == [
        {"lr": 1e-3, "momentum": 0.5},  # suggested define-by-run: kept with its distribution
        {"lr": 1e-2},  # n_layers was declared by the source, and the fork's space removes it
    ]
    loaded = optuna.load_study(study_name=forked["optuna_study_name"], storage=db.url_string)
    assert loaded.trials[0].distributions["momentum"] == optuna.distributions.FloatDistribution(
        0.0, 0.99
    )
