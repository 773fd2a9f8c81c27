"""asha's ``max_resource_total`` across two real server processes: many clients pause, promote
and resume trials on one study, and the resource units spent are exactly the budget."""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tests.api.helpers import study_body
from tests.support import ServerProcess

pytestmark = pytest.mark.slow

BUDGET = 40
MAX_RESOURCE = 9


class _Record:
    """Every report any client sent, per trial (to find a step sent twice)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: dict[int, list[int]] = defaultdict(list)
        self.errors: list[str] = []


def _run_trial(http: httpx.Client, urls: Any, trial: dict[str, Any], record: _Record) -> None:
    token = trial["lease"]["token"]
    x = trial["params"]["x"]
    for step in range(trial["resume_from_step"] or 0, MAX_RESOURCE):
        with record.lock:
            record.steps[trial["id"]].append(step)
        answer = http.post(
            f"{next(urls)}/api/v1/trials/{trial['id']}/report",
            json={"lease_token": token, "step": step, "value": (x - 0.3) ** 2 + 1 / (step + 1)},
        )
        answer.raise_for_status()
        if answer.json()["should_pause"]:
            http.post(
                f"{next(urls)}/api/v1/trials/{trial['id']}/release", json={"lease_token": token}
            ).raise_for_status()
            return
    done = http.post(
        f"{next(urls)}/api/v1/trials/{trial['id']}/complete",
        json={"lease_token": token, "values": [(x - 0.3) ** 2]},
    )
    if done.status_code != 200:
        with record.lock:
            record.errors.append(done.text)


def _client(
    base_urls: list[str], auth: dict[str, str], sid: int, name: str, record: _Record
) -> None:
    urls = itertools.cycle(base_urls)  # alternate between the two processes
    with httpx.Client(timeout=30, headers=auth) as http:
        for _ in range(200):
            response = http.post(
                f"{next(urls)}/api/v1/studies/{sid}/trials", json={"worker_id": name}
            )
            if response.status_code == 204:
                if response.headers.get("HPO-No-Trial-Reason") == "budget_spent":
                    return
                continue
            if response.status_code != 200:
                with record.lock:
                    record.errors.append(response.text)
                return
            _run_trial(http, urls, response.json(), record)


def test_max_resource_total_is_exact_across_two_processes(
    two_servers: list[ServerProcess],
) -> None:
    urls = [s.url for s in two_servers]
    auth = two_servers[0].headers
    body = study_body(
        "asha-budget",
        search_space={"x": {"type": "float", "low": 0.0, "high": 1.0}},
        sampler={"name": "random", "options": {"seed": 7}},
        pruner={
            "name": "asha",
            "options": {"min_resource": 1, "reduction_factor": 3, "max_resource": MAX_RESOURCE},
        },
        task=None,
        max_trials=None,
        max_parallel=None,
        max_resource_total=BUDGET,
    )
    created = httpx.post(f"{urls[0]}/api/v1/studies", json=body, headers=auth)
    assert created.status_code == 201, created.text
    sid = created.json()["id"]
    assert created.json()["max_resource_total"] == BUDGET
    record = _Record()
    threads = [
        threading.Thread(target=_client, args=(urls, auth, sid, f"c{i}", record)) for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not record.errors
    assert all(len(steps) == len(set(steps)) for steps in record.steps.values())  # none twice

    page = httpx.get(
        f"{urls[1]}/api/v1/studies/{sid}/trials",
        params={"limit": 1000, "include_intermediate": "true"},
        headers=auth,
    ).json()
    units = {t["number"]: len(t["intermediate_values"]) for t in page["items"]}
    assert sum(units.values()) == BUDGET  # granted to the last unit, never beyond
    assert sum(len(steps) for steps in record.steps.values()) == BUDGET
    study = httpx.get(f"{urls[1]}/api/v1/studies/{sid}", headers=auth).json()
    assert study["state"] == "completed", study
    counts = study["trial_counts"]
    assert counts["running"] == counts["paused"] == counts["waiting"] == 0
    assert counts["complete"] >= 1 and counts["pruned"] >= 1
    promoted = [t for t in page["items"] if t["state"] == "complete"]
    assert all(len(t["intermediate_values"]) == MAX_RESOURCE for t in promoted)

    # More budget: the study runs again (the paused trials were finished; new ones start).
    patched = httpx.patch(
        f"{urls[0]}/api/v1/studies/{sid}", json={"max_resource_total": BUDGET + 1}, headers=auth
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["state"] == "running"
    again = httpx.post(
        f"{urls[0]}/api/v1/studies/{sid}/trials", json={"worker_id": "late"}, headers=auth
    )
    assert again.status_code == 200 and again.json()["number"] == len(units)


def test_max_resource_total_needs_asha(two_servers: list[ServerProcess]) -> None:
    auth = two_servers[0].headers
    body = study_body("no-asha", max_resource_total=10)
    response = httpx.post(f"{two_servers[0].url}/api/v1/studies", json=body, headers=auth)
    assert response.status_code == 422 and "asha" in response.text
