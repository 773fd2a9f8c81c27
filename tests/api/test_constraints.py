"""Constraints and failures as infeasible evidence, against a real PostgreSQL.

A study declares constraint names; complete gives their values, stored as Optuna stores them
(system attributes ``constraints:<name>``), so Optuna's own ``best_trial``/``best_trials`` and its
constraint-aware samplers see them. Failures with a reason in ``infeasible_failures`` are shown
to the sampler (its in-memory view only) as infeasible points; everywhere else they stay failed.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.db.unit_of_work import UnitOfWork
from service.notify import WorkSignal
from service.sampling.registry import StudyViews
from service.studies.schemas import StudyCreate
from service.studies.service import StudyService, load_definition
from service.trials.index import TrialStudyIndex
from service.trials.leases import Finish
from service.trials.service import ClaimTiming, TrialService
from tests.api.helpers import API, ask, assert_error, create_study, study_body
from tests.support import ScratchDatabase, ServerProcess
from workers.client import HPOClient
from workers.optimize import ClientTrial, optimize

QUIET = {"sampler": {"name": "random", "options": {"seed": 1}}, "pruner": {"name": "none"}}
TPE = {"sampler": {"name": "tpe", "options": {"seed": 1}}, "pruner": {"name": "none"}}


def _complete(client: TestClient, trial: dict[str, Any], values: list[float], **extra: Any) -> Any:
    return client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": trial["lease"]["token"], "values": values, **extra},
    )


def _fail(client: TestClient, trial: dict[str, Any], reason: str) -> None:
    response = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": trial["lease"]["token"], "state": "failed", "reason": reason},
    )
    assert response.status_code == 200, response.text


def test_a_study_declares_constraints_and_failure_reasons(client: TestClient) -> None:
    study = create_study(client, constraints=["mem_gb_over", "latency.ms"], **QUIET)
    assert study["constraints"] == ["mem_gb_over", "latency.ms"]
    assert study["infeasible_failures"] == ["oom"]  # the default
    again = client.get(f"{API}/studies/{study['id']}").json()
    assert again["constraints"] == ["mem_gb_over", "latency.ms"]
    opted = create_study(client, name="nan-too", infeasible_failures=["oom", "nan"], **QUIET)
    assert opted["infeasible_failures"] == ["oom", "nan"]
    for bad in (
        {"constraints": ["a", "a"]},
        {"constraints": ["has space"]},
        {"constraints": [f"c{i}" for i in range(17)]},
        {"infeasible_failures": ["error"]},
    ):
        response = client.post(f"{API}/studies", json=study_body("bad", **QUIET, **bad))
        assert_error(response, 422, "validation_error")


def test_complete_needs_exactly_the_declared_values(client: TestClient) -> None:
    sid = create_study(client, constraints=["mem", "latency"], **QUIET)["id"]
    trial = ask(client, sid)
    missing = assert_error(_complete(client, trial, [1.0]), 422, "invalid_input")
    assert "mem" in missing["message"] and "latency" in missing["message"]
    partial = _complete(client, trial, [1.0], constraints={"mem": 0.0})
    assert assert_error(partial, 422, "invalid_input")["details"]["missing"] == ["latency"]
    unknown = _complete(client, trial, [1.0], constraints={"mem": 0, "latency": 0, "gpu": 1})
    assert assert_error(unknown, 422, "invalid_input")["details"]["unknown"] == ["gpu"]
    nan = client.post(
        f"{API}/trials/{trial['id']}/complete",
        content=b'{"lease_token": "%s", "values": [1.0], "constraints": {"mem": NaN, "latency": 0}}'
        % trial["lease"]["token"].encode(),
        headers={"content-type": "application/json"},
    )
    assert_error(nan, 422, "validation_error")
    failed_with = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": trial["lease"]["token"], "state": "failed", "constraints": {"mem": 1}},
    )
    assert_error(failed_with, 422, "validation_error")
    # None of the refusals finished the trial: it still completes with its values.
    done = _complete(client, trial, [1.0], constraints={"latency": -2.5, "mem": 0.5})
    assert done.status_code == 200, done.text
    assert done.json()["constraints"] == {"mem": 0.5, "latency": -2.5}
    assert done.json()["feasible"] is False
    other = create_study(client, name="plain", **QUIET)["id"]
    plain = ask(client, other)
    response = _complete(client, plain, [1.0], constraints={"mem": 0.0})
    assert assert_error(response, 422, "invalid_input")["details"]["unknown"] == ["mem"]


def test_best_trial_and_optuna_ignore_infeasible_trials(
    client: TestClient, db: ScratchDatabase
) -> None:
    study = create_study(client, constraints=["mem"], max_trials=None, **QUIET)
    sid = study["id"]
    values = [(1.0, 0.5), (2.0, -1.0), (3.0, 0.0)]  # the lowest value is infeasible
    for value, mem in values:
        done = _complete(client, ask(client, sid), [value], constraints={"mem": mem})
        assert done.status_code == 200, done.text
    best = client.get(f"{API}/studies/{sid}/best").json()["best"]
    assert (best["number"], best["value"], best["feasible"]) == (1, 2.0, True)
    listed = client.get(f"{API}/studies/{sid}/trials").json()["items"]
    assert [t["feasible"] for t in listed] == [False, True, True]
    history = client.get(f"{API}/studies/{sid}/history").json()["items"]
    assert [p["feasible"] for p in history] == [False, True, True]
    assert [p["best_values"] for p in history] == [None, [2.0], [2.0]]
    overview = client.get(f"{API}/studies/summary").json()["items"][0]
    assert overview["best_trial_number"] == 1

    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    assert [t.constraints for t in loaded.trials] == [{"mem": m} for _, m in values]
    assert loaded.trials[0].system_attrs["constraints:mem"] == 0.5
    assert loaded.best_trial.number == 1  # Optuna's own feasibility rule agrees


def test_pareto_front_ignores_infeasible_trials(client: TestClient, db: ScratchDatabase) -> None:
    study = create_study(
        client,
        directions=["minimize", "minimize"],
        constraints=["mem"],
        max_trials=None,
        sampler={"name": "random", "options": {"seed": 1}},
        pruner={"name": "none"},
    )
    sid = study["id"]
    points = [([0.0, 0.0], 1.0), ([1.0, 2.0], 0.0), ([2.0, 1.0], -1.0)]  # 0 dominates, infeasible
    for values, mem in points:
        assert _complete(client, ask(client, sid), values, constraints={"mem": mem}).is_success
    front = client.get(f"{API}/studies/{sid}/best").json()["pareto_front"]
    assert sorted(t["number"] for t in front) == [1, 2]
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    assert sorted(t.number for t in loaded.best_trials) == [1, 2]


def _services(engine: Engine) -> tuple[StudyService, TrialService, StudyViews]:
    uow = UnitOfWork(engine)
    views = StudyViews(functools.partial(load_definition, uow), 8)
    timing = ClaimTiming(max_wait_s=0, repoll_s=1)
    trials = TrialService(uow, views, TrialStudyIndex(uow), WorkSignal(), timing)
    return StudyService(uow, views), trials, views


@pytest.mark.parametrize("declared", [[], ["mem"]])
def test_the_sampler_sees_an_oom_failure_as_infeasible_the_api_as_failed(
    client: TestClient, engine: Engine, db: ScratchDatabase, declared: list[str]
) -> None:
    _, trials, views = _services(engine)  # a second server process on the same database
    study = create_study(client, name="oom", max_trials=None, constraints=declared, **TPE)
    first = trials.ask(study["id"], "w").trial
    assert first is not None
    # Failed with `next`: the finish and the next hand-out share one transaction.
    done = trials.complete(first.id, first.lease.token, Finish("failed", reason="oom"), "w")
    assert done.following is not None
    second = done.following.trial
    assert second is not None
    constraints = dict.fromkeys(declared, -1.0)
    trials.complete(second.id, second.lease.token, Finish("complete", [3.0], None, {}, constraints))
    trials.ask(study["id"], "w")  # refreshes the view

    seen = views.get(study["id"]).storage
    evidence, feasible = seen.get_trial(first.id), seen.get_trial(second.id)
    name = declared[0] if declared else "hpo_failure"
    assert evidence.state == optuna.trial.TrialState.COMPLETE
    assert evidence.values == [math.inf]  # the worst value of a minimised objective
    assert evidence.constraints == {name: 1.0}
    assert evidence.intermediate_values == {}
    assert feasible.constraints == {name: -1.0 if declared else 0.0}

    shown = client.get(f"{API}/trials/{first.id}").json()
    assert (shown["state"], shown["fail_reason"], shown["feasible"]) == ("failed", "oom", None)
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    assert loaded.trials[0].state == optuna.trial.TrialState.FAIL
    assert loaded.trials[0].constraints == {}  # nothing synthetic reached the database
    counts = client.get(f"{API}/studies/{study['id']}").json()["trial_counts"]
    assert counts["failed"] == 1


def test_failures_are_evidence_only_for_the_reasons_the_study_names(engine: Engine) -> None:
    studies, trials, views = _services(engine)
    cmaes = {"name": "cmaes", "options": {"seed": 1}}
    for name, reasons, reason, sampler, evidence in [
        ("on", ["oom"], "oom", TPE["sampler"], True),
        ("off", [], "oom", TPE["sampler"], False),
        ("nan-not-named", ["oom"], "nan", TPE["sampler"], False),
        ("nan-named", ["oom", "nan"], "nan", TPE["sampler"], True),
        ("other", ["oom"], "ValueError('x')", TPE["sampler"], False),
        ("cmaes-reads-no-constraints", ["oom"], "oom", cmaes, False),
    ]:
        body = study_body(
            name,
            max_trials=None,
            infeasible_failures=reasons,
            sampler=sampler,
            pruner={"name": "none"},
        )
        study = studies.create(StudyCreate.model_validate(body), team_id=None)
        trial = trials.ask(study.id, "w").trial
        assert trial is not None
        trials.complete(trial.id, trial.lease.token, Finish("failed", reason=reason))
        trials.ask(study.id, "w")
        state = views.get(study.id).storage.get_trial(trial.id).state
        assert (state == optuna.trial.TrialState.COMPLETE) is evidence, name


def _arch_choices(client: TestClient, name: str, infeasible: list[str], n: int) -> Counter[str]:
    """TPE (seed 3) on a space where architecture 'huge' always runs out of memory."""
    sid = create_study(
        client,
        name=name,
        search_space={
            "arch": {"type": "categorical", "choices": ["small", "medium", "large", "huge"]},
            "x": {"type": "float", "low": -2.0, "high": 2.0},
        },
        sampler={"name": "tpe", "options": {"seed": 3, "n_startup_trials": 5}},
        pruner={"name": "none"},
        max_trials=None,
        task=None,
        infeasible_failures=infeasible,
    )["id"]
    chosen: Counter[str] = Counter()
    for _ in range(n):
        trial = ask(client, sid)
        arch = trial["params"]["arch"]
        chosen[arch] += 1
        if arch == "huge":
            _fail(client, trial, "oom")
        else:
            value = trial["params"]["x"] ** 2 + {"small": 1.0, "medium": 0.5, "large": 0.0}[arch]
            assert _complete(client, trial, [value]).is_success
    return chosen


def test_tpe_avoids_what_ran_out_of_memory(client: TestClient) -> None:
    learned = _arch_choices(client, "learned", ["oom"], 30)
    ignored = _arch_choices(client, "ignored", [], 30)
    assert learned["huge"] * 2 < ignored["huge"], (learned, ignored)


def test_the_python_client_reports_constraints_and_out_of_memory(db: ScratchDatabase) -> None:
    """``workers.optimize`` through a real server: ``trial.set_constraint`` values arrive with
    complete, and an out-of-memory error fails the trial with the reason ``oom``."""

    def objective(trial: ClientTrial) -> float:
        if trial.number == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        trial.set_constraint("mem", 1.0 - trial.number)
        return float(trial.number)

    body = study_body("client", max_trials=3, constraints=["mem"], task=None, **TPE)
    with (
        ServerProcess(db.url_string, token=db.token) as server,
        HPOClient(server.url, token=server.token) as client,
    ):
        client.create_study(body)
        finished = optimize(client, "client", objective, 3, catch=(RuntimeError,))
    assert [(t["state"], t["fail_reason"]) for t in finished] == [
        ("complete", None),
        ("failed", "oom"),
        ("complete", None),
    ]
    assert [t["constraints"] for t in finished] == [{"mem": 1.0}, None, {"mem": -1.0}]
    assert [t["feasible"] for t in finished] == [False, None, True]
