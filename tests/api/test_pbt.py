"""Population-based training (the ``pbt`` scheduler) over the API, against a hand-computed
example, on both checkpoint stores (PostgreSQL and files).

population 4, interval 2, quantile 0.25: decisions on the reports of steps 1, 3, ...; with 4
trials at a step the bottom and the top are one trial each (floor(4 * 0.25) = 1).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from fastapi.testclient import TestClient
from optuna.trial import TrialState

from service.app import create_app
from tests.api.helpers import API, ask, assert_error, complete, create_study, report
from tests.conftest import server_settings
from tests.support import ScratchDatabase

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "width": {"type": "int", "low": 8, "high": 64},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
}
PBT: dict[str, Any] = {
    "name": "pbt",
    "options": {
        "population": 4,
        "interval": 2,
        "quantile": 0.25,
        "mutable": ["lr", "act"],
        "perturb": [0.5, 2.0],
        "resample_probability": 0.0,
        "seed": 7,
    },
}


@pytest.fixture(params=["postgres", "files"])
def client(request: pytest.FixtureRequest, db: ScratchDatabase, tmp_path: Path) -> Iterator[Any]:
    directory = tmp_path / "checkpoints" if request.param == "files" else None
    app = create_app(server_settings(db, tmp_path, checkpoint_dir=directory))
    with TestClient(app, headers=db.auth_headers) as test_client:
        yield test_client


def _study(client: TestClient, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "search_space": SPACE,
        "sampler": {"name": "random", "options": {"seed": 1}},
        "pruner": {"name": "none"},
        "scheduler": PBT,
        "task": None,
        "max_trials": None,
        "max_parallel": None,
        **overrides,
    }
    return create_study(client, **body)


def _put_checkpoint(client: TestClient, trial: dict[str, Any], step: int, data: bytes) -> None:
    headers = {"X-Lease-Token": trial["lease"]["token"], "X-Checkpoint-Step": str(step)}
    response = client.put(f"{API}/trials/{trial['id']}/checkpoint", content=data, headers=headers)
    assert response.status_code == 200, response.text


def _get_checkpoint(client: TestClient, trial: dict[str, Any]) -> Any:
    headers = {"X-Lease-Token": trial["lease"]["token"]}
    return client.get(f"{API}/trials/{trial['id']}/checkpoint", headers=headers)


def _trial(client: TestClient, trial_id: int) -> dict[str, Any]:
    return dict(client.get(f"{API}/trials/{trial_id}").json())


def _prune(client: TestClient, trial: dict[str, Any]) -> None:
    response = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": trial["lease"]["token"], "state": "pruned"},
    )
    assert response.status_code == 200, response.text


def test_the_bottom_trial_is_replaced_by_a_child_of_the_top(
    client: TestClient, db: ScratchDatabase
) -> None:
    study = _study(client)
    sid = study["id"]
    assert study["scheduler"]["name"] == "pbt"
    roots = [ask(client, sid) for _ in range(4)]
    assert [t["number"] for t in roots] == [0, 1, 2, 3]
    assert all(t["parent_trial_id"] is None for t in roots)
    # The sampler makes the population and no more: nothing to hand out now.
    fifth = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w-1"})
    assert fifth.status_code == 204, fifth.text

    blobs = {t["id"]: os.urandom(5000) for t in roots}
    for trial, value in zip(roots, [0.1, 0.2, 0.3, 0.9], strict=True):
        assert not report(client, trial, 0, value + 0.5)["should_prune"]  # step 0: no decision
        _put_checkpoint(client, trial, 1, blobs[trial["id"]])
    # Step 1 decides. Trials 0-2 are ranked against the others' latest values (step 0 for
    # those not there yet): trial 3 (1.4 at step 0) is the bottom, not them. Then trial 3
    # reports 0.9 at step 1, the worst of the four at step 1: it is the bottom.
    answers = [
        report(client, t, 1, v)["should_prune"]
        for t, v in zip(roots, [0.1, 0.2, 0.3, 0.9], strict=True)
    ]
    assert answers == [False, False, False, True]  # n = 4: trial 3 is the bottom
    best, worst = roots[0], roots[3]

    trials = client.get(f"{API}/studies/{sid}/trials").json()["items"]
    children = [t for t in trials if t["parent_trial_id"] is not None]
    assert len(children) == 1
    child = children[0]
    assert (child["number"], child["state"]) == (4, "waiting")
    assert child["parent_trial_id"] == best["id"]  # the top is trial 0 alone
    assert (child["started_from_step"], child["replaced_trial_id"]) == (2, worst["id"])
    # Explore: width copied; lr times 0.5 or 2 (resample_probability 0); act a neighbour.
    assert child["params"]["width"] == best["params"]["width"]
    ratio = child["params"]["lr"] / best["params"]["lr"]
    assert (
        ratio == pytest.approx(0.5)
        or ratio == pytest.approx(2.0)
        or child["params"]["lr"]
        in (
            1e-4,
            1.0,
        )
    )
    order = ["relu", "tanh", "gelu"]
    moved = abs(order.index(child["params"]["act"]) - order.index(best["params"]["act"]))
    assert moved <= 1

    # A repeated report is answered the same, and starts no second child.
    assert report(client, worst, 1, 0.9)["should_prune"] is True
    trials = client.get(f"{API}/studies/{sid}/trials").json()["items"]
    assert len(trials) == 5
    _prune(client, worst)

    # The child's checkpoint is a server-side copy of its parent's.
    meta = client.get(f"{API}/trials/{child['id']}/checkpoint/meta").json()
    digest = hashlib.sha256(blobs[best["id"]]).hexdigest()
    assert (meta["step"], meta["sha256"]) == (1, digest)

    # It is handed out next, resuming at step 2 from its parent's bytes.
    leased = ask(client, sid)
    assert leased["id"] == child["id"]
    assert (leased["resume_from_step"], leased["started_from_step"]) == (2, 2)
    assert leased["parent_trial_id"] == best["id"]
    assert leased["params"] == child["params"]
    got = _get_checkpoint(client, leased)
    assert got.status_code == 200 and got.content == blobs[best["id"]]

    # Neither trial's later checkpoint reaches the other's.
    _put_checkpoint(client, best, 3, b"parent, step 3")
    assert _get_checkpoint(client, leased).content == blobs[best["id"]]
    _put_checkpoint(client, leased, 3, b"child, step 3")
    assert _get_checkpoint(client, best).content == b"parent, step 3"

    # Everything finishes: the study completes (no new trial is sampled after the population).
    for trial in (roots[0], roots[1], roots[2], leased):
        complete(client, trial, 0.05)
    done = client.get(f"{API}/studies/{sid}").json()
    assert done["state"] == "completed", done
    assert done["trial_counts"] == {
        "waiting": 0,
        "running": 0,
        "complete": 4,
        "pruned": 1,
        "failed": 0,
        "paused": 0,
    }
    # Exports and the change feed carry the lineage.
    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}/studies/{sid}/trials.csv").text)))
    assert [(r["parent_trial_id"], r["started_from_step"]) for r in rows] == [("", "")] * 4 + [
        (str(best["id"]), "2")
    ]
    feed = client.get(f"{API}/studies/{sid}/changes").json()["items"]
    assert {t["number"]: t["parent_trial_id"] for t in feed}[4] == best["id"]
    loaded = optuna.load_study(study_name=study["optuna_study_name"], storage=db.url_string)
    assert [t.state for t in loaded.trials] == [TrialState.COMPLETE] * 3 + [
        TrialState.PRUNED,
        TrialState.COMPLETE,
    ]
    assert loaded.trials[4].params == child["params"]


def _release(client: TestClient, trial: dict[str, Any]) -> None:
    response = client.post(
        f"{API}/trials/{trial['id']}/release", json={"lease_token": trial["lease"]["token"]}
    )
    assert response.status_code == 204, response.text


def test_members_wait_for_the_ones_behind_and_the_bottom_is_replaced_on_resume(
    client: TestClient,
) -> None:
    sid = _study(client)["id"]
    t0, t1, t2, t3 = roots = [ask(client, sid) for _ in range(4)]
    for trial in roots:
        report(client, trial, 0, 1.0)
        _put_checkpoint(client, trial, 1, f"trial {trial['number']}".encode())
    # Step 1 decides. Each member that gets there while another is behind pauses (no
    # decision yet); the last one decides on the whole population at once.
    for trial, value in ((t0, 0.9), (t1, 0.2), (t2, 0.3)):
        answer = report(client, trial, 1, value)
        assert (answer["should_pause"], answer["should_prune"]) == (True, False)
        _release(client, trial)
        assert _trial(client, trial["id"])["state"] == "paused"
    answer = report(client, t3, 1, 0.1)  # nobody behind: t3 is the best, it goes on
    assert (answer["should_pause"], answer["should_prune"]) == (False, False)

    # The paused ones resume best first, each decided on the whole population at step 1:
    # t1 and t2 are not in the bottom (t0 is) and resume at step 2.
    for expected in (t1, t2):
        resumed = ask(client, sid)
        assert (resumed["id"], resumed["resume_from_step"]) == (expected["id"], 2)
        assert resumed["attempt"] == 1  # the same trial, no retry used
    # t0 is the bottom: it is finished, and the same ask hands out its replacement, a child of
    # t3 (the top) from t3's checkpoint.
    child = ask(client, sid)
    assert child["number"] == 4 and child["parent_trial_id"] == t3["id"]
    assert child["resume_from_step"] == 2
    assert _get_checkpoint(client, child).content == b"trial 3"
    replaced = _trial(client, t0["id"])
    assert replaced["state"] == "pruned" and replaced["lease_expires_at"] is None
    assert _trial(client, child["id"])["replaced_trial_id"] == t0["id"]
    assert client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w"}).status_code == 204


def test_no_child_without_a_checkpoint_in_the_top(client: TestClient) -> None:
    sid = _study(client)["id"]
    roots = [ask(client, sid) for _ in range(4)]
    _put_checkpoint(client, roots[3], 1, b"only the worst has one")
    answers = [
        report(client, t, 1, v)["should_prune"]
        for t, v in zip(roots, [0.1, 0.2, 0.3, 0.9], strict=True)
    ]
    assert answers == [False] * 4  # the top (trial 0) has no checkpoint: trial 3 goes on
    assert len(client.get(f"{API}/studies/{sid}/trials").json()["items"]) == 4


def test_max_trials_bounds_the_children(client: TestClient) -> None:
    sid = _study(client, max_trials=4)["id"]
    roots = [ask(client, sid) for _ in range(4)]
    for trial in roots:
        _put_checkpoint(client, trial, 1, b"x")
    answers = [
        report(client, t, 1, v)["should_prune"]
        for t, v in zip(roots, [0.1, 0.2, 0.3, 0.9], strict=True)
    ]
    assert answers == [False] * 4  # a child would be trial 5 of 4: the bottom goes on


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"pruner": {"name": "median"}}, ["pruner"]),
        ({"directions": ["minimize", "minimize"]}, ["directions"]),
        (
            {"scheduler": {"name": "pbt", "options": {"mutable": ["momentum"]}}},
            ["scheduler", "options", "mutable", 0],
        ),
        ({"scheduler": {"name": "pbt", "options": {}}}, None),
        ({"scheduler": {"name": "pbt", "options": {"mutable": ["lr"], "quantile": 0.7}}}, None),
        ({"scheduler": {"name": "bohb", "options": {"mutable": ["lr"]}}}, None),
    ],
)
def test_bad_schedulers_are_refused(
    client: TestClient, overrides: dict[str, Any], loc: list[Any] | None
) -> None:
    body = {
        "name": "bad-pbt",
        "directions": ["minimize"],
        "search_space": SPACE,
        "scheduler": PBT,
        **overrides,
    }
    response = client.post(f"{API}/studies", json=body)
    error = assert_error(response, 422, response.json()["error"]["code"])
    if loc is not None:
        assert loc in [d["loc"] for d in error["details"]], error
    assert client.get(f"{API}/studies", params={"name": "bad-pbt"}).json()["items"] == []
