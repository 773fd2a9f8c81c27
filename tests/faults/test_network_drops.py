"""Connections between workers and the API dropped mid-request."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cluster import Database, StudyPlan
from tests.faults.proxy import DROP_MODES
from tests.faults.scenarios import network_drops

pytestmark = pytest.mark.slow

CLAIM = "POST /trials/claim"
REPORT = "POST /trials/{id}/report"
COMPLETE = "POST /trials/{id}/complete"


def test_dropped_connections_neither_lose_nor_duplicate_trials(
    database: Database, tmp_path: Path
) -> None:
    """Every 3rd trial request of each endpoint is dropped: before it reaches the server, after
    the server handled it (the answer is lost), or mid-answer, in turn. Retries with the same
    Idempotency-Key (claim) or lease token (report, complete) must find what the lost answer
    said: no lease is left to expire (every trial runs once), nothing is stored twice."""
    plan = StudyPlan(trials=16, workers=4, lease_seconds=8)
    report = network_drops(database, plan, tmp_path, every_nth=3)
    report.assert_sound()
    for name in (CLAIM, REPORT, COMPLETE):
        for mode in DROP_MODES:
            assert report.drops[(mode, name)] >= 1, (mode, name, report.explain())
    lost_leases = (
        report.lost_answers[("after", CLAIM, 200)] + report.lost_answers[("mid", CLAIM, 200)]
    )
    lost_completions = report.lost_answers[("after", COMPLETE, 200)]
    assert lost_leases >= 1 and lost_completions >= 1, report.explain()
    assert report.audit.retried == 0, report.explain()
