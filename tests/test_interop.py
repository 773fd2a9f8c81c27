"""Optuna reads the service's database unchanged and sees what the API shows."""

from __future__ import annotations

import math

import optuna
from fastapi.testclient import TestClient

from tests.api.helpers import API, ask, complete, create_study, report
from tests.support import ScratchDatabase


def _api_state(state: optuna.trial.TrialState) -> str:
    return {
        "COMPLETE": "complete",
        "PRUNED": "pruned",
        "FAIL": "failed",
        "RUNNING": "running",
        "WAITING": "waiting",
    }[state.name]


def test_load_study_sees_what_the_api_shows(client: TestClient, db: ScratchDatabase) -> None:
    created = create_study(client, name="interop", metric_names=["val_loss"])
    sid = created["id"]
    # Optuna's study names are unique across the database: the service prefixes the team's.
    assert created["name"] == "interop" and created["optuna_study_name"] == "tests/interop"
    done = ask(client, sid)
    for step, value in enumerate([0.9, 0.6, 0.4]):
        report(client, done, step, value)
    complete(client, done, 0.4)
    pruned = ask(client, sid)
    report(client, pruned, 0, 2.0)
    client.post(
        f"{API}/trials/{pruned['id']}/complete",
        json={"lease_token": pruned["lease"]["token"], "state": "pruned"},
    )
    failed = ask(client, sid)
    client.post(
        f"{API}/trials/{failed['id']}/complete",
        json={"lease_token": failed["lease"]["token"], "state": "failed", "reason": "nan"},
    )
    ask(client, sid)  # running
    client.post(f"{API}/studies/{sid}/trials/enqueue", json={"params": {"lr": 0.001}})  # waiting

    storage = optuna.storages.RDBStorage(db.url_string)
    study = optuna.load_study(study_name=created["optuna_study_name"], storage=storage)
    optuna_study_id = storage.get_study_id_from_name(study.study_name)
    api_trials = client.get(f"{API}/studies/{sid}/trials", params={"include_intermediate": True})
    by_number = {t["number"]: t for t in api_trials.json()["items"]}
    assert len(study.trials) == len(by_number) == 5
    for trial in study.trials:
        api = by_number[trial.number]
        trial_id = storage.get_trial_id_from_study_id_trial_number(optuna_study_id, trial.number)
        assert trial_id == api["id"]
        assert _api_state(trial.state) == api["state"]
        if trial.state == optuna.trial.TrialState.WAITING:  # enqueued, not started yet:
            # Optuna keeps the queued values in a system attribute; the API shows them as params
            assert trial.params == {}
            assert trial.system_attrs["fixed_params"] == api["params"] == {"lr": 0.001}
        else:
            assert trial.params == api["params"]
        assert trial.values == api["values"]
        curve = {v["step"]: v["value"] for v in api["intermediate_values"]}
        assert trial.intermediate_values == curve
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.best_trial.number == done["number"] and math.isclose(study.best_value, 0.4)
    assert study.metric_names == ["val_loss"]
    assert study.user_attrs == {"owner": "vision-team"}
    waiting = [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]
    assert waiting[0].system_attrs["fixed_params"] == {"lr": 0.001}


def test_optuna_reads_a_service_study_like_its_own(client: TestClient, db: ScratchDatabase) -> None:
    """A plain Optuna client on the same database reads the history the service wrote."""
    created = create_study(client, name="shared")
    sid = created["id"]
    trials = [ask(client, sid) for _ in range(2)]
    for trial, value in zip(trials, (0.5, 0.2), strict=True):
        complete(client, trial, value)
    study = optuna.load_study(study_name=created["optuna_study_name"], storage=db.url_string)
    assert [t.value for t in study.trials] == [0.5, 0.2]
    assert study.best_params == trials[1]["params"]
    assert study.best_trial.distributions["lr"] == optuna.distributions.FloatDistribution(
        1e-5, 0.1, log=True
    )
    assert {t.state for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))} == {
        optuna.trial.TrialState.COMPLETE
    }
