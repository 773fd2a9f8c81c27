"""PostgreSQL restarted mid-study (a private server the test may stop; never the machine's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cluster import StudyPlan
from tests.faults.scenarios import postgres_restarts

pytestmark = pytest.mark.slow


def test_server_and_workers_recover_from_a_postgres_restart(tmp_path: Path) -> None:
    """PostgreSQL is stopped cleanly (``-m fast``), later as after a crash (``-m immediate``),
    each time for 2 s with trials in flight. The server answers 503 meanwhile and replaces its
    broken connections, its LISTEN thread reconnects, workers retry; the study completes."""
    plan = StudyPlan(trials=24, workers=4, lease_seconds=5)
    report = postgres_restarts(plan, tmp_path, modes=("fast", "immediate"), down_s=2.0)
    report.assert_sound()
    assert len(report.faults) == 2 and not report.missed, report.explain()
    assert all(f.recovered_s is not None for f in report.faults), report.explain()
