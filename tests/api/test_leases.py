"""Leases with real time: expiry, requeue as the same trial, retries, release, long polls."""

from __future__ import annotations

import threading
import time
from typing import Any

from fastapi.testclient import TestClient

from tests.api.helpers import API, ask, assert_error, complete, create_study, report


def _wait_for_state(
    client: TestClient, trial_id: int, state: str, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trial: dict[str, Any] = client.get(f"{API}/trials/{trial_id}").json()
        if trial["state"] == state:
            return trial
        time.sleep(0.1)
    raise AssertionError(f"trial {trial_id} never became {state}: {trial}")


def test_expired_lease_requeues_the_same_trial(client: TestClient) -> None:
    sid = create_study(client, lease_seconds=1, max_retries=2)["id"]
    first = ask(client, sid, worker="dies")
    report(client, first, 0, 0.8)
    waiting = _wait_for_state(client, first["id"], "waiting")
    assert waiting["attempt"] == 1 and waiting["intermediate_values"] == [{"step": 0, "value": 0.8}]
    second = ask(client, sid, worker="survivor")
    assert second["id"] == first["id"] and second["number"] == first["number"]
    assert second["params"] == first["params"] and second["attempt"] == 2
    assert second["lease"]["token"] != first["lease"]["token"]
    # The dead worker's token is useless now; the new one works.
    late = client.post(
        f"{API}/trials/{first['id']}/complete",
        json={"lease_token": first["lease"]["token"], "values": [0.1]},
    )
    assert_error(late, 409, "lease_lost")
    done = complete(client, second, 0.5)
    assert done["attempt"] == 2 and done["worker_id"] == "survivor"
    assert [v["step"] for v in done["intermediate_values"]] == [0]
    study = client.get(f"{API}/studies/{sid}").json()
    assert study["n_trials_started"] == 1  # the retry did not count against the budget


def test_trial_fails_after_max_retries(client: TestClient) -> None:
    sid = create_study(client, lease_seconds=1, max_retries=1)["id"]
    first = ask(client, sid)
    _wait_for_state(client, first["id"], "waiting")
    again = ask(client, sid)
    assert again["id"] == first["id"] and again["attempt"] == 2
    failed = _wait_for_state(client, first["id"], "failed")
    assert failed["fail_reason"] == "lease_expired"
    assert ask(client, sid)["id"] != first["id"]


def test_heartbeats_keep_a_lease_alive(client: TestClient) -> None:
    sid = create_study(client, lease_seconds=1)["id"]
    trial = ask(client, sid)
    for _ in range(8):
        time.sleep(0.3)
        beat = client.post(
            f"{API}/trials/{trial['id']}/heartbeat", json={"lease_token": trial["lease"]["token"]}
        )
        assert beat.status_code == 200, beat.text
    assert client.get(f"{API}/trials/{trial['id']}").json()["state"] == "running"
    complete(client, trial, 0.1)


def test_release_puts_the_trial_back_without_using_a_retry(client: TestClient) -> None:
    sid = create_study(client, max_retries=0)["id"]
    trial = ask(client, sid)
    report(client, trial, 0, 0.5)
    released = client.post(
        f"{API}/trials/{trial['id']}/release", json={"lease_token": trial["lease"]["token"]}
    )
    assert released.status_code == 204
    again = ask(client, sid)
    assert again["id"] == trial["id"] and again["attempt"] == 2
    done = complete(client, again, 0.4)
    assert done["state"] == "complete" and len(done["intermediate_values"]) == 1


def test_long_poll_claim_wakes_when_work_appears(client: TestClient) -> None:
    sid = create_study(client, max_parallel=1)["id"]
    holder = ask(client, sid)
    result: dict[str, Any] = {}

    def claim() -> None:
        started = time.monotonic()
        response = client.post(
            f"{API}/trials/claim", json={"worker_id": "poller", "wait_seconds": 20}
        )
        result["status"] = response.status_code
        result["body"] = response.json() if response.status_code == 200 else None
        result["waited"] = time.monotonic() - started

    thread = threading.Thread(target=claim)
    thread.start()
    time.sleep(1.0)
    assert "status" not in result  # still waiting: max_parallel is reached
    complete(client, holder, 0.3)
    thread.join(timeout=15)
    assert result["status"] == 200 and result["body"]["study_id"] == sid
    assert 0.9 < result["waited"] < 5.0


def test_long_poll_times_out_with_204(client: TestClient) -> None:
    started = time.monotonic()
    response = client.post(f"{API}/trials/claim", json={"worker_id": "w", "wait_seconds": 1})
    assert response.status_code == 204
    assert 0.9 < time.monotonic() - started < 5
