"""Many clients against two real server processes on one study (one PostgreSQL)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.helpers import study_body
from tests.support import ServerProcess

pytestmark = pytest.mark.slow


def _worker(
    base_urls: list[str],
    auth: dict[str, str],
    sid: int,
    name: str,
    log: list[dict[str, Any]],
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


_Client = Callable[[list[str], dict[str, str], int, str, list[dict[str, Any]], list[str]], None]


def _race(
    servers: list[ServerProcess], client: _Client, name: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """12 clients run ``client`` on one study of 60 trials across both processes; checks that
    each trial was handed out once, numbered 0..59, with no repeated suggestion, and returns
    the trials handed out and the study."""
    n_trials, n_clients = 60, 12
    urls = [s.url for s in servers]
    auth = servers[0].headers
    body = study_body(name, max_trials=n_trials, max_parallel=None, pruner={"name": "none"})
    sid = httpx.post(f"{urls[0]}/api/v1/studies", json=body, headers=auth).json()["id"]
    log: list[dict[str, Any]] = []
    errors: list[str] = []

    def run(i: int) -> None:
        try:
            client(urls, auth, sid, f"{name}-{i}", log, errors)
        except Exception as exc:  # a client that crashed is a failure, not a silent thread
            errors.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client did not finish in 300 s"
    assert errors == []
    assert sorted(t["number"] for t in log) == list(range(n_trials))
    assert len({t["id"] for t in log}) == n_trials
    assert len({t["params"]["lr"] for t in log}) == n_trials  # no repeat from a stale view
    study = httpx.get(f"{urls[1]}/api/v1/studies/{sid}", headers=auth).json()
    assert study["n_trials_started"] == n_trials
    assert study["trial_counts"]["complete"] == n_trials
    return log, study


def test_budget_is_exact_across_processes(two_servers: list[ServerProcess]) -> None:
    _, study = _race(two_servers, _worker, "race")
    assert study["state"] == "completed"


def _next_worker(
    base_urls: list[str],
    auth: dict[str, str],
    sid: int,
    name: str,
    log: list[dict[str, Any]],
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
    _race(two_servers, _next_worker, "race-next")


def _batch_worker(
    base_urls: list[str],
    auth: dict[str, str],
    sid: int,
    name: str,
    log: list[dict[str, Any]],
    errors: list[str],
) -> None:
    """Claims up to 4 trials per request (ask with ``count`` on odd clients), alternating
    between the processes, and completes them one by one."""
    urls = itertools.cycle(base_urls)
    by_ask = int(name.rsplit("-", 1)[1]) % 2 == 1
    with httpx.Client(timeout=30, headers=auth) as http:
        while True:
            base = next(urls) + "/api/v1"
            if by_ask:
                response = http.post(
                    f"{base}/studies/{sid}/trials", json={"worker_id": name, "count": 4}
                )
            else:
                response = http.post(
                    f"{base}/trials/claim", json={"worker_id": name, "count": 4, "study_ids": [sid]}
                )
            if response.status_code != 200:
                errors.append(response.text)
                return
            batch = response.json()
            if not batch["trials"]:
                study = http.get(f"{base}/studies/{sid}").json()
                if study["n_trials_started"] >= study["max_trials"]:
                    return
                continue
            for trial in batch["trials"]:
                value = (trial["params"]["lr"] - 0.01) ** 2
                done = http.post(
                    f"{next(urls)}/api/v1/trials/{trial['id']}/complete",
                    json={"lease_token": trial["lease"]["token"], "values": [value]},
                )
                if done.status_code != 200:  # a lost lease, or a trial handed out twice
                    errors.append(done.text)
                    return
                log.append(trial)


def test_batches_are_exact_at_the_budget_across_processes(
    two_servers: list[ServerProcess],
) -> None:
    """Batch asks and claims from 12 clients on two processes: exactly max_trials trials,
    numbered 0..59 without gaps, each handed out once and completed under its own lease."""
    _, study = _race(two_servers, _batch_worker, "race-batch")
    assert study["state"] == "completed"
