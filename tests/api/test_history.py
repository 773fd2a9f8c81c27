"""The read models against a real PostgreSQL: overview, history, change feed, learning curves,
importances and exports, on studies with complete, pruned, failed, running and waiting trials."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.app import create_app
from service.history import service as history_service
from service.history.curves import downsample
from service.trials.pareto import pareto_front_mask
from tests.api.helpers import API, ask, assert_error, complete, create_study, report
from tests.conftest import server_settings
from tests.round_trips import RoundTrips
from tests.support import ScratchDatabase

QUIET = {"sampler": {"name": "random", "options": {"seed": 1}}, "pruner": {"name": "none"}}


def finish(
    client: TestClient, trial: dict[str, Any], state: str, reason: str | None = None
) -> None:
    body: dict[str, Any] = {"lease_token": trial["lease"]["token"], "state": state}
    if reason is not None:
        body["reason"] = reason
    response = client.post(f"{API}/trials/{trial['id']}/complete", json=body)
    assert response.status_code == 200, response.text


def complete_values(client: TestClient, trial: dict[str, Any], values: list[float]) -> None:
    response = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": trial["lease"]["token"], "values": values},
    )
    assert response.status_code == 200, response.text


def mixed_study(client: TestClient, name: str = "mixed") -> tuple[int, dict[str, dict[str, Any]]]:
    """Trials 0..6: complete 5.0, complete 3.0, pruned, complete 4.0, failed, complete 1.0,
    running; plus one waiting (enqueued). Trials 0, 2 and 6 have learning curves."""
    sid = create_study(client, name=name, max_trials=None, **QUIET)["id"]
    trials = [ask(client, sid, worker=f"w-{i % 2}") for i in range(7)]
    for step, value in enumerate([9.0, 7.0, 6.0, 5.0]):
        report(client, trials[0], step, value)
    complete(client, trials[0], 5.0)
    complete(client, trials[1], 3.0)
    report(client, trials[2], 0, 8.0)
    report(client, trials[2], 1, 8.5)
    finish(client, trials[2], "pruned")
    complete(client, trials[3], 4.0)
    finish(client, trials[4], "failed", "nan loss")
    complete(client, trials[5], 1.0)
    report(client, trials[6], 0, 3.5)
    queued = client.post(f"{API}/studies/{sid}/trials/enqueue", json={"params": {"lr": 0.01}})
    assert queued.status_code == 201, queued.text
    named = {
        "complete": trials[0],
        "pruned": trials[2],
        "failed": trials[4],
        "running": trials[6],
        "waiting": queued.json(),
    }
    return sid, named


def all_pages(client: TestClient, url: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = client.get(url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


# ---- /studies/summary ----


def test_summary_has_counts_best_workers_and_activity(client: TestClient) -> None:
    sid, named = mixed_study(client)
    maximize = create_study(client, name="max", directions=["maximize"], **QUIET)["id"]
    for value in (0.2, 0.9, 0.5):
        complete(client, ask(client, maximize, worker="solo"), value)
    multi = create_study(client, name="multi", directions=["minimize", "maximize"], **QUIET)["id"]
    for values in ([1.0, 1.0], [2.0, 3.0], [3.0, 2.0], [0.5, 0.5]):
        complete_values(client, ask(client, multi), values)
    done = create_study(client, name="done", max_trials=1, **QUIET)["id"]
    complete(client, ask(client, done), 7.0)

    response = client.get(f"{API}/studies/summary")
    assert response.status_code == 200, response.text
    by_id = {s["id"]: s for s in response.json()["items"]}
    mixed = by_id[sid]
    assert mixed["name"] == "mixed" and mixed["state"] == "running"
    assert mixed["trial_counts"] == {
        "waiting": 1,
        "running": 1,
        "complete": 4,
        "pruned": 1,
        "failed": 1,
        "paused": 0,
    }
    assert mixed["best_value"] == 1.0 and mixed["best_trial_number"] == 5
    assert mixed["pareto_front_size"] is None
    assert mixed["running_workers"] == ["w-0"]  # trial 6 was asked by w-0
    running = client.get(f"{API}/trials/{named['running']['id']}").json()
    assert mixed["last_activity_at"] >= running["datetime_start"]
    assert by_id[maximize]["best_value"] == 0.9 and by_id[maximize]["best_trial_number"] == 1
    assert by_id[maximize]["running_workers"] == []
    assert by_id[multi]["best_value"] is None and by_id[multi]["pareto_front_size"] == 3
    assert by_id[multi]["directions"] == ["minimize", "maximize"]
    assert by_id[done]["state"] == "completed"


def test_summary_pages_cover_every_study_once(client: TestClient) -> None:
    ids = {create_study(client, name=f"s{i}", **QUIET)["id"] for i in range(5)}
    pages = all_pages(client, f"{API}/studies/summary", limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    seen = [s["id"] for page in pages for s in page]
    assert sorted(seen) == sorted(ids)
    assert_error(client.get(f"{API}/studies/summary", params={"cursor": "nope"}), 400, "bad_cursor")
    assert_error(client.get(f"{API}/studies/summary", params={"limit": 0}), 422, "validation_error")


@pytest.fixture
def cached_auth_client(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    """The token stays cached all test long, so statement counts are the endpoint's alone
    (a re-authentication after HPO_AUTH_CACHE_S costs one statement)."""
    app = create_app(server_settings(db, tmp_path, auth_cache_s=300))
    with TestClient(app, headers=db.auth_headers) as c:
        yield c


def test_summary_costs_the_same_statements_for_any_number_of_studies(
    round_trips: RoundTrips, cached_auth_client: TestClient
) -> None:
    client = cached_auth_client

    def statements() -> int:
        def summary() -> None:
            assert client.get(f"{API}/studies/summary").status_code == 200

        return round_trips.cost(summary)[0]

    def add(i: int, directions: list[str]) -> None:
        sid = create_study(client, name=f"n{i}", directions=directions, **QUIET)["id"]
        complete_values(client, ask(client, sid), [1.0] * len(directions))

    add(0, ["minimize"])
    add(1, ["minimize", "maximize"])
    few = statements()
    for i in range(2, 12):
        add(i, ["minimize"] if i % 2 else ["maximize", "minimize"])
    assert statements() == few
    assert few <= 3


# ---- /studies/{id}/history ----


def test_history_lists_finished_trials_with_best_so_far_across_pages(client: TestClient) -> None:
    sid, named = mixed_study(client)
    pages = all_pages(client, f"{API}/studies/{sid}/history", limit=2)
    items = [item for page in pages for item in page]
    assert [i["number"] for i in items] == [0, 1, 2, 3, 4, 5]  # running and waiting left out
    assert [i["state"] for i in items] == [
        "complete",
        "complete",
        "pruned",
        "complete",
        "failed",
        "complete",
    ]
    assert [i["values"] for i in items] == [[5.0], [3.0], None, [4.0], None, [1.0]]
    assert [i["best_values"] for i in items] == [[5.0], [3.0], [3.0], [3.0], [3.0], [1.0]]
    assert items[2]["id"] == named["pruned"]["id"]
    for item in items:
        assert item["duration_s"] >= 0
        assert item["datetime_complete"] >= item["datetime_start"]


def test_history_of_a_multi_objective_study_is_per_objective(client: TestClient) -> None:
    sid = create_study(client, name="mo", directions=["minimize", "maximize"], **QUIET)["id"]
    for values in ([3.0, 1.0], [1.0, 0.0], [2.0, 5.0]):
        complete_values(client, ask(client, sid), values)
    finish(client, ask(client, sid), "failed")
    items = [i for page in all_pages(client, f"{API}/studies/{sid}/history", limit=1) for i in page]
    assert [i["values"] for i in items] == [[3.0, 1.0], [1.0, 0.0], [2.0, 5.0], None]
    assert [i["best_values"] for i in items] == [[3.0, 1.0], [1.0, 1.0], [1.0, 5.0], [1.0, 5.0]]


def test_history_errors(client: TestClient) -> None:
    sid, _ = mixed_study(client)
    other = create_study(client, name="other", **QUIET)["id"]
    assert_error(client.get(f"{API}/studies/424242/history"), 404, "not_found")
    url = f"{API}/studies/{sid}/history"
    assert_error(client.get(url, params={"cursor": "%%%"}), 400, "bad_cursor")
    cursor = client.get(url, params={"limit": 1}).json()["next_cursor"]
    assert_error(
        client.get(f"{API}/studies/{other}/history", params={"cursor": cursor}), 400, "bad_cursor"
    )
    assert_error(client.get(url, params={"limit": 5000}), 422, "validation_error")


# ---- /studies/{id}/changes ----


def changes(
    client: TestClient, sid: int, since: str | None = None, **params: Any
) -> dict[str, Any]:
    query = {**params, **({"since": since} if since else {})}
    response = client.get(f"{API}/studies/{sid}/changes", params=query)
    assert response.status_code == 200, response.text
    return dict(response.json())


def drain(
    client: TestClient, sid: int, since: str | None, limit: int = 100
) -> tuple[list[int], str]:
    """Every trial id changed since ``since`` (following ``more``), and the next cursor."""
    ids: list[int] = []
    while True:
        body = changes(client, sid, since, limit=limit)
        ids += [t["id"] for t in body["items"]]
        since = body["cursor"]
        if not body["more"]:
            return ids, since


def test_changes_first_everything_then_exactly_what_changed(client: TestClient) -> None:
    sid, named = mixed_study(client)
    first = changes(client, sid)
    assert first["more"] is False and len(first["items"]) == 8
    assert {t["state"] for t in first["items"]} == {
        "complete",
        "pruned",
        "failed",
        "running",
        "waiting",
    }
    cursor = first["cursor"]
    assert changes(client, sid, cursor)["items"] == []

    running = named["running"]
    report(client, running, 1, 3.0)
    after_report = changes(client, sid, cursor)
    assert [t["id"] for t in after_report["items"]] == [running["id"]]
    cursor = after_report["cursor"]

    complete(client, running, 2.5)
    new = ask(client, sid)  # the waiting trial is handed out first
    assert new["id"] == named["waiting"]["id"]
    fresh = ask(client, sid)
    got = changes(client, sid, cursor)
    assert sorted(t["id"] for t in got["items"]) == sorted([running["id"], new["id"], fresh["id"]])
    by_id = {t["id"]: t for t in got["items"]}
    assert by_id[running["id"]]["state"] == "complete" and by_id[running["id"]]["values"] == [2.5]
    assert by_id[new["id"]]["state"] == "running"
    assert changes(client, sid, got["cursor"])["items"] == []


def test_changes_pages_a_large_batch_exactly_once(client: TestClient) -> None:
    sid = create_study(client, name="many", max_trials=None, **QUIET)["id"]
    trials = [ask(client, sid) for _ in range(7)]
    ids, cursor = drain(client, sid, None, limit=3)
    assert sorted(ids) == sorted(t["id"] for t in trials) and len(ids) == 7
    for t in trials[:4]:
        complete(client, t, 1.0)
    again, cursor = drain(client, sid, cursor, limit=3)
    assert sorted(again) == sorted(t["id"] for t in trials[:4])
    assert drain(client, sid, cursor)[0] == []


def test_changes_never_miss_a_transaction_that_commits_late(
    client: TestClient, engine: Engine
) -> None:
    sid = create_study(client, name="late", **QUIET)["id"]
    slow, quick = ask(client, sid), ask(client, sid)
    cursor = changes(client, sid)["cursor"]
    with engine.connect() as conn:
        late = conn.begin()
        # A writer that started before the next change and commits after the next poll.
        conn.execute(
            text(
                "UPDATE hpo_trials SET change_xid = (pg_current_xact_id()::text)::bigint"
                " WHERE trial_id = :id"
            ),
            {"id": slow["id"]},
        )
        complete(client, quick, 1.0)
        seen = changes(client, sid, cursor)
        assert [t["id"] for t in seen["items"]] == [quick["id"]]
        late.commit()
    caught_up = changes(client, sid, seen["cursor"])
    assert slow["id"] in [t["id"] for t in caught_up["items"]]


def test_changes_with_intermediate_values_and_errors(client: TestClient) -> None:
    sid, _ = mixed_study(client)
    body = changes(client, sid, include_intermediate=True)
    curves = {t["number"]: t["intermediate_values"] for t in body["items"]}
    assert [v["value"] for v in curves[0]] == [9.0, 7.0, 6.0, 5.0]
    assert changes(client, sid)["items"][0]["intermediate_values"] is None
    assert_error(client.get(f"{API}/studies/31337/changes"), 404, "not_found")
    url = f"{API}/studies/{sid}/changes"
    assert_error(client.get(url, params={"since": "garbage"}), 400, "bad_cursor")
    other = create_study(client, name="other", **QUIET)["id"]
    foreign = changes(client, other)["cursor"]
    assert_error(client.get(url, params={"since": foreign}), 400, "bad_cursor")


# ---- /studies/{id}/intermediate ----


def test_learning_curves_with_states_and_selection(client: TestClient) -> None:
    sid, _ = mixed_study(client)
    url = f"{API}/studies/{sid}/intermediate"
    items = [c for page in all_pages(client, url, limit=2) for c in page]
    assert [(c["number"], c["state"]) for c in items] == [
        (0, "complete"),
        (2, "pruned"),
        (6, "running"),
    ]
    assert items[0]["steps"] == [0, 1, 2, 3] and items[0]["values"] == [9.0, 7.0, 6.0, 5.0]
    chosen = client.get(url, params={"trials": "2,5"}).json()["items"]
    assert [c["number"] for c in chosen] == [2]  # trial 5 has no curve
    assert chosen[0]["values"] == [8.0, 8.5] and chosen[0]["n_points"] == 2
    assert_error(client.get(url, params={"trials": "a,b"}), 422, "validation_error")
    assert_error(client.get(url, params={"max_points": 2}), 422, "validation_error")
    assert_error(client.get(f"{API}/studies/999999/intermediate"), 404, "not_found")


def test_learning_curves_are_down_sampled_keeping_extremes(client: TestClient) -> None:
    sid = create_study(client, name="long", **QUIET)["id"]
    trial = ask(client, sid)
    values = [math.sin(step / 7) + (5.0 if step == 37 else 0.0) for step in range(120)]
    values[81] = -4.0
    for step, value in enumerate(values):
        report(client, trial, step, value)
    curve = client.get(f"{API}/studies/{sid}/intermediate", params={"max_points": 10}).json()
    item = curve["items"][0]
    assert item["n_points"] == 120 and len(item["steps"]) <= 10
    assert item["steps"][0] == 0 and item["steps"][-1] == 119
    assert 37 in item["steps"] and 81 in item["steps"]
    assert item["values"] == [values[s] for s in item["steps"]]


def test_downsample_method() -> None:
    steps = list(range(100))
    values = [float((i * 37) % 101) for i in range(100)]
    kept_steps, kept = downsample(steps, values, 12)
    assert len(kept_steps) <= 12 and kept_steps == sorted(kept_steps)
    assert kept_steps[0] == 0 and kept_steps[-1] == 99
    assert max(kept) == max(values) and min(kept) == min(values)
    assert downsample(steps[:5], values[:5], 12) == (steps[:5], values[:5])
    with_nan = [math.nan] * 50
    assert downsample(list(range(50)), with_nan, 6)[0][0] == 0
    with pytest.raises(ValueError):
        downsample(steps, values, 3)


def test_pareto_front_mask_matches_brute_force() -> None:
    import random

    rng = random.Random(3)
    for k in (2, 3):
        for directions in (["minimize"] * k, ["maximize"] + ["minimize"] * (k - 1)):
            points = [[float(rng.randint(0, 6)) for _ in range(k)] for _ in range(80)]
            signs = [1 if d == "minimize" else -1 for d in directions]

            def dominates(a: list[float], b: list[float], signs: list[int] = signs) -> bool:
                pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b, strict=True)]
                return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

            expected = [not any(dominates(q, p) for q in points) for p in points]
            assert pareto_front_mask(points, directions) == expected


# ---- /studies/{id}/importance ----


def test_importance_needs_two_complete_trials_then_is_cached(client: TestClient) -> None:
    sid = create_study(client, name="imp", **QUIET)["id"]
    url = f"{API}/studies/{sid}/importance"
    empty = client.get(url).json()
    assert empty["objectives"] == [] and empty["n_trials"] == 0 and empty["status"] == "fresh"
    complete(client, ask(client, sid), 1.0)
    assert client.get(url).json()["objectives"] == []
    for value in (0.5, 2.0, 0.25):
        complete(client, ask(client, sid), value)
    first = client.get(url).json()
    assert first["evaluator"] == "PedAnovaImportanceEvaluator" and first["status"] == "fresh"
    assert first["n_trials"] == 4 and first["computed_at"] is not None
    (objective,) = first["objectives"]
    assert set(objective["importances"]) == {"lr", "n_layers", "batch_size"}
    assert math.isclose(sum(objective["importances"].values()), 1.0, rel_tol=1e-6)
    assert list(objective["importances"].values()) == sorted(
        objective["importances"].values(), reverse=True
    )
    assert client.get(url).json()["computed_at"] == first["computed_at"]  # cached
    complete(client, ask(client, sid), 3.0)
    assert client.get(url).json()["n_trials"] == 5
    assert_error(client.get(f"{API}/studies/777777/importance"), 404, "not_found")


def test_importance_per_objective(client: TestClient) -> None:
    sid = create_study(client, name="mo-imp", directions=["minimize", "maximize"], **QUIET)["id"]
    for i in range(6):
        complete_values(client, ask(client, sid), [float(i), float(i % 3)])
    body = client.get(f"{API}/studies/{sid}/importance").json()
    assert [(o["objective"], o["direction"]) for o in body["objectives"]] == [
        (0, "minimize"),
        (1, "maximize"),
    ]


@pytest.fixture
def background_client(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    """Importances of studies above two complete trials are computed in the background."""
    app = create_app(server_settings(db, tmp_path, importance_sync_max_trials=2))
    with TestClient(app, headers=db.auth_headers) as c:
        yield c


def test_large_studies_are_computed_in_the_background(background_client: TestClient) -> None:
    client = background_client
    cache = client.app.state.history._importance  # type: ignore[attr-defined]
    sid = create_study(client, name="big", **QUIET)["id"]
    url = f"{API}/studies/{sid}/importance"
    for value in (1.0, 2.0, 3.0):
        complete(client, ask(client, sid), value)
    pending = client.get(url).json()
    assert pending["status"] == "pending" and pending["objectives"] == []
    assert cache.wait_idle(30)
    fresh = client.get(url).json()
    assert fresh["status"] == "fresh" and fresh["n_trials"] == 3
    complete(client, ask(client, sid), 0.5)
    stale = client.get(url).json()
    assert stale["status"] == "stale" and stale["n_trials"] == 3
    assert stale["objectives"] == fresh["objectives"]
    assert cache.wait_idle(30)
    final = client.get(url).json()
    assert final["status"] == "fresh" and final["n_trials"] == 4


# ---- exports ----


def test_csv_export_has_a_column_per_parameter_and_attribute(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_service, "EXPORT_CHUNK", 3)  # several chunks
    sid, named = mixed_study(client)
    attrs = client.post(
        f"{API}/trials/{named['running']['id']}/attrs",
        json={"lease_token": named["running"]["lease"]["token"], "user_attrs": {"gpu": "a100"}},
    )
    assert attrs.status_code == 204, attrs.text
    response = client.get(f"{API}/studies/{sid}/trials.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="mixed.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(r["number"]) for r in rows] == list(range(8))
    assert list(rows[0])[:7] == [
        "number",
        "id",
        "state",
        "value",
        "params_lr",
        "params_n_layers",
        "params_batch_size",
    ]
    assert rows[0]["state"] == "complete" and float(rows[0]["value"]) == 5.0
    assert rows[2]["state"] == "pruned" and rows[2]["value"] == ""
    assert rows[4]["fail_reason"] == "nan loss"
    assert rows[6]["user_attrs_gpu"] == "a100" and rows[6]["datetime_complete"] == ""
    assert rows[7]["state"] == "waiting" and rows[7]["params_lr"] == "0.01"  # as enqueued
    assert float(rows[1]["duration_s"]) >= 0 and rows[1]["attempt"] == "1"


def test_jsonl_export_is_one_trial_per_line(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_service, "EXPORT_CHUNK", 2)
    sid, _ = mixed_study(client)
    response = client.get(f"{API}/studies/{sid}/trials.jsonl")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    listed = client.get(f"{API}/studies/{sid}/trials", params={"include_intermediate": True})
    assert lines == listed.json()["items"]
    short = client.get(f"{API}/studies/{sid}/trials.jsonl", params={"include_intermediate": False})
    assert all(json.loads(x)["intermediate_values"] is None for x in short.text.splitlines())
    assert_error(client.get(f"{API}/studies/555555/trials.jsonl"), 404, "not_found")
    assert_error(client.get(f"{API}/studies/555555/trials.csv"), 404, "not_found")


def test_the_endpoints_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/studies/summary",
        "/studies/{study_id}/history",
        "/studies/{study_id}/changes",
        "/studies/{study_id}/intermediate",
        "/studies/{study_id}/importance",
        "/studies/{study_id}/events",
        "/studies/{study_id}/trials.csv",
        "/studies/{study_id}/trials.jsonl",
    ):
        assert API + path in paths, path
    assert "/dashboard" not in paths
