"""Batch hand-outs: ask and claim with ``count`` lease several trials in one request."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import API, assert_error, complete, create_study

_CATEGORICAL = {
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam", "adamw", "rmsprop"]},
    "activation": {"type": "categorical", "choices": ["relu", "gelu", "tanh", "silu"]},
    "width": {"type": "categorical", "choices": [64, 128, 256, 512]},
}


def _ask_batch(
    client: TestClient, sid: int, count: int, key: str | None = None, worker: str = "w"
) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    response = client.post(
        f"{API}/studies/{sid}/trials", json={"worker_id": worker, "count": count}, headers=headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _started(client: TestClient, sid: int) -> int:
    return int(client.get(f"{API}/studies/{sid}").json()["n_trials_started"])


def test_ask_with_count_leases_that_many_trials_each_under_its_own_lease(
    client: TestClient,
) -> None:
    sid = create_study(client, max_parallel=None)["id"]
    batch = _ask_batch(client, sid, 8, worker="gpu-3")
    trials = batch["trials"]
    assert len(trials) == 8 and batch["no_trial_reason"] is None
    assert [t["number"] for t in trials] == list(range(8))
    assert len({t["id"] for t in trials}) == 8
    assert len({t["lease"]["token"] for t in trials}) == 8
    assert _started(client, sid) == 8
    for trial in trials:  # each lease is its own: completing one leaves the others running
        assert client.get(f"{API}/trials/{trial['id']}").json()["worker_id"] == "gpu-3"
    complete(client, trials[0], 1.0)
    states = [client.get(f"{API}/trials/{t['id']}").json()["state"] for t in trials]
    assert states == ["complete"] + ["running"] * 7


def test_a_batch_stops_at_the_budget_and_at_max_parallel(client: TestClient) -> None:
    sid = create_study(client, max_trials=5, max_parallel=None)["id"]
    batch = _ask_batch(client, sid, 8)
    assert len(batch["trials"]) == 5 and batch["no_trial_reason"] == "budget_spent"
    empty = _ask_batch(client, sid, 8)
    assert empty == {"trials": [], "no_trial_reason": "budget_spent"}
    assert _started(client, sid) == 5

    capped = create_study(client, name="capped", max_trials=20, max_parallel=3)["id"]
    batch = _ask_batch(client, capped, 8)
    assert len(batch["trials"]) == 3 and batch["no_trial_reason"] == "max_parallel"
    complete(client, batch["trials"][0], 0.5)
    again = _ask_batch(client, capped, 8)
    assert [t["number"] for t in again["trials"]] == [3]
    assert again["no_trial_reason"] == "max_parallel"


def test_a_batch_is_idempotent_as_a_whole(client: TestClient) -> None:
    sid = create_study(client, max_parallel=None)["id"]
    first = _ask_batch(client, sid, 4, key="batch-1")
    again = _ask_batch(client, sid, 4, key="batch-1")
    assert again == first and _started(client, sid) == 4
    other = client.post(
        f"{API}/studies/{sid}/trials",
        json={"worker_id": "w", "count": 5},
        headers={"Idempotency-Key": "batch-1"},
    )
    assert_error(other, 409, "idempotency_key_reused")
    assert _started(client, sid) == 4


def test_count_is_validated_and_without_it_answers_are_unchanged(client: TestClient) -> None:
    sid = create_study(client, max_trials=1)["id"]
    for bad in (0, 65, 2.5, "8"):
        response = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w", "count": bad})
        assert_error(response, 422, "validation_error")
        response = client.post(f"{API}/trials/claim", json={"worker_id": "w", "count": bad})
        assert_error(response, 422, "validation_error")
    single = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"})
    assert single.status_code == 200 and "lease" in single.json()
    none = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"})
    assert none.status_code == 204 and none.headers["HPO-No-Trial-Reason"] == "budget_spent"


def test_a_claim_with_count_spreads_over_studies_fairly(client: TestClient) -> None:
    ids = [
        create_study(client, name=f"spread{i}", max_trials=3, max_parallel=None)["id"]
        for i in range(3)
    ]
    url = f"{API}/trials/claim"
    first = client.post(url, json={"worker_id": "w", "count": 4}).json()["trials"]
    studies = [t["study_id"] for t in first]
    assert sorted(studies[:3]) == ids  # one from each, then round again
    rest = client.post(url, json={"worker_id": "w", "count": 64}).json()
    assert len(rest["trials"]) == 9 - 4
    assert rest["no_trial_reason"] is None  # a claim spans studies: no one reason
    assert [_started(client, sid) for sid in ids] == [3, 3, 3]
    assert client.post(url, json={"worker_id": "w", "count": 2}).json()["trials"] == []
    numbers = sorted((t["study_id"], t["number"]) for t in first + rest["trials"])
    assert numbers == [(sid, n) for sid in ids for n in range(3)]


def test_a_claim_with_count_is_idempotent_and_honours_filters(client: TestClient) -> None:
    mlp = {"name": "mlp_classifier", "dataset": "digits", "epochs": 2}
    a = create_study(client, name="a", task=mlp, max_parallel=None)["id"]
    create_study(client, name="b", task={"name": "resnet"}, max_parallel=None)
    url = f"{API}/trials/claim"
    body = {"worker_id": "w", "count": 6, "tasks": ["mlp_classifier"]}
    headers = {"Idempotency-Key": "claim-7"}
    got = client.post(url, json=body, headers=headers).json()
    assert {t["study_id"] for t in got["trials"]} == {a} and len(got["trials"]) == 6
    assert client.post(url, json=body, headers=headers).json() == got
    assert _started(client, a) == 6


def _trained(client: TestClient, sid: int, n: int, seed: int) -> None:
    """Complete ``n`` trials with a score that has one best configuration, so TPE's model
    concentrates on it."""
    rng = random.Random(seed)
    for trial in _ask_batch(client, sid, n)["trials"]:
        p = trial["params"]
        score = (
            (p["optimizer"] != "adam")
            + (p["activation"] != "gelu")
            + abs(math.log2(p["width"] / 256))
            + rng.random() * 0.01
        )
        complete(client, trial, score)


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_a_batch_of_eight_never_repeats_a_configuration(client: TestClient, sampler: str) -> None:
    """64 configurations: nothing forces a repeat in a batch of 8, after the model has
    concentrated on one best configuration (each running trial is a pending point)."""
    for seed in range(3):
        sid = create_study(
            client,
            name=f"diverse-{sampler}-{seed}",
            search_space=_CATEGORICAL,
            sampler={"name": sampler, "options": {"seed": seed, "n_startup_trials": 10}},
            pruner={"name": "none"},
            task={"name": "own-objective"},
            max_trials=None,
            max_parallel=None,
        )["id"]
        _trained(client, sid, 24, seed)
        for _ in range(3):
            batch = _ask_batch(client, sid, 8)["trials"]
            configs = [tuple(sorted(t["params"].items())) for t in batch]
            assert len(set(configs)) == 8, configs
            for trial in batch:
                complete(client, trial, 3.0)
