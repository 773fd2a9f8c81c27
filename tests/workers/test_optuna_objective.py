"""An unmodified Optuna objective through ``workers.optimize`` against a real server:
suggestions (declared and define-by-run), conditional logic in the objective, report and
should_prune with the study's pruner, and the errors a mismatched objective gets."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from tests.support import ScratchDatabase, ServerProcess
from tests.workers.conftest import create_study, trials_of
from workers.client import HPOClient
from workers.client_trial import DistributionMismatch, InactiveParameter, SuggestRefused
from workers.optimize import optimize


def objective(trial: Any) -> float:
    """Written for ``optuna.Trial`` (it runs on one below, too)."""
    optimizer = trial.suggest_categorical("optimizer", ["sgd", "adam"])
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    momentum = trial.suggest_float("momentum", 0.0, 0.9, step=0.1) if optimizer == "sgd" else 0
    n_layers = trial.suggest_int("n_layers", 1, 3)
    trial.set_user_attr("branch", optimizer)
    loss = math.inf
    for epoch in range(5):
        bad = 10.0 if optimizer == "adam" else 0.0  # a branch the median pruner stops
        loss = bad + abs(math.log10(lr) + 2) + n_layers / 10 + momentum + 1 / (epoch + 1)
        trial.report(loss, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return loss


def study_body(name: str, space: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "search_space": space,
        "sampler": {"name": "tpe", "options": {"seed": 2, "n_startup_trials": 4}},
        "pruner": {"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 1}},
        "max_trials": 24,
        **overrides,
    }


def test_the_objective_is_an_optuna_objective() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    assert len(study.trials) == 3


def test_an_optuna_objective_runs_unchanged_on_an_open_space(
    server: ServerProcess, db: ScratchDatabase
) -> None:
    study = create_study(server, study_body("open-objective", {}))
    with HPOClient(server.url, token=server.token) as client:
        finished = optimize(client, study["name"], objective, n_trials=30)
    assert len(finished) == 24  # the study's budget
    trials = trials_of(server, study["id"])
    for t in trials:
        expected = {"optimizer", "lr", "n_layers"} | (
            {"momentum"} if t["params"]["optimizer"] == "sgd" else set()
        )
        assert set(t["params"]) == expected, t["params"]
        assert t["user_attrs"]["branch"] == t["params"]["optimizer"]
    share = {  # the share of each branch's trials the server's median pruner stopped
        branch: sum(t["state"] == "pruned" for t in ts) / len(ts)
        for branch in ("sgd", "adam")
        if (ts := [t for t in trials if t["params"]["optimizer"] == branch])
    }
    assert share["adam"] > 0.5 and share["adam"] > share.get("sgd", 0.0), share
    assert any(t["state"] == "complete" for t in trials)
    sgd = [t for t in trials if t["params"]["optimizer"] == "sgd"]
    assert all(round(float(t["params"]["momentum"]) * 10, 6).is_integer() for t in sgd)

    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    by_number = {t["number"]: t["params"] for t in trials}
    for frozen in loaded.trials:
        assert frozen.params == by_number[frozen.number]
    assert loaded.trials[0].distributions["lr"] == optuna.distributions.FloatDistribution(
        1e-4, 1e-1, log=True
    )


PARTLY = {
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    "momentum": {
        "type": "float",
        "low": 0.0,
        "high": 0.9,
        "step": 0.1,
        "when": {"optimizer": ["sgd"]},
    },
}


def test_a_partly_declared_space_gives_declared_values_and_samples_the_rest(
    server: ServerProcess,
) -> None:
    study = create_study(server, study_body("partly-objective", PARTLY, max_trials=8))
    with HPOClient(server.url, token=server.token) as client:
        finished = optimize(client, study["id"], objective, n_trials=8)
    assert len(finished) == 8
    for t in trials_of(server, study["id"]):
        assert {"optimizer", "lr", "n_layers"} <= set(t["params"])
        assert ("momentum" in t["params"]) == (t["params"]["optimizer"] == "sgd")


def test_a_mismatched_or_inactive_declared_parameter_fails_clearly(server: ServerProcess) -> None:
    study = create_study(server, study_body("mismatch", PARTLY, max_trials=6))

    def other_choices(trial: Any) -> float:
        trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
        return 0.0

    def always_momentum(trial: Any) -> float:
        trial.suggest_float("momentum", 0.0, 0.9, step=0.1)
        return 0.0

    with HPOClient(server.url, token=server.token) as client:
        with pytest.raises(DistributionMismatch, match="declared in the study's search space"):
            optimize(client, study["id"], other_choices, n_trials=1)
        done = optimize(client, study["id"], always_momentum, n_trials=5, catch=(ValueError,))
    failed = [d for d in done if d["state"] == "failed"]
    assert failed and all("InactiveParameter" in d["fail_reason"] for d in failed)
    assert all(d["params"]["optimizer"] == "adam" for d in failed)
    assert all(d["params"]["optimizer"] == "sgd" for d in done if d["state"] == "complete")
    assert InactiveParameter.__name__ in failed[0]["fail_reason"]


def test_undeclared_mistakes_are_refused(server: ServerProcess) -> None:
    study = create_study(server, study_body("undeclared-mistakes", {}, max_trials=3))

    def twice(trial: Any) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("x", 0.0, 2.0)
        return 0.0

    def no_choice(trial: Any) -> float:
        trial.suggest_categorical("c", [None, 1])
        return 0.0

    def swapped(trial: Any) -> float:
        trial.report(0, 0.5)  # the former report(step, value) order
        return 0.0

    with HPOClient(server.url, token=server.token) as client:
        with pytest.raises(DistributionMismatch, match="suggested in this trial"):
            optimize(client, study["id"], twice, n_trials=1)
        with pytest.raises(SuggestRefused, match="'c'"):
            optimize(client, study["id"], no_choice, n_trials=1)
        with pytest.raises(TypeError, match="swapped"):
            optimize(client, study["id"], swapped, n_trials=1)
