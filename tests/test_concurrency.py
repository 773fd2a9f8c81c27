"""Many clients against two real server processes on one study (one PostgreSQL)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import study_body
from tests.support import ScratchDatabase, ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def two_servers(db: ScratchDatabase) -> Iterator[list[ServerProcess]]:
    servers = [ServerProcess(db.url_string, token=db.token).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def _worker(
    base_urls: list[str],
    auth: dict[str, str],
    sid: int,
    name: str,
    log: list[dict],
    errors: list[str],
) -> None:
    urls = itertools.cycle(base_urls)  # alternate between the two processes
    with httpx.Client(timeout=30, headers=auth) as http:
        while True:
            base = next(urls) + "/api/v1"
            response = http.post(f"{base}/studies/{sid}/trials", json={"worker_id": name})
            if response.status_code == 204:
                if response.headers.get("HPO-No-Trial-Reason") == "budget_spent":
                    return
                continue
            if response.status_code != 200:
                errors.append(response.text)
                return
            trial = response.json()
            token = trial["lease"]["token"]
            value = (trial["params"]["lr"] - 0.01) ** 2
            base = next(urls) + "/api/v1"
            http.post(
                f"{base}/trials/{trial['id']}/report",
                json={"lease_token": token, "step": 0, "value": value},
            ).raise_for_status()
            base = next(urls) + "/api/v1"
            done = http.post(
                f"{base}/trials/{trial['id']}/complete",
                json={"lease_token": token, "values": [value]},
            )
            if done.status_code != 200:
                errors.append(done.text)
                return
            log.append(trial)


def test_budget_is_exact_across_processes(two_servers: list[ServerProcess]) -> None:
    n_trials, n_clients = 60, 12
    urls = [s.url for s in two_servers]
    auth = two_servers[0].headers
    body = study_body("race", max_trials=n_trials, max_parallel=None, pruner={"name": "none"})
    sid = httpx.post(f"{urls[0]}/api/v1/studies", json=body, headers=auth).json()["id"]
    log: list[dict] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_worker, args=(urls, auth, sid, f"c{i}", log, errors))
        for i in range(n_clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert len(log) == n_trials
    assert sorted(t["number"] for t in log) == list(range(n_trials))
    assert len({t["id"] for t in log}) == n_trials
    lrs = [t["params"]["lr"] for t in log]
    assert len(set(lrs)) == n_trials  # no duplicated suggestions from stale views
    study = httpx.get(f"{urls[1]}/api/v1/studies/{sid}", headers=auth).json()
    assert study["n_trials_started"] == n_trials
    assert study["trial_counts"]["complete"] == n_trials
    assert study["state"] == "completed"


def _next_worker(
    base_urls: list[str],
    auth: dict[str, str],
    sid: int,
    name: str,
    log: list[dict],
    errors: list[str],
) -> None:
    """Asks once, then completes each trial with ``next`` (complete and the next hand-out in
    one transaction), alternating between the processes."""
    urls = itertools.cycle(base_urls)
    with httpx.Client(timeout=30, headers=auth) as http:
        response = http.post(f"{next(urls)}/api/v1/studies/{sid}/trials", json={"worker_id": name})
        if response.status_code == 204:
            return
        trial = response.json()
        while trial is not None:
            value = (trial["params"]["lr"] - 0.01) ** 2
            done = http.post(
                f"{next(urls)}/api/v1/trials/{trial['id']}/complete",
                json={
                    "lease_token": trial["lease"]["token"],
                    "values": [value],
                    "next": {"worker_id": name},
                },
            )
            if done.status_code != 200:
                errors.append(done.text)
                return
            log.append(trial)
            trial = done.json()["next_trial"]
            reason = done.json()["no_trial_reason"]
            if trial is None and reason != "budget_spent":
                errors.append(f"no next trial before the budget was spent: {reason}")


def test_budget_is_exact_with_complete_and_next(two_servers: list[ServerProcess]) -> None:
    n_trials, n_clients = 60, 12
    urls = [s.url for s in two_servers]
    auth = two_servers[0].headers
    body = study_body("race-next", max_trials=n_trials, max_parallel=None, pruner={"name": "none"})
    sid = httpx.post(f"{urls[0]}/api/v1/studies", json=body, headers=auth).json()["id"]
    log: list[dict] = []
    errors: list[str] = []
    threads = [
        threading.Thread(target=_next_worker, args=(urls, auth, sid, f"n{i}", log, errors))
        for i in range(n_clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    assert sorted(t["number"] for t in log) == list(range(n_trials))
    assert len({t["params"]["lr"] for t in log}) == n_trials
    study = httpx.get(f"{urls[1]}/api/v1/studies/{sid}", headers=auth).json()
    assert study["n_trials_started"] == n_trials
    assert study["trial_counts"]["complete"] == n_trials
