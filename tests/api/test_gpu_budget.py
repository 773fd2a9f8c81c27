"""GPU-hour budgets: each attempt's device and wall time, ``max_gpu_hours``, ``/teams/usage``.

These run on a CPU machine: the clients *declare* ``device: "cuda:0"`` in their asks (a
stand-in for a GPU worker; the server only records what a worker says). GPU time is checked
exactly against the attempts' start and end timestamps in PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.auth.service import issue_token
from service.cli.study_summary import gpu_hours_line
from tests.api.helpers import API, assert_error, study_body
from tests.support import ScratchDatabase


def _study(client: TestClient, name: str, **overrides: Any) -> dict[str, Any]:
    body = study_body(
        name,
        sampler={"name": "random", "options": {"seed": 1}},
        pruner={"name": "none", "options": {}},
        task=None,
        max_parallel=None,
        **overrides,
    )
    response = client.post(f"{API}/studies", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _ask(client: TestClient, study_id: int, **device: Any) -> dict[str, Any]:
    response = client.post(f"{API}/studies/{study_id}/trials", json={"worker_id": "w", **device})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _call(client: TestClient, trial: dict[str, Any], verb: str, **body: Any) -> Any:
    response = client.post(
        f"{API}/trials/{trial['id']}/{verb}", json={"lease_token": trial["lease"]["token"], **body}
    )
    assert response.status_code in (200, 204), response.text
    return response.json() if response.status_code == 200 else None


def _attempts(engine: Engine, study_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT trial_id, device, gpus, started_at, ended_at, outcome"
                " FROM hpo_trial_attempts WHERE study_id = :s ORDER BY attempt_id"
            ),
            {"s": study_id},
        ).mappings()
        return [dict(r) for r in rows]


def _gpu_seconds(attempts: list[dict[str, Any]]) -> float:
    return float(
        sum(a["gpus"] * (a["ended_at"] - a["started_at"]).total_seconds() for a in attempts)
    )


def _study_state(client: TestClient, study_id: int) -> dict[str, Any]:
    response = client.get(f"{API}/studies/{study_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def _wait(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_gpu_seconds_are_summed_over_every_attempt(client: TestClient, engine: Engine) -> None:
    """Complete, fail, release and lease expiry each end an attempt; its GPUs x wall time is
    added, a CPU attempt or one that said no device is not; the study shows the exact sum."""
    study = _study(client, "gpu-sum", lease_seconds=1, max_retries=3)
    sid = study["id"]
    done = _ask(client, sid, device="cuda:0")
    time.sleep(0.2)
    _call(client, done, "complete", values=[1.0])
    failed = _ask(client, sid, device="cuda:1", gpus=2)
    time.sleep(0.1)
    _call(client, failed, "complete", state="failed", reason="boom")
    released = _ask(client, sid, device="cuda:0")
    _call(client, released, "release")
    again = _ask(client, sid, device="cuda:0")  # the released trial, from the queue
    assert again["id"] == released["id"]
    # No heartbeat: its lease expires after 1 s and the reaper (every 0.2 s) ends the attempt.
    _wait(lambda: _attempts(engine, sid)[-1]["ended_at"] is not None)
    on_cpu = _ask(client, sid, device="cpu")
    _call(client, on_cpu, "complete", values=[2.0])
    unsaid = _ask(client, sid)
    _call(client, unsaid, "complete", values=[3.0])

    attempts = _attempts(engine, sid)
    assert [(a["device"], a["gpus"], a["outcome"]) for a in attempts] == [
        ("cuda:0", 1, "complete"),
        ("cuda:1", 2, "fail"),
        ("cuda:0", 1, "released"),
        ("cuda:0", 1, "expired"),
        ("cpu", 0, "complete"),
        (None, 0, "complete"),
    ]
    expired = attempts[3]
    assert expired["ended_at"] - expired["started_at"] == dt.timedelta(seconds=1)  # its lease
    assert attempts[0]["ended_at"] - attempts[0]["started_at"] >= dt.timedelta(seconds=0.2)
    shown = _study_state(client, sid)["gpu_hours_used"] * 3600
    assert abs(shown - _gpu_seconds(attempts)) < 1e-6
    summary = client.get(f"{API}/studies/summary").json()["items"]
    assert abs(summary[0]["gpu_hours_used"] * 3600 - _gpu_seconds(attempts)) < 1e-6


def test_a_running_attempt_counts_up_to_now(client: TestClient, engine: Engine) -> None:
    study = _study(client, "gpu-now")
    trial = _ask(client, study["id"], device="cuda:0")
    time.sleep(0.3)
    used = _study_state(client, study["id"])["gpu_hours_used"] * 3600
    (attempt,) = _attempts(engine, study["id"])
    assert attempt["ended_at"] is None
    assert 0.3 <= used < 5
    _call(client, trial, "complete", values=[1.0])
    (attempt,) = _attempts(engine, study["id"])
    assert (
        abs(_study_state(client, study["id"])["gpu_hours_used"] * 3600 - _gpu_seconds([attempt]))
        < 1e-6
    )


def test_a_spent_gpu_budget_stops_the_study_and_a_raised_one_resumes_it(
    client: TestClient, engine: Engine
) -> None:
    """At max_gpu_hours: no hand-out, running trials told to stop at their next heartbeat or
    report, handed-back and queued trials finished as pruned, the study completed. Raising
    the budget lets it run again."""
    budget_s = 1.0
    study = _study(client, "gpu-budget", max_gpu_hours=budget_s / 3600, max_trials=20)
    sid = study["id"]
    first = _ask(client, sid, device="cuda:0")
    second = _ask(client, sid, device="cuda:0")
    queued = client.post(f"{API}/studies/{sid}/trials/enqueue", json={"params": {"lr": 0.01}})
    assert queued.status_code == 201, queued.text
    assert _call(client, first, "heartbeat")["should_stop"] is False
    assert _call(client, second, "report", step=0, value=0.5)["should_stop"] is False
    time.sleep(0.6)  # two GPUs' attempts for 0.6 s each: 1.2 GPU-seconds > 1

    refused = client.post(f"{API}/studies/{sid}/trials", json={"worker_id": "w", "device": "cpu"})
    assert refused.status_code == 204 and refused.headers["HPO-No-Trial-Reason"] == "budget_spent"
    assert _call(client, first, "heartbeat")["should_stop"] is True
    assert _call(client, second, "report", step=1, value=0.25)["should_stop"] is True
    assert_error(
        client.post(f"{API}/studies/{sid}/trials/enqueue", json={"params": {}}),
        409,
        "invalid_state",
    )
    _call(client, first, "release")  # the workers checkpoint and hand their trials back
    _call(client, second, "release")

    trials = {t["id"]: t for t in client.get(f"{API}/studies/{sid}/trials").json()["items"]}
    assert {t["state"] for t in trials.values()} == {"pruned"}
    with engine.connect() as conn:  # pruned at its last reported value (as Optuna shows it)
        stored = conn.execute(
            text("SELECT trial_id, value FROM trial_values WHERE trial_id = ANY(:ids)"),
            {"ids": list(trials)},
        ).all()
    assert [tuple(r) for r in stored] == [(second["id"], 0.25)]
    shown = _study_state(client, sid)
    assert shown["state"] == "completed"
    assert shown["gpu_hours_used"] * 3600 >= budget_s
    assert abs(shown["gpu_hours_used"] * 3600 - _gpu_seconds(_attempts(engine, sid))) < 1e-6
    assert gpu_hours_line(shown).endswith(f" of {budget_s / 3600:g} GPU-hours used")  # study show

    patched = client.patch(f"{API}/studies/{sid}", json={"max_gpu_hours": 1.0})
    assert patched.status_code == 200, patched.text
    assert patched.json()["state"] == "running" and patched.json()["max_gpu_hours"] == 1.0
    resumed = _ask(client, sid, device="cuda:0")
    assert _call(client, resumed, "heartbeat")["should_stop"] is False


def test_an_expired_lease_of_a_spent_study_ends_it(client: TestClient) -> None:
    """A worker that dies after the budget is used: the reaper ends its attempt and the study
    completes (its trial finished as pruned), with nobody asking for a trial."""
    study = _study(client, "gpu-expiry", max_gpu_hours=0.3 / 3600, lease_seconds=1)
    _ask(client, study["id"], device="cuda:0")
    done = _wait(lambda: _study_state(client, study["id"])["state"] == "completed")
    assert done
    (trial,) = client.get(f"{API}/studies/{study['id']}/trials").json()["items"]
    assert trial["state"] == "pruned"


def test_device_and_budget_inputs_are_checked(client: TestClient) -> None:
    study = _study(client, "gpu-inputs")
    asks = f"{API}/studies/{study['id']}/trials"
    assert_error(client.post(asks, json={"worker_id": "w", "gpus": 1}), 422, "validation_error")
    assert_error(
        client.post(asks, json={"worker_id": "w", "device": "cpu", "gpus": 2}),
        422,
        "validation_error",
    )
    assert_error(
        client.post(asks, json={"worker_id": "w", "device": "cuda 0"}), 422, "validation_error"
    )
    body = study_body("gpu-bad", max_gpu_hours=0)
    assert_error(client.post(f"{API}/studies", json=body), 422, "validation_error")
    patched = client.patch(f"{API}/studies/{study['id']}", json={"max_gpu_hours": -1})
    assert_error(patched, 422, "validation_error")


def test_team_usage_is_per_team_admin_only_and_checks_its_period(
    client: TestClient, db: ScratchDatabase, engine: Engine
) -> None:
    mine = _study(client, "usage-mine")
    trial = _ask(client, mine["id"], device="cuda:0", gpus=2)
    time.sleep(0.2)
    _call(client, trial, "complete", values=[1.0])
    cpu = _ask(client, mine["id"], device="cpu")
    _call(client, cpu, "complete", values=[1.0])
    other_admin = {"Authorization": f"Bearer {issue_token(db.url, 'usage-other', 'admin')}"}
    other = client.post(f"{API}/studies", json=study_body("usage-theirs"), headers=other_admin)
    assert other.status_code == 201, other.text

    gpu_attempt = _attempts(engine, mine["id"])[0]
    answer = client.get(f"{API}/teams/usage")
    assert answer.status_code == 200, answer.text
    (team,) = answer.json()["teams"]  # an admin sees its own team only
    assert team["team"] == "tests"
    assert abs(team["gpu_hours"] * 3600 - _gpu_seconds([gpu_attempt])) < 1e-6
    assert (team["trials_started"], team["attempts_started"], team["studies"]) == (2, 2, 1)
    theirs = client.get(f"{API}/teams/usage", headers=other_admin).json()["teams"]
    assert theirs == [
        {
            "team": "usage-other",
            "gpu_hours": 0.0,
            "trials_started": 0,
            "attempts_started": 0,
            "studies": 0,
        }
    ]

    # A period that starts 0.1 s into the GPU attempt counts only the rest of it.
    since = gpu_attempt["started_at"] + dt.timedelta(seconds=0.1)
    cut = client.get(f"{API}/teams/usage", params={"since": since.isoformat()}).json()
    expected = 2 * (gpu_attempt["ended_at"] - since).total_seconds()
    assert abs(cut["teams"][0]["gpu_hours"] * 3600 - expected) < 1e-6
    assert cut["teams"][0]["trials_started"] == 1  # the CPU trial started in the period

    reader = {"Authorization": f"Bearer {issue_token(db.url, 'tests', 'read')}"}
    assert_error(client.get(f"{API}/teams/usage", headers=reader), 403, "forbidden")
    assert_error(
        client.get(f"{API}/teams/usage", params={"since": "yesterday"}), 422, "validation_error"
    )
    backwards = {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert_error(client.get(f"{API}/teams/usage", params=backwards), 422, "invalid_input")
