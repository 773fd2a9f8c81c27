"""A slow sampler on one study does not hold up other studies (a real server process).

A GP study with a few hundred trials takes about a second per ask here. While such an ask runs,
an ask on another study and the lease calls of a trial of that study (heartbeat, report,
complete) must be answered, not queued behind it: sampling runs in the thread pool, outside
the event loop, under the GP study's own locks only. The checks are on order (each call is
answered while the GP ask is still running), not on speed: the figures are in
``bench/gp_ask.py``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import study_body
from tests.support import ScratchDatabase, ServerProcess

pytestmark = pytest.mark.slow

_GP_TRIALS = 500
_SPACE = {f"x{i}": {"type": "float", "low": -1.0, "high": 1.0} for i in range(4)}


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string, token=db.token) as s:
        yield s


def _study(http: httpx.Client, name: str, sampler: str) -> int:
    body = study_body(
        name,
        search_space=_SPACE,
        sampler={"name": sampler, "options": {"seed": 1}},
        pruner={"name": "median"},
        task={"name": "own"},
        max_trials=None,
        max_parallel=None,
    )
    response = http.post("/api/v1/studies", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _fill(http: httpx.Client, sid: int, n: int) -> None:
    """``n`` finished trials at random points, enqueued whole (handed out without sampling)."""
    rng = random.Random(0)
    for _ in range(n):
        point = {name: rng.uniform(-1, 1) for name in _SPACE}
        http.post(f"/api/v1/studies/{sid}/trials/enqueue", json={"params": point})
    left = n
    while left:
        batch = http.post(
            f"/api/v1/studies/{sid}/trials", json={"worker_id": "filler", "count": min(64, left)}
        ).json()["trials"]
        for trial in batch:
            value = sum(v * v for v in trial["params"].values())
            done = http.post(
                f"/api/v1/trials/{trial['id']}/complete",
                json={"lease_token": trial["lease"]["token"], "values": [value]},
            )
            assert done.status_code == 200, done.text
        left -= len(batch)


def _timed_ask(http: httpx.Client, sid: int) -> tuple[float, float, dict[str, object]]:
    start = time.monotonic()
    response = http.post(f"/api/v1/studies/{sid}/trials", json={"worker_id": "gp-asker"})
    assert response.status_code == 200, response.text
    return start, time.monotonic(), response.json()


def test_a_gp_ask_does_not_hold_up_other_studies(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as http:
        gp = _study(http, "slow-gp", "gp")
        _fill(http, gp, _GP_TRIALS)
        _timed_ask(http, gp)  # the first fit also warms up the GP code paths
        other = _study(http, "other-tpe", "tpe")
        leased = http.post(f"/api/v1/studies/{other}/trials", json={"worker_id": "w"}).json()
        token = leased["lease"]["token"]

    gp_ask: list[tuple[float, float, dict[str, object]]] = []
    sent = threading.Event()
    answered: dict[str, float] = {}
    with (
        httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as gp_client,
        httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as http,
    ):
        gp_client.get("/healthz")  # both connected before the GP ask starts
        http.get("/healthz")

        def ask_gp() -> None:
            sent.set()
            gp_ask.append(_timed_ask(gp_client, gp))

        asker = threading.Thread(target=ask_gp)
        asker.start()
        sent.wait()
        time.sleep(0.3)  # the GP ask is in the server now (it takes a second or more)
        base = f"/api/v1/trials/{leased['id']}"
        calls = {
            "heartbeat": (f"{base}/heartbeat", {"lease_token": token}),
            "report": (f"{base}/report", {"lease_token": token, "step": 0, "value": 0.5}),
            "ask": (f"/api/v1/studies/{other}/trials", {"worker_id": "w2"}),
            "complete": (f"{base}/complete", {"lease_token": token, "values": [0.5]}),
        }
        for name, (path, body) in calls.items():
            response = http.post(path, json=body)
            assert response.status_code == 200, (name, response.text)
            answered[name] = time.monotonic()
        asker.join(timeout=120)
    assert gp_ask, "the GP ask did not answer"
    started, ended, trial = gp_ask[0]
    assert trial["study_id"] == gp
    late = {name: round(at - ended, 3) for name, at in answered.items() if at >= ended}
    assert not late, (
        f"answered only after the GP ask ({ended - started:.2f} s) ended: {late} s later"
    )
