"""With HPO_API_TOKEN set, every /api request needs the bearer token; health stays open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from service.app import create_app
from service.settings import ServerSettings
from tests.api.helpers import API, assert_error, study_body
from tests.conftest import server_settings
from tests.support import ScratchDatabase

TOKEN = "s3cr3t-token-for-tests"


@pytest.fixture
def guarded(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    settings = server_settings(db, tmp_path, api_token=SecretStr(TOKEN))
    with TestClient(create_app(settings)) as client:
        yield client


def test_requests_without_the_token_are_refused(guarded: TestClient) -> None:
    error = assert_error(guarded.get(f"{API}/studies"), 401, "unauthorized")
    assert "Bearer" in error["message"]
    wrong = {"Authorization": "Bearer nope"}
    assert_error(
        guarded.post(f"{API}/studies", json=study_body(), headers=wrong), 401, "unauthorized"
    )
    assert_error(
        guarded.get(f"{API}/studies", headers={"Authorization": TOKEN}), 401, "unauthorized"
    )
    assert guarded.get(f"{API}/studies").headers["WWW-Authenticate"] == "Bearer"
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/readyz").status_code == 200


def test_requests_with_the_token_go_through(guarded: TestClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    created = guarded.post(f"{API}/studies", json=study_body("guarded"), headers=auth)
    assert created.status_code == 201, created.text
    asked = guarded.post(
        f"{API}/studies/{created.json()['id']}/trials", json={"worker_id": "w"}, headers=auth
    )
    assert asked.status_code == 200
    assert guarded.get(f"{API}/studies", headers=auth).json()["items"][0]["name"] == "guarded"


def test_placeholder_tokens_are_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        ServerSettings(api_token=SecretStr("changeme"))
