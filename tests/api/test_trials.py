"""Trial endpoints against a real PostgreSQL: hand-out, queue, reports, pruning, completion."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service import idempotency
from service.app import create_app
from tests.api.helpers import API, ask, assert_error, complete, create_study, report
from tests.conftest import server_settings
from tests.round_trips import RoundTrips
from tests.support import ScratchDatabase


def test_ask_answers_a_leased_trial(client: TestClient) -> None:
    study = create_study(client)
    trial = ask(client, study["id"], worker="gpu-07:0")
    assert trial["study_id"] == study["id"]
    assert trial["number"] == 0 and trial["attempt"] == 1 and trial["state"] == "running"
    assert list(trial["params"]) == ["lr", "n_layers", "batch_size"]
    assert 1e-5 <= trial["params"]["lr"] <= 0.1
    assert trial["params"]["n_layers"] in range(1, 7)
    assert trial["params"]["batch_size"] in [16, 32, 64, 128, 256, 512]
    assert trial["task"] == study["task"]
    lease = trial["lease"]
    assert len(lease["token"]) >= 20 and lease["heartbeat_seconds"] == 30
    assert lease["lease_seconds"] == study["lease_seconds"] == 120
    detail = client.get(f"{API}/trials/{trial['id']}").json()
    assert detail["worker_id"] == "gpu-07:0" and detail["state"] == "running"
    assert "token" not in str(detail)


def test_numbers_are_consecutive(client: TestClient) -> None:
    sid = create_study(client)["id"]
    assert [ask(client, sid)["number"] for _ in range(5)] == [0, 1, 2, 3, 4]


def test_ask_on_unknown_study_is_404_and_bad_body_is_422(client: TestClient) -> None:
    assert_error(
        client.post(f"{API}/studies/999999/trials", json={"worker_id": "w"}), 404, "not_found"
    )
    sid = create_study(client)["id"]
    assert_error(client.post(f"{API}/studies/{sid}/trials", json={}), 422, "validation_error")
    assert_error(
        client.post(f"{API}/studies/{sid}/trials", json={"worker_id": ""}), 422, "validation_error"
    )


def test_budget_and_max_parallel(client: TestClient) -> None:
    sid = create_study(client, max_trials=3, max_parallel=2)["id"]
    first, second = ask(client, sid), ask(client, sid)
    full = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"})
    assert full.status_code == 204 and full.headers["HPO-No-Trial-Reason"] == "max_parallel"
    complete(client, first, 1.0)
    third = ask(client, sid)
    complete(client, second, 2.0)
    spent = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"})
    assert spent.status_code == 204 and spent.headers["HPO-No-Trial-Reason"] == "budget_spent"
    complete(client, third, 3.0)
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["state"] == "completed" and study["n_trials_started"] == 3


def test_enqueued_trial_is_handed_out_before_new_samples(client: TestClient) -> None:
    sid = create_study(client)["id"]
    queued = client.post(
        f"{API}/studies/{sid}/trials/enqueue",
        json={"params": {"lr": 0.001, "n_layers": 2}, "user_attrs": {"source": "baseline"}},
    )
    assert queued.status_code == 201, queued.text
    assert queued.json()["state"] == "waiting"
    assert queued.json()["params"] == {"lr": 0.001, "n_layers": 2}  # what was queued
    waiting = client.get(f"{API}/studies/{sid}/trials", params={"state": "waiting"}).json()
    assert [t["params"] for t in waiting["items"]] == [{"lr": 0.001, "n_layers": 2}]
    trial = ask(client, sid)
    assert trial["id"] == queued.json()["id"] and trial["number"] == 0
    assert trial["params"]["lr"] == 0.001 and trial["params"]["n_layers"] == 2
    assert trial["params"]["batch_size"] in [16, 32, 64, 128, 256, 512]  # sampled
    assert ask(client, sid)["number"] == 1
    detail = client.get(f"{API}/trials/{trial['id']}").json()
    assert detail["user_attrs"] == {"source": "baseline"}


def test_enqueue_validation(client: TestClient) -> None:
    sid = create_study(client, max_trials=1)["id"]
    url = f"{API}/studies/{sid}/trials/enqueue"
    assert_error(client.post(url, json={"params": {"lr": 5.0}}), 422, "invalid_spec")
    assert_error(client.post(url, json={"params": {"depth": 3}}), 422, "invalid_spec")
    assert_error(client.post(url, json={"params": {"batch_size": 17}}), 422, "invalid_spec")
    assert_error(client.post(url, json={"params": "lr"}), 422, "validation_error")
    assert client.post(url, json={"params": {"lr": 0.01}}).status_code == 201
    assert_error(client.post(url, json={"params": {"lr": 0.02}}), 409, "invalid_state")
    assert_error(
        client.post(f"{API}/studies/777777/trials/enqueue", json={"params": {}}), 404, "not_found"
    )


def test_report_and_complete(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    for step, value in enumerate([0.9, 0.7, 0.5]):
        assert report(client, trial, step, value) == {
            "should_prune": False,
            "should_pause": False,
            "should_stop": False,
        }
    done = complete(client, trial, 0.45)
    assert done["state"] == "complete" and done["values"] == [0.45] and done["value"] == 0.45
    assert [iv["value"] for iv in done["intermediate_values"]] == [0.9, 0.7, 0.5]
    assert done["duration_s"] is not None and done["duration_s"] >= 0


def test_reporting_a_step_twice_keeps_one_value(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    report(client, trial, 0, 0.9)
    report(client, trial, 0, 0.1)
    values = client.get(f"{API}/trials/{trial['id']}").json()["intermediate_values"]
    assert values == [{"step": 0, "value": 0.9}]


def test_complete_is_idempotent_with_the_same_token(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    first = complete(client, trial, 0.2)
    again = complete(client, trial, 0.2)
    assert first == again
    assert client.get(f"{API}/studies/{sid}").json()["trial_counts"]["complete"] == 1


def test_calls_with_a_wrong_token_are_409_and_change_nothing(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    bad = {"lease_token": "not-the-token"}
    for path, extra in (
        ("heartbeat", {}),
        ("report", {"step": 0, "value": 1.0}),
        ("complete", {"values": [1.0]}),
        ("release", {}),
    ):
        response = client.post(f"{API}/trials/{trial['id']}/{path}", json={**bad, **extra})
        assert_error(response, 409, "lease_lost")
    detail = client.get(f"{API}/trials/{trial['id']}").json()
    assert detail["state"] == "running" and detail["intermediate_values"] == []


def test_after_completion_the_lease_is_gone(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    complete(client, trial, 0.2)
    token = trial["lease"]["token"]
    late = client.post(
        f"{API}/trials/{trial['id']}/report", json={"lease_token": token, "step": 9, "value": 1.0}
    )
    assert_error(late, 409, "trial_finished")
    other = client.post(
        f"{API}/trials/{trial['id']}/complete", json={"lease_token": token, "state": "pruned"}
    )
    assert (
        other.status_code == 200 and other.json()["state"] == "complete"
    )  # the first result stays


def test_complete_validation(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    url = f"{API}/trials/{trial['id']}/complete"
    token = trial["lease"]["token"]
    assert_error(client.post(url, json={"lease_token": token}), 422, "validation_error")
    assert_error(
        client.post(url, json={"lease_token": token, "values": []}), 422, "validation_error"
    )
    assert_error(
        client.post(url, json={"lease_token": token, "values": ["x"]}), 422, "validation_error"
    )
    assert_error(
        client.post(url, json={"lease_token": token, "values": [1.0, 2.0]}), 422, "invalid_input"
    )
    assert_error(
        client.post(url, json={"lease_token": token, "state": "pruned", "values": [1.0]}),
        422,
        "validation_error",
    )
    assert_error(
        client.post(f"{API}/trials/424242/complete", json={"lease_token": token, "values": [1.0]}),
        404,
        "not_found",
    )
    assert client.get(f"{API}/trials/{trial['id']}").json()["state"] == "running"


def test_pruned_and_failed(client: TestClient) -> None:
    sid = create_study(client)["id"]
    a, b = ask(client, sid), ask(client, sid)
    pruned = client.post(
        f"{API}/trials/{a['id']}/complete",
        json={"lease_token": a["lease"]["token"], "state": "pruned"},
    ).json()
    failed = client.post(
        f"{API}/trials/{b['id']}/complete",
        json={"lease_token": b["lease"]["token"], "state": "failed", "reason": "oom"},
    ).json()
    assert pruned["state"] == "pruned" and pruned["values"] is None
    assert failed["state"] == "failed" and failed["fail_reason"] == "oom"
    counts = client.get(f"{API}/studies/{sid}").json()["trial_counts"]
    assert counts["pruned"] == 1 and counts["failed"] == 1


def test_median_pruner_prunes_a_bad_curve(client: TestClient) -> None:
    sid = create_study(
        client, pruner={"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 1}}
    )["id"]
    for final in (0.3, 0.35):
        good = ask(client, sid)
        for step in range(4):
            assert report(client, good, step, 1.0 - 0.2 * step)["should_prune"] is False
        complete(client, good, final)
    bad = ask(client, sid)
    assert report(client, bad, 0, 5.0)["should_prune"] is False  # warm-up step
    assert report(client, bad, 1, 5.0)["should_prune"] is True
    good = ask(client, sid)
    assert report(client, good, 1, 0.1)["should_prune"] is False


def test_report_is_refused_for_multi_objective_studies(client: TestClient) -> None:
    sid = create_study(
        client,
        directions=["minimize", "maximize"],
        pruner={"name": "none"},
        sampler={"name": "nsga2"},
    )["id"]
    trial = ask(client, sid)
    response = client.post(
        f"{API}/trials/{trial['id']}/report",
        json={"lease_token": trial["lease"]["token"], "step": 0, "value": 1.0},
    )
    assert_error(response, 422, "invalid_input")
    done = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": trial["lease"]["token"], "values": [1.0, 2.0]},
    )
    assert done.status_code == 200 and done.json()["values"] == [1.0, 2.0]


def test_nan_report_is_stored_and_shown_as_null(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    response = client.post(
        f"{API}/trials/{trial['id']}/report",
        content=b'{"lease_token": "%s", "step": 0, "value": NaN}'
        % trial["lease"]["token"].encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    values = client.get(f"{API}/trials/{trial['id']}").json()["intermediate_values"]
    assert values == [{"step": 0, "value": None}]


def test_user_attrs(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    token = trial["lease"]["token"]
    response = client.post(
        f"{API}/trials/{trial['id']}/attrs", json={"lease_token": token, "user_attrs": {"seed": 7}}
    )
    assert response.status_code == 204
    done = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": token, "values": [0.1], "user_attrs": {"device": "cpu"}},
    ).json()
    assert done["user_attrs"] == {"seed": 7, "device": "cpu"}


def test_list_trials_filters_sorts_and_pages(client: TestClient) -> None:
    sid = create_study(client)["id"]
    values = [0.5, 0.1, 0.9, 0.3]
    trials = [ask(client, sid) for _ in values]
    for trial, value in zip(trials, values, strict=True):
        complete(client, trial, value)
    ask(client, sid)  # one running
    url = f"{API}/studies/{sid}/trials"
    by_number = client.get(url).json()["items"]
    assert [t["number"] for t in by_number] == [0, 1, 2, 3, 4]
    running = client.get(url, params={"state": "running"}).json()["items"]
    assert [t["number"] for t in running] == [4]
    two_states = client.get(url, params=[("state", "running"), ("state", "complete")]).json()
    assert len(two_states["items"]) == 5
    collected: list[float] = []
    cursor = None
    while True:
        params = {"sort": "value", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, params=params).json()
        collected += [t["value"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert collected == sorted(values)
    desc = client.get(url, params={"sort": "-value"}).json()["items"]
    assert [t["value"] for t in desc] == sorted(values, reverse=True)
    with_curves = client.get(url, params={"include_intermediate": "true"}).json()["items"]
    assert with_curves[0]["intermediate_values"] == []
    assert_error(client.get(url, params={"sort": "colour"}), 422, "validation_error")
    assert_error(client.get(f"{API}/studies/55555/trials"), 404, "not_found")
    page_cursor = client.get(url, params={"limit": 1}).json()["next_cursor"]
    assert_error(
        client.get(url, params={"cursor": page_cursor, "sort": "value"}), 400, "bad_cursor"
    )


def test_best_single_objective(client: TestClient) -> None:
    sid = create_study(client)["id"]
    assert client.get(f"{API}/studies/{sid}/best").json()["best"] is None
    for value in (0.4, 0.2, 0.6):
        complete(client, ask(client, sid), value)
    assert client.get(f"{API}/studies/{sid}/best").json()["best"]["value"] == 0.2
    maxi = create_study(client, name="maxi", directions=["maximize"])["id"]
    for value in (0.4, 0.2, 0.6):
        complete(client, ask(client, maxi), value)
    assert client.get(f"{API}/studies/{maxi}/best").json()["best"]["value"] == 0.6


def test_best_multi_objective_is_the_pareto_front(client: TestClient) -> None:
    sid = create_study(
        client,
        directions=["minimize", "minimize"],
        pruner={"name": "none"},
        sampler={"name": "nsga2"},
    )["id"]
    points = [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0), (3.0, 3.0), (5.0, 5.0)]
    for point in points:
        trial = ask(client, sid)
        client.post(
            f"{API}/trials/{trial['id']}/complete",
            json={"lease_token": trial["lease"]["token"], "values": list(point)},
        )
    front = client.get(f"{API}/studies/{sid}/best").json()["pareto_front"]
    assert sorted(tuple(t["values"]) for t in front) == [(1.0, 4.0), (2.0, 2.0), (4.0, 1.0)]


def test_idempotent_ask_returns_the_same_trial(client: TestClient) -> None:
    sid = create_study(client)["id"]
    headers = {"Idempotency-Key": "ask-123"}
    first = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"}, headers=headers)
    again = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"}, headers=headers)
    assert first.json() == again.json()
    assert client.get(f"{API}/studies/{sid}").json()["n_trials_started"] == 1


def test_infinite_values(client: TestClient) -> None:
    sid = create_study(client)["id"]
    trial = ask(client, sid)
    response = client.post(
        f"{API}/trials/{trial['id']}/complete",
        content=b'{"lease_token": "%s", "values": [Infinity]}' % trial["lease"]["token"].encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 200, response.text
    complete(client, ask(client, sid), 1.0)
    best = client.get(f"{API}/studies/{sid}/best").json()["best"]
    assert best["value"] == 1.0 and not math.isinf(best["value"])


def test_claim_respects_task_and_study_filters(client: TestClient) -> None:
    mlp = {"name": "mlp_classifier", "dataset": "digits", "epochs": 2}
    a = create_study(client, name="a", task=mlp)["id"]
    b = create_study(client, name="b", task={"name": "resnet"})["id"]
    url = f"{API}/trials/claim"
    got = client.post(url, json={"worker_id": "w", "tasks": ["resnet"]}).json()
    assert got["study_id"] == b and got["task"] == {"name": "resnet"}
    nothing = client.post(url, json={"worker_id": "w", "tasks": ["xgboost"]})
    assert nothing.status_code == 204
    only_a = client.post(url, json={"worker_id": "w", "study_ids": [a]}).json()
    assert only_a["study_id"] == a
    assert_error(
        client.post(url, json={"worker_id": "w", "wait_seconds": 61}), 422, "validation_error"
    )


def test_claim_is_fair_across_studies(client: TestClient) -> None:
    ids = [create_study(client, name=f"fair{i}")["id"] for i in range(3)]
    got = [
        client.post(f"{API}/trials/claim", json={"worker_id": "w"}).json()["study_id"]
        for _ in range(6)
    ]
    assert sorted(got[:3]) == ids and sorted(got[3:]) == ids


def test_complete_with_next_hands_out_the_next_trial_once(client: TestClient) -> None:
    sid = create_study(client, max_trials=2)["id"]
    first = ask(client, sid)
    body = {"lease_token": first["lease"]["token"], "values": [0.5], "next": {"worker_id": "w-9"}}
    done = client.post(f"{API}/trials/{first['id']}/complete", json=body)
    assert done.status_code == 200, done.text
    nxt = done.json()["next_trial"]
    assert done.json()["state"] == "complete" and nxt["number"] == 1 and nxt["attempt"] == 1
    again = client.post(f"{API}/trials/{first['id']}/complete", json=body).json()
    assert again["next_trial"] == nxt  # a retried complete does not start a third trial
    assert client.get(f"{API}/studies/{sid}").json()["n_trials_started"] == 2
    last = client.post(
        f"{API}/trials/{nxt['id']}/complete",
        json={"lease_token": nxt["lease"]["token"], "values": [0.4], "next": {"worker_id": "w-9"}},
    ).json()
    assert last["next_trial"] is None and last["no_trial_reason"] == "budget_spent"


def test_complete_with_next_keeps_the_result_when_the_next_hand_out_fails(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Complete and the next hand-out share one transaction; a failure in the hand-out (here
    its last statement, after the next trial was inserted) is rolled back to a savepoint, and
    the completion still commits."""
    sid = create_study(client)["id"]
    first = ask(client, sid)
    body = {"lease_token": first["lease"]["token"], "values": [0.5], "next": {"worker_id": "w"}}

    def broken(*args: Any) -> None:
        raise RuntimeError("record failed")

    with monkeypatch.context() as patch:
        patch.setattr(idempotency, "record", broken)
        with pytest.raises(RuntimeError, match="record failed"):
            client.post(f"{API}/trials/{first['id']}/complete", json=body)
    stored = client.get(f"{API}/trials/{first['id']}").json()
    assert stored["state"] == "complete" and stored["values"] == [0.5]
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["n_trials_started"] == 1  # no half-made next trial
    again = client.post(f"{API}/trials/{first['id']}/complete", json=body)
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "complete"
    assert again.json()["next_trial"]["number"] == 1  # the retry gets the next trial
    assert client.get(f"{API}/studies/{sid}").json()["n_trials_started"] == 2


def test_workers_list_shows_who_asked_and_what_they_hold(client: TestClient) -> None:
    sid = create_study(client)["id"]
    held = ask(client, sid, worker="gpu-07:0")
    finished = ask(client, sid, worker="gpu-07:1")
    complete(client, finished, 0.5)
    client.post(f"{API}/trials/claim", json={"worker_id": "cpu-1:0", "tasks": ["xgboost"]})
    workers = {w["worker_id"]: w for w in client.get(f"{API}/workers").json()["items"]}
    assert set(workers) == {"gpu-07:0", "gpu-07:1", "cpu-1:0"}
    assert [t["trial_id"] for t in workers["gpu-07:0"]["trials"]] == [held["id"]]
    assert workers["gpu-07:1"]["trials"] == [] and workers["cpu-1:0"]["tasks"] == ["xgboost"]
    page = client.get(f"{API}/workers", params={"limit": 2}).json()
    rest = client.get(f"{API}/workers", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [w["worker_id"] for w in page["items"] + rest["items"]] == sorted(workers)
    assert_error(client.get(f"{API}/workers", params={"seen_within_s": 0}), 422, "validation_error")


def test_hot_path_round_trips(db: ScratchDatabase, tmp_path: Path, round_trips: RoundTrips) -> None:
    """What ask, complete and complete-with-next cost in database round trips once warm
    (statements prepared, token and study cached): a regression here shows as a new round trip.
    Each transaction also has psycopg2's BEGIN, which is not counted."""

    settings = server_settings(db, tmp_path, auth_cache_s=300, reaper_interval_s=300)
    with TestClient(create_app(settings), headers=db.auth_headers) as client:
        sid = create_study(client)["id"]

        cost = round_trips.cost

        def complete_next(trial: dict[str, Any], value: float) -> Any:
            token, nxt = trial["lease"]["token"], {"worker_id": "w"}
            body = {"lease_token": token, "values": [value], "next": nxt}
            done = client.post(f"{API}/trials/{trial['id']}/complete", json=body)
            done.raise_for_status()
            return done.json()["next_trial"]

        # Warm-up: prepares every statement, caches the token and the study, records worker w.
        complete(client, complete_next(ask(client, sid, worker="w"), 0.1), 0.2)
        assert cost(lambda: ask(client, sid, worker="w")) == (2, 1)  # lock+read, insert
        trial = ask(client, sid, worker="w")
        assert cost(lambda: complete(client, trial, 0.3)) == (1, 1)  # finish
        trial = ask(client, sid, worker="w")
        # finish, savepoint+lock+read, insert, the idempotency record (so that a repeated
        # complete gets the same next trial): four round trips, one commit
        assert cost(lambda: complete_next(trial, 0.4)) == (4, 1)


def test_a_float_parameter_at_zero_reads_back_as_a_float(client: TestClient) -> None:
    space = {
        "x": {"type": "float", "low": -1.0, "high": 1.0},
        "n": {"type": "int", "low": 0, "high": 3},
    }
    sid = create_study(client, search_space=space, task={"name": "own"})["id"]
    client.post(f"{API}/studies/{sid}/trials/enqueue", json={"params": {"x": 0.0, "n": 0}})
    trial = ask(client, sid)
    complete(client, trial, 1.0)
    params = client.get(f"{API}/trials/{trial['id']}").json()["params"]
    assert params == {"x": 0.0, "n": 0}
    assert isinstance(params["x"], float) and isinstance(params["n"], int)
