"""The dashboard in headless Chromium against a real server: the plots are drawn from the API's
data, and a trial finished through the API appears without a reload (SSE + change feed).

Screenshots are written to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


def test_the_study_page_says_why_a_study_sits_still(
    server: ServerProcess, page: Any, read_token: str
) -> None:
    """A task no worker announced is a warning; a study the server paused shows the reason, and
    a resumed one no longer does (the page follows the study's events)."""
    with httpx.Client(base_url=server.url + API, timeout=30, headers=server.headers) as http:
        typo = {"name": "mlp_clasifier", "dataset": "digits", "epochs": 2}
        waiting = http.post("/studies", json=study_body("typo", task=typo, **QUIET)).json()
        page.goto(f"{server.url}/dashboard/studies/{waiting['id']}")
        _sign_in(page, read_token)
        page.wait_for_selector("#study-notices .notice:has-text('mlp_clasifier')", timeout=10_000)

        doomed = http.post("/studies", json=study_body("doomed", task=None, **QUIET)).json()
        page.goto(f"{server.url}/dashboard/studies/{doomed['id']}")
        page.wait_for_selector("#study-name >> text=doomed", timeout=10_000)
        assert page.locator("#study-notices .notice").count() == 0
        for _ in range(5):
            _finish(http, _ask(http, doomed["id"]), state="failed", reason="bad_params")
        notice = "#study-notices .notice:has-text('first 5 trials all failed')"
        page.wait_for_selector(notice, timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-paused-reason.png"), full_page=True)
        http.patch(f"/studies/{doomed['id']}", json={"state": "running"})
        page.wait_for_selector(notice, state="detached", timeout=10_000)


def test_api_docs_render_without_the_internet(server: ServerProcess, page: Any) -> None:
    """``/docs`` and ``/redoc`` load every asset from the server itself (Swagger UI and ReDoc
    come from the fastapi-offline package): a request to any other host is refused here, as it
    would fail on a machine without the internet."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    host = urlsplit(server.url).netloc
    elsewhere: list[str] = []

    def only_the_server(route: Any) -> None:
        if urlsplit(route.request.url).netloc == host:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_server)
    page.goto(f"{server.url}/docs")
    path = f".opblock-summary-path[data-path='{API}/studies']"
    page.wait_for_selector(path, timeout=20_000)
    assert page.locator(".opblock").count() > 25  # every operation, not just one
    assert page.locator(".swagger-ui .info .title").inner_text().startswith("HPO service")
    page.screenshot(path=str(ARTIFACTS / "docs-swagger.png"))

    page.goto(f"{server.url}/redoc")
    page.get_by_text(f"{API}/studies/{{study_id}}/history").first.wait_for(timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "docs-redoc.png"))
    assert not elsewhere, elsewhere
    assert not errors, errors
    # ReDoc's bundle shows its maker's logo from their CDN: the page's Content-Security-Policy
    # stops the browser from asking (ReDoc hides the image), which is the only message.
    refused = [m for m in console if "violates the following Content Security Policy" in m]
    assert all("cdn.redoc.ly" in m for m in refused) and len(refused) == len(console), console


# The y-axis of a plot in data units (a log axis's range is in powers of ten).
Y_AXIS = """(id) => { const y = document.getElementById(id).layout.yaxis;
    const r = y.type === 'log' ? y.range.map(v => 10 ** v) : y.range;
    return {type: y.type, lo: r[0], hi: r[1]} }"""
# Bounding boxes of a plot's text that must stay inside it, and of the plot itself.
TEXT_BOXES = """(id) => { const plot = document.getElementById(id); const box = (e) => {
    const r = e.getBoundingClientRect(); return {left: r.left, right: r.right, top: r.top,
    bottom: r.bottom, text: e.textContent} };
    const texts = plot.querySelectorAll('.ytick text, .bartext');
    return {plot: box(plot), texts: [...texts].map(box)} }"""
LONG_NAME = "warmup_steps_of_the_cosine_learning_rate_schedule"


def test_outliers_are_left_out_of_the_range_said_and_shown_on_demand(
    server: ServerProcess, page: Any, read_token: str
) -> None:
    """Two early trials near 2.0 among values of 0.1 to 0.3 and one learning curve diverging to 50
    among curves near 0.5 stay outside the y-ranges by default, with a note saying so; "Show
    all" brings them in. Long parameter names stay inside the importance panel."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    space = {
        "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
        LONG_NAME: {"type": "int", "low": 0, "high": 1000},
        "model.encoder.attention_dropout_probability": {"type": "float", "low": 0.0, "high": 0.5},
    }
    values = [2.05, 1.95, 0.3, 0.28, 0.25, 0.27, 0.22, 0.24, 0.18, 0.2, 0.15, 0.19, 0.13, 0.16]
    values += [0.1, 0.14]
    with httpx.Client(base_url=server.url + API, timeout=30, headers=server.headers) as http:
        body = study_body("outliers", search_space=space, task={"name": "custom"}, **QUIET)
        sid = http.post("/studies", json=body).json()["id"]
        for i, value in enumerate(values):
            trial = _ask(http, sid)
            for step in range(6):
                _report(http, trial, step, 0.45 + 0.1 * math.exp(-step / 2) + 0.005 * (i % 5))
            _finish(http, trial, values=[value])
        diverged = _ask(http, sid)
        for step, value in enumerate([0.6, 1.5, 5.0, 15.0, 50.0]):
            _report(http, diverged, step, value)
        _finish(http, diverged, state="pruned")
        late = _ask(http, sid)  # finished while the page is open

    page.goto(f"{server.url}/dashboard/studies/{sid}")
    _sign_in(page, read_token)
    page.wait_for_function(HISTORY_POINTS, arg=len(values), timeout=20_000)
    page.wait_for_function(
        "() => { const d = document.getElementById('curves-plot');"
        " return d && d.data && d.data.some(t => t.name === 'Pruned (1)') }",
        timeout=15_000,
    )
    page.wait_for_selector("#importance-plot .ytick text", timeout=15_000)
    page.wait_for_timeout(500)  # let the other charts settle for the screenshot

    history = page.evaluate(Y_AXIS, "history-plot")
    assert history["type"] == "linear" and history["lo"] <= 0.1 and history["hi"] < 0.5
    outside = page.evaluate(PLOT_DATA, "history-plot")[2]  # drawn as triangles at the edge
    assert outside["x"] == [0, 1] and outside["customdata"] == [2.05, 1.95]
    note = page.locator("#history-plot .annotation-text", has_text="2 trials above the range")
    assert note.is_visible() and "up to 2.05" in note.text_content()
    with httpx.Client(base_url=server.url + API, timeout=30, headers=server.headers) as http:
        _finish(http, late, values=[3.0])
    page.wait_for_selector("#history-plot .annotation-text >> text=3 trials above", timeout=10_000)
    assert page.evaluate(PLOT_DATA, "history-plot")[2]["x"] == [0, 1, 17]
    assert page.evaluate(Y_AXIS, "history-plot")["hi"] < 0.5
    curves = page.evaluate(Y_AXIS, "curves-plot")
    assert curves["lo"] <= 0.45 and curves["hi"] < 1
    assert page.locator("#curves-plot .annotation-text", has_text="1 curve above").is_visible()

    plot, texts = page.evaluate(TEXT_BOXES, "importance-plot").values()
    labels = [t["text"] for t in texts]
    assert len(texts) >= 6 and any(label.endswith("…") for label in labels), labels
    for text in texts:  # tick labels and the values written beside the bars
        assert plot["left"] <= text["left"] and text["right"] <= plot["right"], (text, plot)
        assert plot["top"] <= text["top"] and text["bottom"] <= plot["bottom"], (text, plot)
    hover_names = page.evaluate(PLOT_DATA, "importance-plot")[0]["customdata"]
    assert LONG_NAME in hover_names  # the full name, in the hover
    page.screenshot(path=str(ARTIFACTS / "dashboard-outliers.png"), full_page=True)

    page.click("#history-all")
    page.click("#curves-all")
    history = page.evaluate(Y_AXIS, "history-plot")
    assert history["lo"] <= 0.1 and history["hi"] >= 2.05
    assert page.locator("#history-plot .annotation-text", has_text="above the range").count() == 0
    curves = page.evaluate(Y_AXIS, "curves-plot")
    assert curves["type"] == "log" and curves["lo"] <= 0.45 and curves["hi"] >= 50  # 2 decades
    assert page.locator("#curves-log.on").count() == 1  # the switch shows the choice
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "dashboard-outliers-all.png"), full_page=True)

    page.click("#curves-log")  # the user's choice wins
    assert page.evaluate(Y_AXIS, "curves-plot")["type"] == "linear"
    assert not errors, errors


VIEW_OF = """async ([values, options]) => {
    const { robustView } = await import('/dashboard/static/ranges.js');
    const { log, range, count, side } = robustView(values, options);
    return { log, range, count, side } }"""


def test_y_ranges_leave_out_only_far_outliers_on_the_worse_side(
    server: ServerProcess, page: Any
) -> None:
    """The rules of ``ranges.js``, on the page's own module."""
    page.goto(f"{server.url}/healthz")

    def view(values: list[float], direction: str = "minimize", **options: Any) -> Any:
        return page.evaluate(VIEW_OF, [values, {"direction": direction, **options}])

    losses = [0.3, 0.28, 0.25, 0.27, 0.22, 0.24, 0.18, 0.2, 0.15, 0.19, 0.13, 0.16, 0.1]
    squashed = view([*losses, 2.05, 1.95])
    assert squashed["count"] == 2 and squashed["side"] == "above" and not squashed["log"]
    assert squashed["range"][0] < 0.1 and 0.3 < squashed["range"][1] < 0.5
    assert view([*losses, 2.05, 1.95], all=True)["range"] is None  # Plotly's autorange
    assert view([*losses, 0.001])["count"] == 0  # the best trial is never left out
    accuracy = [0.9, 0.91, 0.88, 0.93, 0.9, 0.92, 0.89, 0.94]
    assert view([*accuracy, 0.05], "maximize")["side"] == "below"
    assert view([*accuracy, 5.0], "maximize")["count"] == 0
    decades = view([1, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001])  # log scale, nothing left out
    assert decades == {"log": True, "range": None, "count": 0, "side": None}
    assert not view([1, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001], log=False)["log"]  # a user's choice
    assert view([0.1, 0.2, 0.15, 50])["count"] == 0  # too few values to call one an outlier
    assert view([-1.2, -1.1, -1.3, -1.0, -1.25, -1.15, 30])["count"] == 1  # not positive: linear


def test_a_pbt_study_draws_its_lineage(server: ServerProcess, page: Any, read_token: str) -> None:
    """A child of population-based training appears in the lineage card, under its parent, with
    a dotted link from its parent's segment at the step it started from."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}}
    pbt = {
        "name": "pbt",
        "options": {"population": 2, "interval": 2, "quantile": 0.5, "mutable": ["lr"]},
    }
    body = study_body("lineage", search_space=space, scheduler=pbt, task=None, **QUIET)
    with httpx.Client(base_url=server.url + API, timeout=30, headers=server.headers) as http:
        sid = http.post("/studies", json=body).json()["id"]
        top, bottom = _ask(http, sid), _ask(http, sid)
        for trial, value in ((top, 0.2), (bottom, 0.9)):
            _report(http, trial, 0, value + 0.1)
            headers = {"X-Lease-Token": trial["lease"]["token"], "X-Checkpoint-Step": "1"}
            put = http.put(f"/trials/{trial['id']}/checkpoint", content=b"w", headers=headers)
            assert put.status_code == 200, put.text
        _report(http, top, 1, 0.2)
        _report(http, bottom, 1, 0.9)  # the bottom: replaced by a child of trial 0
        _finish(http, bottom, state="pruned")
        child = _ask(http, sid)
        assert child["parent_trial_id"] == top["id"]
        for step in (2, 3):
            _report(http, child, step, 0.1)

        page.goto(f"{server.url}/dashboard/studies/{sid}")
        _sign_in(page, read_token)
        page.wait_for_selector("#lineage-tree li li .lineage-node[data-number='2']", timeout=15_000)
        nested = page.locator("#lineage-tree > ul > li:has(li .lineage-node[data-number='2'])")
        assert nested.locator(".lineage-node").first.get_attribute("data-number") == "0"
        assert "from step 2" in page.inner_text("#lineage-tree li li .lineage-node")
        page.wait_for_function(
            "() => { const d = document.getElementById('lineage-plot');"
            " return d && d.data && d.data.some(t => t.name === 'started from' && t.x.length) }",
            timeout=15_000,
        )
        link = next(
            t for t in page.evaluate(PLOT_DATA, "lineage-plot") if t["name"] == "started from"
        )
        assert link["x"][:2] == [1, 2]
        assert link["y"][:2] == [top["params"]["lr"], child["params"]["lr"]]
        page.screenshot(path=str(ARTIFACTS / "dashboard-lineage.png"), full_page=True)
    assert not errors, errors
