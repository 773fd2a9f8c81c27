"""What authentication costs in SQL: nothing for a token of the wrong shape, nothing once a
token and a study are known to the process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from service.app import create_app
from tests.api.helpers import API, ask, assert_error, create_study
from tests.conftest import server_settings
from tests.support import ScratchDatabase


@pytest.fixture
def app_client(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    settings = server_settings(db, tmp_path, auth_cache_s=300, reaper_interval_s=300)
    with TestClient(create_app(settings), headers=db.auth_headers) as client:
        yield client


def _statements(client: TestClient, call: Any) -> int:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    count = 0

    def on_execute(*_: Any) -> None:
        nonlocal count
        count += 1

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
    return count


@pytest.mark.parametrize(
    "token",
    ["nope", "hpo_short", "hpo_" + "a" * 42 + "!", "x" * 300, "hpo_" + "A" * 44],
)
def test_a_token_of_the_wrong_shape_is_refused_without_sql(
    app_client: TestClient, token: str
) -> None:
    def call() -> None:
        response = app_client.get(f"{API}/studies", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "unauthorized")

    assert _statements(app_client, call) == 0


def test_a_known_token_and_study_cost_no_auth_sql(app_client: TestClient) -> None:
    sid = create_study(app_client)["id"]
    trial = ask(app_client, sid)
    # Warm: the token, the study's team and the trial's study are cached; reading a trial costs
    # only the read itself (one statement), none for the token or the team checks.
    assert _statements(app_client, lambda: app_client.get(f"{API}/trials/{trial['id']}")) == 1
    # A well-shaped token that is not a live one is looked up (and refused).
    fake = "hpo_" + "B" * 43
    bad = app_client.get(f"{API}/studies/{sid}", headers={"Authorization": f"Bearer {fake}"})
    assert_error(bad, 401, "unauthorized")
