"""What authentication costs in SQL: nothing for a token of the wrong shape, nothing once a
token and a study are known to the process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.api.helpers import API, ask, assert_error, create_study
from tests.conftest import server_settings
from tests.round_trips import RoundTrips
from tests.support import ScratchDatabase


@pytest.fixture
def app_client(
    db: ScratchDatabase, tmp_path: Path, round_trips: RoundTrips
) -> Iterator[TestClient]:
    settings = server_settings(db, tmp_path, auth_cache_s=300, reaper_interval_s=300)
    with TestClient(create_app(settings), headers=db.auth_headers) as client:
        yield client


@pytest.mark.parametrize(
    "token",
    ["nope", "hpo_short", "hpo_" + "a" * 42 + "!", "x" * 300, "hpo_" + "A" * 44],
)
def test_a_token_of_the_wrong_shape_is_refused_without_sql(
    app_client: TestClient, round_trips: RoundTrips, token: str
) -> None:
    def call() -> None:
        response = app_client.get(f"{API}/studies", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401, "unauthorized")

    assert round_trips.cost(call) == (0, 0)


def test_a_known_token_and_study_cost_no_auth_sql(
    app_client: TestClient, round_trips: RoundTrips
) -> None:
    sid = create_study(app_client)["id"]
    trial = ask(app_client, sid)
    # Warm: the token, the study's team and the trial's study are cached; reading a trial costs
    # only the read itself (one statement), none for the token or the team checks.
    read = round_trips.cost(lambda: app_client.get(f"{API}/trials/{trial['id']}"))
    assert read[0] == 1
    # A well-shaped token that is not a live one is looked up once (a prepared statement on the
    # raw cursor) and refused; nothing is written.
    fake = "hpo_" + "B" * 43

    def refused() -> None:
        bad = app_client.get(f"{API}/studies/{sid}", headers={"Authorization": f"Bearer {fake}"})
        assert_error(bad, 401, "unauthorized")

    assert round_trips.cost(refused) == (1, 0)
