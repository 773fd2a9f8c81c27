"""GET /metrics: request counters by route template, claims, reaped leases, sampler time, and
per-study gauges read from the database; the metrics token; several server processes.

Counters and histograms belong to the test process and grow across tests, so tests compare a
scrape after the action with one before it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from service.app import create_app
from tests.api.helpers import API, ask, assert_error, complete, create_study, report
from tests.conftest import server_settings
from tests.support import ScratchDatabase, ServerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

REPORT_ROUTE = f"{API}/trials/{{trial_id}}/report"
COMPLETE_ROUTE = f"{API}/trials/{{trial_id}}/complete"
ASK_ROUTE = f"{API}/studies/{{study_id}}/trials"


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def scrape(client: TestClient | httpx.Client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, method: str, route: str, status: int) -> float:
    return value(samples, "hpo_http_requests_total", method=method, route=route, status=str(status))


def test_requests_are_counted_by_route_template(client: TestClient) -> None:
    before = scrape(client)
    sid = create_study(client)["id"]
    trials = [ask(client, sid) for _ in range(3)]
    for trial in trials:
        report(client, trial, 0, 0.5)
        report(client, trial, 1, 0.4)
    complete(client, trials[0], 0.1)
    client.get("/no/such/page/42")
    after = scrape(client)

    def delta(method: str, route: str, status: int) -> float:
        return requests_of(after, method, route, status) - requests_of(
            before, method, route, status
        )

    assert delta("POST", f"{API}/studies", 201) == 1
    assert delta("POST", ASK_ROUTE, 200) == 3
    assert delta("POST", REPORT_ROUTE, 200) == 6
    assert delta("POST", COMPLETE_ROUTE, 200) == 1
    assert delta("GET", "unmatched", 404) == 1
    # The latency histogram has the same labels; its count moves with the counter.
    labels = {"method": "POST", "route": REPORT_ROUTE, "status": "200"}
    count = "hpo_http_request_duration_seconds_count"
    assert value(after, count, **labels) - value(before, count, **labels) == 6
    inf = value(after, "hpo_http_request_duration_seconds_bucket", le="+Inf", **labels)
    assert inf == value(after, count, **labels)
    assert value(after, "hpo_http_request_duration_seconds_sum", **labels) > 0
    # Raw paths never become labels (bounded cardinality).
    routes = {dict(labels)["route"] for name, labels in after if name == "hpo_http_requests_total"}
    assert not any(str(t["id"]) in route.split("/") for t in trials for route in routes)
    assert "/no/such/page/42" not in routes


def test_sampler_time_is_observed_per_sampled_trial(client: TestClient) -> None:
    before = scrape(client)
    sid = create_study(client, sampler={"name": "random", "options": {}})["id"]
    for _ in range(4):
        ask(client, sid)
    after = scrape(client)
    name = "hpo_sampler_duration_seconds_count"
    assert value(after, name, sampler="random") - value(before, name, sampler="random") == 4
    assert value(after, "hpo_sampler_duration_seconds_sum", sampler="random") > value(
        before, "hpo_sampler_duration_seconds_sum", sampler="random"
    )


def test_claims_are_counted_by_outcome(client: TestClient) -> None:
    before = scrape(client)
    nothing = client.post(f"{API}/trials/claim", json={"worker_id": "w-1"})
    assert nothing.status_code == 204
    create_study(client, name="claimable")
    for _ in range(2):
        claimed = client.post(f"{API}/trials/claim", json={"worker_id": "w-1"})
        assert claimed.status_code == 200, claimed.text
    after = scrape(client)
    for outcome, expected in (("claimed", 2), ("empty", 1)):
        moved = value(after, "hpo_claims_total", outcome=outcome) - value(
            before, "hpo_claims_total", outcome=outcome
        )
        assert moved == expected, outcome


def test_per_study_gauges_follow_the_database(client: TestClient) -> None:
    busy = create_study(client, name="busy")["id"]
    idle = create_study(client, name="idle")["id"]
    trials = [ask(client, busy) for _ in range(4)]
    complete(client, trials[0], 0.3)
    failed = client.post(
        f"{API}/trials/{trials[1]['id']}/complete",
        json={"lease_token": trials[1]["lease"]["token"], "state": "failed", "reason": "oom"},
    )
    assert failed.status_code == 200, failed.text
    pruned = client.post(
        f"{API}/trials/{trials[2]['id']}/complete",
        json={"lease_token": trials[2]["lease"]["token"], "state": "pruned"},
    )
    assert pruned.status_code == 200, pruned.text
    for lr in (0.01, 0.02):
        queued = client.post(f"{API}/studies/{busy}/trials/enqueue", json={"params": {"lr": lr}})
        assert queued.status_code == 201, queued.text

    samples = scrape(client)
    assert value(samples, "hpo_database_up") == 1
    expected = {"waiting": 2, "running": 1, "complete": 1, "pruned": 1, "failed": 1}
    for state, n in expected.items():
        assert value(samples, "hpo_study_trials", study_id=str(busy), state=state) == n, state
        assert (str(idle), state) in {
            (dict(labels)["study_id"], dict(labels)["state"])
            for name, labels in samples
            if name == "hpo_study_trials"
        }
        assert value(samples, "hpo_study_trials", study_id=str(idle), state=state) == 0
    assert value(samples, "hpo_study_queue_depth", study_id=str(busy)) == 2
    assert value(samples, "hpo_study_queue_depth", study_id=str(idle)) == 0

    # Handing out a queued trial moves it from waiting to running.
    ask(client, busy)
    samples = scrape(client)
    assert value(samples, "hpo_study_queue_depth", study_id=str(busy)) == 1
    assert value(samples, "hpo_study_trials", study_id=str(busy), state="running") == 2
    # A deleted study disappears from the gauges.
    assert client.delete(f"{API}/studies/{idle}").status_code == 204
    ids = {dict(labels).get("study_id") for name, labels in scrape(client)}
    assert str(idle) not in ids and str(busy) in ids


def _wait_for(client: TestClient, name: str, labels: dict[str, str], at_least: float) -> Samples:
    deadline = time.monotonic() + 15
    while True:
        samples = scrape(client)
        if value(samples, name, **labels) >= at_least or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def test_reaped_leases_are_counted(client: TestClient) -> None:
    before = scrape(client)
    requeued0 = value(before, "hpo_leases_reaped_total", outcome="requeued")
    failed0 = value(before, "hpo_leases_reaped_total", outcome="failed")
    sid = create_study(client, lease_seconds=1, max_retries=1)["id"]
    first = ask(client, sid, worker="dies")
    after = _wait_for(client, "hpo_leases_reaped_total", {"outcome": "requeued"}, requeued0 + 1)
    assert value(after, "hpo_leases_reaped_total", outcome="requeued") == requeued0 + 1
    assert value(after, "hpo_study_queue_depth", study_id=str(sid)) == 1

    again = ask(client, sid, worker="dies-too")
    assert again["id"] == first["id"]
    after = _wait_for(client, "hpo_leases_reaped_total", {"outcome": "failed"}, failed0 + 1)
    assert value(after, "hpo_leases_reaped_total", outcome="failed") == failed0 + 1
    assert value(after, "hpo_leases_reaped_total", outcome="requeued") == requeued0 + 1
    assert value(after, "hpo_study_trials", study_id=str(sid), state="failed") == 1


def test_the_request_id_is_echoed_or_made(client: TestClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "trace-42.a"})
    assert given.headers["x-request-id"] == "trace-42.a"
    made = client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    for bad in ("has space", "x" * 129, "tab\there"):
        replaced = client.get("/healthz", headers={"X-Request-ID": bad})
        assert replaced.headers["x-request-id"] != bad
        assert len(replaced.headers["x-request-id"]) == 32
    # Error answers carry it too.
    missing = client.get(f"{API}/studies/999999", headers={"X-Request-ID": "lost-1"})
    assert_error(missing, 404, "not_found")
    assert missing.headers["x-request-id"] == "lost-1"


@pytest.fixture
def open_app(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    """The app with no metrics token, called without any credentials."""
    with TestClient(create_app(server_settings(db, tmp_path))) as c:
        yield c


def test_metrics_are_open_without_a_token(open_app: TestClient) -> None:
    assert "hpo_database_up 1.0" in open_app.get("/metrics").text


def test_the_metrics_token_is_enforced(db: ScratchDatabase, tmp_path: Path) -> None:
    settings = server_settings(db, tmp_path, metrics_token=SecretStr("scrape-me-7f3a"))
    with TestClient(create_app(settings)) as c:
        missing = c.get("/metrics")
        assert_error(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"] == "Bearer"
        assert_error(
            c.get("/metrics", headers={"Authorization": "Bearer nope"}), 401, "unauthorized"
        )
        assert_error(
            c.get("/metrics", headers={"Authorization": "Basic scrape-me-7f3a"}),
            401,
            "unauthorized",
        )
        # An API token is no metrics token.
        assert_error(c.get("/metrics", headers=db.auth_headers), 401, "unauthorized")
        ok = scrape(c, Authorization="Bearer scrape-me-7f3a")
        assert value(ok, "hpo_database_up") == 1
        # Health stays open.
        assert c.get("/healthz").status_code == 200


def test_openmetrics_on_request(open_app: TestClient) -> None:
    response = open_app.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")
    # A header prometheus_client cannot read gets plain text, not an error.
    junk = open_app.get("/metrics", headers={"Accept": "application/openmetrics-text; version=x"})
    assert junk.status_code == 200
    assert junk.headers["content-type"].startswith("text/plain; version=0.0.4")


@pytest.mark.slow
def test_counters_add_up_across_server_processes(db: ScratchDatabase, tmp_path: Path) -> None:
    """Two uvicorn workers share their metrics (multiprocess mode): whichever process answers a
    scrape reports the requests both answered."""
    shared = tmp_path / "metrics"
    env = {
        "HPO_METRICS_TOKEN": "scrape-me-7f3a",
        "HPO_LOG_LEVEL": "warning",
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
    }
    scrape_auth = {"Authorization": "Bearer scrape-me-7f3a"}

    def counting_processes() -> set[str]:  # counter_<pid>.db: a process that counted requests
        return {f.stem.split("_")[-1] for f in shared.glob("counter_*.db")}

    with ServerProcess(db.url_string, workers=2, env=env) as server:
        # Fresh connections until both processes have answered some (the kernel picks).
        health = 0
        while health < 40 or (len(counting_processes()) < 2 and health < 400):
            assert httpx.get(server.url + "/healthz").status_code == 200
            health += 1
        assert len(counting_processes()) == 2, "one process answered every request"
        sid = httpx.post(
            server.url + f"{API}/studies",
            json={
                "name": "two-procs",
                "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
            },
            headers=db.auth_headers,
        ).json()["id"]
        for i in range(6):
            asked = httpx.post(
                server.url + f"{API}/studies/{sid}/trials",
                json={"worker_id": f"w-{i}"},
                headers=db.auth_headers,
            )
            assert asked.status_code == 200, asked.text
        assert httpx.get(server.url + "/metrics").status_code == 401
        for _ in range(6):
            with httpx.Client(base_url=server.url) as fresh:
                samples = scrape(fresh, **scrape_auth)
            assert requests_of(samples, "GET", "/healthz", 200) == health
            assert requests_of(samples, "POST", ASK_ROUTE, 200) == 6
            assert value(samples, "hpo_sampler_duration_seconds_count", sampler="tpe") == 6
            assert value(samples, "hpo_study_trials", study_id=str(sid), state="running") == 6


def _study(client: TestClient, name: str, task: str | None, **limits: int | None) -> int:
    body = {"task": None if task is None else {"name": task}, **limits}
    return int(create_study(client, name=name, **body)["id"])


def _enqueue(client: TestClient, sid: int, n: int) -> None:
    for _ in range(n):
        queued = client.post(f"{API}/studies/{sid}/trials/enqueue", json={"params": {"lr": 0.01}})
        assert queued.status_code == 201, queued.text


def _release(client: TestClient, trial: dict[str, object]) -> None:
    lease = trial["lease"]
    assert isinstance(lease, dict)
    released = client.post(
        f"{API}/trials/{trial['id']}/release", json={"lease_token": lease["token"]}
    )
    assert released.status_code == 204, released.text


def _claim(client: TestClient, **body: object) -> int:
    """The claim's status: 200 (a trial) or 204 (nothing to hand out)."""
    claimed = client.post(f"{API}/trials/claim", json={"worker_id": "w-claim", **body})
    assert claimed.status_code in (200, 204), claimed.text
    return int(claimed.status_code)


def _ready(client: TestClient) -> dict[str, float]:
    samples = scrape(client)
    return {
        dict(labels)["task"]: v
        for (name, labels), v in samples.items()
        if name == "hpo_trials_ready"
    }


def test_trials_ready_follow_the_handout_rules(client: TestClient) -> None:
    """``hpo_trials_ready{task}`` counts what claims would hand out now, study by study: pause
    and stop, max_parallel against leased trials, max_trials against trials started (retries
    already counted, enqueued trials not yet), the waiting trials; then claims take exactly that
    many before the first empty answer."""
    # alpha: room under max_parallel only (3 - 1 leased) ...
    parallel = _study(client, "parallel", "alpha", max_parallel=3, max_trials=None)
    ask(client, parallel)
    # ... and budget only: 2 started, one released (a retry), one enqueued: 1 + (5 - 2).
    budget = _study(client, "budget", "alpha", max_parallel=None, max_trials=5)
    first, _ = ask(client, budget), ask(client, budget)
    _release(client, first)
    _enqueue(client, budget, 1)
    # beta: at max_parallel (2 of 2 leased, budget 3) ...
    full = _study(client, "full", "beta", max_parallel=2, max_trials=3)
    full_trials = [ask(client, full) for _ in range(2)]
    # ... budget spent (max_trials lowered to the 2 started), but a retry waits; the enqueued
    # trial does not count: it would be a 3rd start.
    spent = _study(client, "spent", "beta", max_parallel=8, max_trials=3)
    first, _ = ask(client, spent), ask(client, spent)
    _release(client, first)
    _enqueue(client, spent, 1)
    lowered = client.patch(f"{API}/studies/{spent}", json={"max_trials": 2})
    assert lowered.status_code == 200, lowered.text
    # A paused and a stopped study hand out nothing, whatever waits.
    paused = _study(client, "paused", "beta", max_parallel=4, max_trials=10)
    _enqueue(client, paused, 2)
    stopped = _study(client, "stopped", "beta", max_parallel=None, max_trials=None)
    _enqueue(client, stopped, 1)
    for sid, state in ((paused, "paused"), (stopped, "stopped")):
        changed = client.patch(f"{API}/studies/{sid}", json={"state": state})
        assert changed.status_code == 200, changed.text
    # No task, no limits: its 2 waiting trials + 1.
    unbounded = _study(client, "unbounded", None, max_parallel=None, max_trials=None)
    _enqueue(client, unbounded, 2)

    assert _ready(client) == {"alpha": 2 + 4, "beta": 0 + 1 + 0 + 0, "": 3}
    samples = scrape(client)
    assert value(samples, "hpo_trials_leased", task="alpha") == 1 + 1
    assert value(samples, "hpo_trials_leased", task="beta") == 2 + 1

    # Finishing a trial frees a slot of "full" (budget 3 - 2 started = 1); resuming "paused"
    # gives min(4 slots, 10 starts).
    complete(client, full_trials[0], 0.5)
    assert client.patch(f"{API}/studies/{paused}", json={"state": "running"}).status_code == 200
    assert _ready(client)["beta"] == 1 + 1 + 4

    # Each claim lowers the gauge by one; claims stop exactly where it says 0.
    assert _claim(client, study_ids=[unbounded]) == 200
    assert _ready(client)[""] == 2
    for left in (5, 4, 3, 2, 1, 0):
        assert _claim(client, tasks=["alpha"]) == 200
        assert _ready(client)["alpha"] == left
    assert _claim(client, tasks=["alpha"]) == 204
    for _ in range(6):
        assert _claim(client, tasks=["beta"]) == 200
    assert _ready(client)["beta"] == 0
    assert _claim(client, tasks=["beta"]) == 204
