"""The Optuna ecosystem reads the service's database as it is.

optuna-dashboard's own server (its WSGI app, served by wsgiref in a thread), connected as a
read-only PostgreSQL role the way docs/dashboard.md describes, lists the service's studies and
returns their trials, and cannot change them; Optuna's plotting functions work on
``optuna.load_study`` of a service study.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import optuna
import psycopg2
import pytest
from fastapi.testclient import TestClient
from psycopg2 import sql

from tests.api.helpers import API, ask, complete, create_study, report
from tests.support import ScratchDatabase

optuna_dashboard = pytest.importorskip("optuna_dashboard")

QUIET = {"sampler": {"name": "random", "options": {"seed": 3}}, "pruner": {"name": "none"}}


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run(dsn: str, statements: list[sql.Composable]) -> None:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture
def readonly_url(db: ScratchDatabase) -> Iterator[str]:
    """A role that may only read the service's database (docs/dashboard.md)."""
    role = sql.Identifier(f"hpo_readonly_{uuid.uuid4().hex[:8]}")
    dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    _run(
        dsn,
        [
            sql.SQL("CREATE ROLE {} LOGIN").format(role),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db.name), role),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role),
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(role),
            sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(role),
        ],
    )
    try:
        yield db.url.set(username=role.strings[0], password=None).render_as_string(
            hide_password=False
        )
    finally:
        _run(
            dsn,
            [sql.SQL("DROP OWNED BY {}").format(role), sql.SQL("DROP ROLE {}").format(role)],
        )


@pytest.fixture
def storage(readonly_url: str) -> Iterator[optuna.storages.RDBStorage]:
    # As optuna-dashboard's command line builds it from a URL.
    rdb = optuna.storages.RDBStorage(
        readonly_url, skip_compatibility_check=True, skip_table_creation=True
    )
    yield rdb
    rdb.engine.dispose()


@pytest.fixture
def dashboard(storage: optuna.storages.RDBStorage) -> Iterator[str]:
    """optuna-dashboard's server on the service's database; yields its base URL."""
    server: WSGIServer = make_server(
        "127.0.0.1", 0, optuna_dashboard.wsgi(storage), handler_class=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _populate(client: TestClient) -> tuple[int, int]:
    """A single-objective study (complete with curves, pruned, failed, running) and a
    two-objective one."""
    single = create_study(client, name="ecosystem", metric_names=["val_loss"], **QUIET)["id"]
    for i, final in enumerate([0.8, 0.5, 0.3]):
        trial = ask(client, single)
        for step in range(4):
            report(client, trial, step, final + 1.0 / (step + 1) + i / 100)
        complete(client, trial, final)
    pruned = ask(client, single)
    report(client, pruned, 0, 3.0)
    token = pruned["lease"]["token"]
    client.post(
        f"{API}/trials/{pruned['id']}/complete", json={"lease_token": token, "state": "pruned"}
    )
    failed = ask(client, single)
    client.post(
        f"{API}/trials/{failed['id']}/complete",
        json={"lease_token": failed["lease"]["token"], "state": "failed", "reason": "oom"},
    )
    ask(client, single)  # running
    multi = create_study(client, name="ecosystem-mo", directions=["minimize", "maximize"], **QUIET)
    for values in ([1.0, 2.0], [2.0, 3.0], [3.0, 1.0]):
        trial = ask(client, multi["id"])
        response = client.post(
            f"{API}/trials/{trial['id']}/complete",
            json={"lease_token": trial["lease"]["token"], "values": values},
        )
        assert response.status_code == 200
    return single, multi["id"]


def test_optuna_dashboard_lists_the_studies_and_their_trials(
    client: TestClient, dashboard: str
) -> None:
    single, multi = _populate(client)
    with httpx.Client(base_url=dashboard, timeout=30) as http:
        listed = http.get("/api/studies")
        assert listed.status_code == 200, listed.text
        studies = {s["study_name"]: s for s in listed.json()["study_summaries"]}
        assert studies["tests/ecosystem"]["study_id"] == single  # <team>/<name> in Optuna
        assert studies["tests/ecosystem-mo"]["directions"] == ["minimize", "maximize"]

        detail = http.get(f"/api/studies/{single}", params={"after": 0})
        assert detail.status_code == 200, detail.text
        body = detail.json()
        ours = client.get(f"{API}/studies/{single}/trials", params={"include_intermediate": True})
        expected = {t["number"]: t for t in ours.json()["items"]}
        trials = {t["number"]: t for t in body["trials"]}
        assert set(trials) == set(expected) == set(range(6))
        states = {
            "Complete": "complete",
            "Pruned": "pruned",
            "Fail": "failed",
            "Running": "running",
        }
        for number, trial in trials.items():
            api = expected[number]
            assert trial["trial_id"] == api["id"]
            assert states[trial["state"]] == api["state"]
            assert {p["name"] for p in trial["params"]} == set(api["params"])
            assert trial.get("values") == api["values"]
            steps = [v["step"] for v in trial["intermediate_values"]]
            assert steps == [v["step"] for v in api["intermediate_values"]]
        assert [t["number"] for t in body["best_trials"]] == [2]

        front = http.get(f"/api/studies/{multi}").json()["best_trials"]
        assert sorted(t["number"] for t in front) == [0, 1]  # (3, 1) is dominated by (1, 2)
        page = http.get("/dashboard")
        assert page.status_code == 200 and "<html" in page.text.lower()

        refused = http.post(f"/api/trials/{trials[5]['trial_id']}/tell", json={"state": "Fail"})
        assert refused.status_code == 500  # PostgreSQL refused the write: read-only role
    assert client.get(f"{API}/trials/{trials[5]['trial_id']}").json()["state"] == "running"


def test_optuna_visualizations_work_on_a_service_study(
    client: TestClient, db: ScratchDatabase
) -> None:
    _populate(client)
    study = optuna.load_study(study_name="tests/ecosystem", storage=db.url_string)
    history = optuna.visualization.plot_optimization_history(study)
    objective = next(t for t in history.data if t.mode == "markers")
    assert list(objective.x) == [0, 1, 2] and list(objective.y) == [0.8, 0.5, 0.3]
    importances = optuna.visualization.plot_param_importances(study)
    assert set(importances.data[0].y) == {"lr", "n_layers", "batch_size"}
    curves = optuna.visualization.plot_intermediate_values(study)
    names = {trace.name for trace in curves.data}
    assert {"Trial0", "Trial1", "Trial2", "Trial3"} <= names  # the pruned trial 3 included
    multi = optuna.load_study(study_name="tests/ecosystem-mo", storage=db.url_string)
    front = optuna.visualization.plot_pareto_front(multi)
    assert len(front.data) >= 1
