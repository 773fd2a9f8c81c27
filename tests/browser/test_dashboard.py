"""The dashboard in headless Chromium against a real server: the plots are drawn from the API's
data, and a trial finished through the API appears without a reload (SSE + change feed).

Screenshots are written to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth.service import issue_token
from tests.api.helpers import API, study_body
from tests.support import ScratchDatabase, ServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUIET = {"sampler": {"name": "random", "options": {"seed": 7}}, "pruner": {"name": "none"}}


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (CI installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            args=ARGS,
            headless=True,
            viewport={"width": 1440, "height": 1000},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string, token=db.token) as srv:
        yield srv


@pytest.fixture
def read_token(db: ScratchDatabase) -> str:
    """Dashboards sign in with a read-only token of the session's team."""
    return issue_token(db.url, "tests", "read")


def _sign_in(page: Any, token: str) -> None:
    """Answer the dashboard's token prompt (shown on its first 401)."""
    page.wait_for_selector(".modal input[type=password]", timeout=10_000)
    page.fill(".modal input[type=password]", token)
    page.click(".modal button[type=submit]")


def _ask(http: httpx.Client, sid: int, worker: str = "w-1") -> dict[str, Any]:
    response = http.post(f"/studies/{sid}/trials", json={"worker_id": worker})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _report(http: httpx.Client, trial: dict[str, Any], step: int, value: float) -> None:
    body = {"lease_token": trial["lease"]["token"], "step": step, "value": value}
    assert http.post(f"/trials/{trial['id']}/report", json=body).status_code == 200


def _finish(http: httpx.Client, trial: dict[str, Any], **body: Any) -> None:
    body["lease_token"] = trial["lease"]["token"]
    response = http.post(f"/trials/{trial['id']}/complete", json=body)
    assert response.status_code == 200, response.text


PLOT_DATA = "(id) => { const d = document.getElementById(id); return d && d.data ? d.data : null }"
HISTORY_POINTS = "(n) => { const d = document.getElementById('history-plot'); \
    return !!(d && d.data && d.data.length && d.data[0].x.length === n) }"


def test_study_page_draws_every_finished_trial_and_updates_live(
    server: ServerProcess, page: Any, read_token: str
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with httpx.Client(base_url=server.url + API, timeout=30, headers=server.headers) as http:
        sid = http.post("/studies", json=study_body("browser-study", **QUIET)).json()["id"]
        values = [0.9, 0.4, 0.7, 0.3, 0.5, 0.35]
        for value in values:
            trial = _ask(http, sid, worker="gpu-0")
            for step in range(5):
                _report(http, trial, step, value + 1 / (step + 1))
            _finish(http, trial, values=[value])
        running = _ask(http, sid, worker="gpu-1")
        _report(http, running, 0, 2.0)

        page.goto(f"{server.url}/dashboard/studies/{sid}")
        _sign_in(page, read_token)
        page.wait_for_function(HISTORY_POINTS, arg=len(values), timeout=20_000)
        objective, best = page.evaluate(PLOT_DATA, "history-plot")[:2]
        assert objective["x"] == list(range(len(values)))  # one point per finished trial
        assert objective["y"] == values
        assert best["y"] == [min(values[: i + 1]) for i in range(len(values))]
        page.wait_for_function(
            "() => document.getElementById('trial-count').textContent === '7 of 7 trials'",
            timeout=10_000,
        )
        page.wait_for_function(
            "() => { const d = document.getElementById('curves-plot');"
            " return d && d.data && d.data.some(t => t.name.startsWith('Running (1)')) }",
            timeout=10_000,
        )
        page.evaluate("() => { window.__notReloaded = true }")
        page.wait_for_timeout(500)  # let the other charts settle for the screenshot
        page.screenshot(path=str(ARTIFACTS / "dashboard-study.png"), full_page=True)

        _finish(http, running, values=[0.1])  # finished during the test, through the API
        page.wait_for_function(HISTORY_POINTS, arg=len(values) + 1, timeout=10_000)
        objective, best = page.evaluate(PLOT_DATA, "history-plot")[:2]
        assert objective["x"][-1] == len(values) and objective["y"][-1] == 0.1
        assert best["y"][-1] == 0.1
        assert page.evaluate("() => window.__notReloaded === true")
        page.wait_for_function(
            "() => document.querySelector('#stats .stat .value').textContent.startsWith('7')",
            timeout=10_000,
        )
        page.screenshot(path=str(ARTIFACTS / "dashboard-study-live.png"), full_page=True)
    assert not errors, errors


def test_pruned_trials_look_different_and_the_studies_list_refreshes(
    server: ServerProcess, page: Any, read_token: str
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with httpx.Client(base_url=server.url + API, timeout=30, headers=server.headers) as http:
        sid = http.post("/studies", json=study_body("curves", **QUIET)).json()["id"]
        for i in range(4):
            trial = _ask(http, sid)
            for step in range(6 if i % 2 == 0 else 3):
                _report(http, trial, step, math.exp(-step / 3) + i / 10)
            if i % 2 == 0:
                _finish(http, trial, values=[0.2 + i / 10])
            else:
                _finish(http, trial, state="pruned")

        page.goto(f"{server.url}/")  # redirects to the studies list
        _sign_in(page, read_token)  # kept in local storage for the next pages
        page.wait_for_selector("#studies tbody tr.row >> text=curves", timeout=10_000)
        assert page.url.endswith("/dashboard")
        other = http.post("/studies", json=study_body("appears-later", **QUIET)).json()["id"]
        page.wait_for_selector("#studies tbody tr.row >> text=appears-later", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-studies.png"), full_page=True)
        assert other

        page.goto(f"{server.url}/dashboard/studies/{sid}")
        page.wait_for_function(
            "() => { const d = document.getElementById('curves-plot');"
            " return d && d.data && d.data.some(t => t.name === 'Pruned (2)') }",
            timeout=15_000,
        )
        drawn = [t for t in page.evaluate(PLOT_DATA, "curves-plot") if t.get("meta") != "legend"]
        traces = {t["name"].split(" ")[0]: t for t in drawn}
        pruned, complete = traces["Pruned"], traces["Complete"]
        assert (
            pruned["line"]["dash"] == "dot" and pruned["line"]["color"] != complete["line"]["color"]
        )
        assert sorted({n for n in pruned["customdata"]}) == [1, 3]
        assert sorted({n for n in complete["customdata"]}) == [0, 2]
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "dashboard-curves.png"), full_page=True)
    assert not errors, errors
