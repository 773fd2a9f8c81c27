"""Teams and tokens: every /api call needs a live bearer token, roles limit what it may do, and
a team sees only its own studies and trials (another team's ids answer 404, as unknown ones)."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.app import create_app
from service.auth.service import AuthService, issue_token
from service.db.unit_of_work import UnitOfWork
from tests.api.helpers import API, assert_error, study_body
from tests.conftest import server_settings
from tests.support import ScratchDatabase


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app_client(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    """The app with no default token: each call says who it is."""
    with TestClient(create_app(server_settings(db, tmp_path))) as client:
        yield client


class Caller:
    def __init__(self, client: TestClient, token: str) -> None:
        self.client, self.headers = client, bearer(token)

    def get(self, path: str) -> Any:
        return self.client.get(API + path, headers=self.headers)

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.client.post(API + path, json=body, headers={**self.headers, **(headers or {})})

    def patch(self, path: str, body: Any) -> Any:
        return self.client.patch(API + path, json=body, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(API + path, headers=self.headers)


def team_caller(client: TestClient, db: ScratchDatabase, team: str, role: str) -> Caller:
    return Caller(client, issue_token(db.url, team, role))


def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_api_route_refuses_calls_without_a_token(app_client: TestClient) -> None:
    paths = app_client.get("/openapi.json").json()["paths"]
    operations = [
        (method, path) for path, ops in paths.items() if path.startswith(API) for method in ops
    ]
    assert len(operations) > 25
    for method, path in operations:
        response = app_client.request(method.upper(), _filled(path), json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert app_client.get("/healthz").status_code == 200
    assert app_client.get("/readyz").status_code == 200
    assert app_client.get("/openapi.json").status_code == 200
    assert app_client.get("/dashboard").status_code == 200


def test_malformed_unknown_and_revoked_tokens_are_refused(
    app_client: TestClient, db: ScratchDatabase
) -> None:
    for header in (
        "Bearer",
        "Bearer ",
        "Basic abc",
        db.token,
        "Bearer nope",
        "Bearer " + "x" * 5000,
    ):
        response = app_client.get(f"{API}/studies", headers={"Authorization": header})
        assert_error(response, 401, "unauthorized")
    admin = team_caller(app_client, db, "revokers", "admin")
    issued = admin.post("/tokens", {"role": "read", "name": "ci"})
    assert issued.status_code == 201, issued.text
    reader = Caller(app_client, issued.json()["token"])
    assert reader.get("/studies").status_code == 200
    assert admin.delete(f"/tokens/{issued.json()['id']}").status_code == 204
    assert_error(reader.get("/studies"), 401, "unauthorized")  # at once in this process
    assert admin.delete(f"/tokens/{issued.json()['id']}").status_code == 204  # idempotent


def test_expired_tokens_are_refused_even_when_cached(
    app_client: TestClient, engine: Engine
) -> None:
    auth = AuthService(UnitOfWork(engine))
    issued = auth.issue("short", "read", expires_in=dt.timedelta(seconds=3))
    caller = Caller(app_client, issued.token)
    assert caller.get("/studies").status_code == 200  # now cached for up to auth_cache_s (5 s)
    expires_at = issued.info.expires_at
    assert expires_at is not None
    time.sleep(max(0.0, (expires_at - dt.datetime.now(dt.UTC)).total_seconds() + 0.2))
    assert_error(caller.get("/studies"), 401, "unauthorized")


def test_roles_limit_what_a_token_may_do(app_client: TestClient, db: ScratchDatabase) -> None:
    submit = team_caller(app_client, db, "roles", "submit")
    reader = team_caller(app_client, db, "roles", "read")
    worker = team_caller(app_client, db, "roles", "worker")
    study = submit.post("/studies", study_body("roles-study")).json()
    sid = study["id"]
    assert study["team"] == "roles"

    # read: reads only
    assert reader.get(f"/studies/{sid}").status_code == 200
    assert reader.get(f"/studies/{sid}/trials").status_code == 200
    forbidden = assert_error(reader.post("/studies", study_body("nope")), 403, "forbidden")
    assert "'read'" in forbidden["message"] and forbidden["details"]["needs"] == "manage"
    assert_error(reader.post(f"/studies/{sid}/trials", {"worker_id": "r"}), 403, "forbidden")
    assert_error(reader.post("/trials/claim", {"worker_id": "r"}), 403, "forbidden")

    # worker: runs trials, reads, but does not manage studies or tokens
    trial = worker.post("/trials/claim", {"worker_id": "gpu-1:0"}).json()
    token = trial["lease"]["token"]
    report = worker.post(
        f"/trials/{trial['id']}/report", {"lease_token": token, "step": 0, "value": 1.0}
    )
    assert report.status_code == 200, report.text
    assert worker.get(f"/studies/{sid}").status_code == 200
    assert_error(worker.patch(f"/studies/{sid}", {"state": "paused"}), 403, "forbidden")
    assert_error(worker.delete(f"/studies/{sid}"), 403, "forbidden")
    enqueue = worker.post(f"/studies/{sid}/trials/enqueue", {"params": {"n_layers": 2}})
    assert_error(enqueue, 403, "forbidden")
    assert_error(worker.post("/tokens", {"role": "read"}), 403, "forbidden")
    done = worker.post(f"/trials/{trial['id']}/complete", {"lease_token": token, "values": [0.5]})
    assert done.status_code == 200, done.text

    # submit: manages studies, runs trials, but no tokens
    assert submit.patch(f"/studies/{sid}", {"state": "paused"}).json()["state"] == "paused"
    assert_error(submit.get("/tokens"), 403, "forbidden")
    assert_error(submit.post("/tokens", {"role": "admin"}), 403, "forbidden")


def test_a_team_sees_only_its_own_studies_and_trials(
    app_client: TestClient, db: ScratchDatabase
) -> None:
    alpha = team_caller(app_client, db, "alpha", "admin")
    beta = team_caller(app_client, db, "beta", "admin")
    study = alpha.post("/studies", study_body("alpha-study")).json()
    sid = study["id"]
    trial = alpha.post(f"/studies/{sid}/trials", {"worker_id": "a-1"}).json()
    tid, lease = trial["id"], {"lease_token": trial["lease"]["token"]}
    missing_study, missing_trial = sid + 10_000, tid + 10_000

    def same_as_missing(path: str, method: str = "get", body: Any = None) -> None:
        theirs = getattr(beta, method)(path.format(s=sid, t=tid), *([body] if body else []))
        unknown = getattr(beta, method)(
            path.format(s=missing_study, t=missing_trial), *([body] if body else [])
        )
        assert theirs.status_code == unknown.status_code == 404, (path, theirs.text)
        message = theirs.json()["error"]["message"]
        assert message == unknown.json()["error"]["message"].replace(
            str(missing_study), str(sid)
        ).replace(str(missing_trial), str(tid))

    for path in (
        "/studies/{s}",
        "/studies/{s}/trials",
        "/studies/{s}/best",
        "/studies/{s}/history",
        "/studies/{s}/importance",
        "/studies/{s}/trials.csv",
        "/trials/{t}",
        "/trials/{t}/checkpoint/meta",
    ):
        same_as_missing(path)
    same_as_missing("/studies/{s}/trials", "post", {"worker_id": "b-1"})
    same_as_missing("/studies/{s}", "patch", {"state": "stopped"})
    same_as_missing("/trials/{t}/heartbeat", "post", lease)
    same_as_missing("/trials/{t}/report", "post", {**lease, "step": 1, "value": 0.1})
    same_as_missing("/trials/{t}/complete", "post", {**lease, "values": [0.1]})
    same_as_missing("/trials/{t}/release", "post", lease)
    assert_error(beta.delete(f"/studies/{sid}"), 404, "not_found")
    assert_error(beta.get("/studies/by-name/alpha-study"), 404, "not_found")

    assert beta.get("/studies").json()["items"] == []
    assert beta.get("/studies/summary").json()["items"] == []
    assert beta.post("/trials/claim", {"worker_id": "b-1"}).status_code == 204
    assert [w["worker_id"] for w in beta.get("/workers").json()["items"]] == ["b-1"]
    assert [w["worker_id"] for w in alpha.get("/workers").json()["items"]] == ["a-1"]

    # alpha's study is untouched by all of that, and still alpha's
    mine = alpha.get(f"/studies/{sid}").json()
    assert mine["state"] == "running" and mine["trial_counts"]["running"] == 1
    assert [s["id"] for s in alpha.get("/studies").json()["items"]] == [sid]
    assert alpha.get("/studies/by-name/alpha-study").json()["id"] == sid
    claimed = alpha.post("/trials/claim", {"worker_id": "a-2"})
    assert claimed.status_code == 200 and claimed.json()["study_id"] == sid


def test_idempotency_keys_are_per_team(app_client: TestClient, db: ScratchDatabase) -> None:
    alpha = team_caller(app_client, db, "alpha", "submit")
    beta = team_caller(app_client, db, "beta", "submit")
    key = {"Idempotency-Key": "same-key"}
    first = alpha.post("/studies", study_body("idem-alpha"), headers=key)
    again = alpha.post("/studies", study_body("idem-alpha"), headers=key)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    other = beta.post("/studies", study_body("idem-beta"), headers=key)
    assert other.status_code == 201, other.text  # not alpha's stored reply, nor a mismatch
    assert other.json()["team"] == "beta" and other.json()["id"] != first.json()["id"]


def test_admins_manage_their_own_teams_tokens(
    app_client: TestClient, db: ScratchDatabase, engine: Engine
) -> None:
    admin = team_caller(app_client, db, "ops", "admin")
    stranger = team_caller(app_client, db, "other", "admin")
    issued = admin.post("/tokens", {"role": "worker", "name": "gpu-pool", "expires_in_days": 30})
    assert issued.status_code == 201, issued.text
    body = issued.json()
    assert body["token"].startswith("hpo_") and body["token"].startswith(body["prefix"])
    assert body["team"] == "ops" and body["role"] == "worker" and body["expires_at"]

    listed = admin.get("/tokens").json()["items"]
    assert {t["name"] for t in listed} >= {"gpu-pool"}
    assert all("token" not in t and t["team"] == "ops" for t in listed)
    assert all(t["team"] == "other" for t in stranger.get("/tokens").json()["items"])
    assert_error(stranger.delete(f"/tokens/{body['id']}"), 404, "not_found")

    with engine.connect() as conn:  # only a hash is stored
        stored = conn.execute(text("SELECT * FROM hpo_api_tokens")).mappings().all()
    assert all(body["token"] not in str(dict(row)) for row in stored)

    whoami = Caller(app_client, body["token"]).get("/whoami").json()
    assert whoami == {"team": "ops", "role": "worker", "token_id": body["id"], "auth": True}
    assert_error(admin.post("/tokens", {"role": "owner"}), 422, "validation_error")


def test_auth_off_serves_without_tokens_as_an_admin_of_every_team(
    db: ScratchDatabase, tmp_path: Path
) -> None:
    with TestClient(create_app(server_settings(db, tmp_path, auth="off"))) as client:
        created = client.post(f"{API}/studies", json=study_body("open-study"))
        assert created.status_code == 201, created.text
        assert created.json()["team"] == "default"
        assert client.get(f"{API}/whoami").json()["auth"] is False
        assert (
            client.post(
                f"{API}/studies/{created.json()['id']}/trials", json={"worker_id": "w"}
            ).status_code
            == 200
        )


def test_study_names_are_per_team(app_client: TestClient, db: ScratchDatabase) -> None:
    alpha = team_caller(app_client, db, "alpha", "submit")
    beta = team_caller(app_client, db, "beta", "submit")
    mine = alpha.post("/studies", study_body("baseline"))
    theirs = beta.post("/studies", study_body("baseline"))
    assert mine.status_code == theirs.status_code == 201, theirs.text
    assert mine.json()["name"] == theirs.json()["name"] == "baseline"
    assert mine.json()["optuna_study_name"] == "alpha/baseline"
    assert theirs.json()["optuna_study_name"] == "beta/baseline"
    assert_error(alpha.post("/studies", study_body("baseline")), 409, "duplicate_name")
    assert alpha.get("/studies/by-name/baseline").json()["id"] == mine.json()["id"]
    assert beta.get("/studies/by-name/baseline").json()["id"] == theirs.json()["id"]
    gamma = team_caller(app_client, db, "gamma", "read")
    assert_error(gamma.get("/studies/by-name/baseline"), 404, "not_found")
