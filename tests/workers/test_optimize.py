"""The Python client's optimize loop against a real server: your own objective over HTTP."""

from __future__ import annotations

import optuna
import pytest

from tests.support import ServerProcess
from tests.workers.conftest import create_study, get, trials_of
from workers.client import HPOClient
from workers.optimize import ClientTrial, optimize


def quadratic_study(name: str, **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "name": name,
        "search_space": {"x": {"type": "float", "low": -4.0, "high": 4.0}},
        "sampler": {"name": "tpe", "options": {"seed": 0, "n_startup_trials": 5}},
        "pruner": {"name": "median", "options": {"n_startup_trials": 3, "n_warmup_steps": 1}},
        "max_trials": 25,
    }
    body.update(overrides)
    return body


def test_optimize_finds_the_minimum_and_prunes(server: ServerProcess) -> None:
    study = create_study(server, quadratic_study("quadratic"))

    def objective(trial: ClientTrial) -> float:
        x: float = trial.params["x"]
        for step in range(4):
            trial.report((x - 1.0) ** 2 + 1.0 / (step + 1), step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("x_seen", x)
        return (x - 1.0) ** 2

    with HPOClient(server.url, token=server.token) as client:
        finished = optimize(client, study["name"], objective, n_trials=40)
    assert len(finished) == 25  # stopped at the study's budget, not at n_trials
    trials = trials_of(server, study["id"])
    states = [t["state"] for t in trials]
    assert states.count("complete") + states.count("pruned") == 25
    assert "pruned" in states
    best = get(server, f"/studies/{study['id']}/best")["best"]
    assert abs(best["params"]["x"] - 1.0) < 0.5
    assert best["user_attrs"]["x_seen"] == best["params"]["x"]


def test_a_failing_objective_fails_its_trial(server: ServerProcess) -> None:
    study = create_study(server, quadratic_study("failing", max_trials=3, pruner={"name": "none"}))

    def objective(trial: ClientTrial) -> float:
        raise ValueError("diverged")

    with (
        HPOClient(server.url, token=server.token) as client,
        pytest.raises(ValueError, match="diverged"),
    ):
        optimize(client, study["id"], objective, n_trials=3)
    failed = trials_of(server, study["id"])[0]
    assert failed["state"] == "failed" and "diverged" in failed["fail_reason"]
    with HPOClient(server.url, token=server.token) as client:
        done = optimize(client, study["id"], objective, n_trials=2, catch=(ValueError,))
    assert [d["state"] for d in done] == ["failed", "failed"]
