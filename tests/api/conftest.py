"""Fixtures of the API tests."""

from __future__ import annotations

import pytest

from tests.round_trips import RoundTrips


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> RoundTrips:
    """Counts the round trips of the app the test builds (installed before it builds it)."""
    counter = RoundTrips()
    counter.install(monkeypatch)
    return counter
