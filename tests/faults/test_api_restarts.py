"""The API process killed and restarted mid-study; two API processes behind the workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cluster import Database, StudyPlan
from tests.faults.scenarios import api_restarts, two_apis

pytestmark = pytest.mark.slow


def test_workers_ride_out_an_api_restart(database: Database, tmp_path: Path) -> None:
    """SIGKILL of the only API process, twice, with trials in flight; it comes back on the same
    port. Leases (20 s) outlive the outage: workers keep training, queue their reports, and
    deliver once the API answers, so no trial even needs a second attempt."""
    plan = StudyPlan(trials=24, workers=4, lease_seconds=20)
    report = api_restarts(database, plan, tmp_path, restarts=2, down_s=1.0)
    report.assert_sound()
    assert len(report.faults) == 2 and not report.missed, report.explain()
    assert all(f.recovered_s is not None for f in report.faults), report.explain()
    assert report.audit.retried == 0, report.explain()


def test_workers_fail_over_between_two_api_processes(database: Database, tmp_path: Path) -> None:
    """Two API processes serve the study at once (half the workers use each, the other as
    fail-over). Each is killed in turn while trials are in flight: the workers that used it
    must go on through the other one (the kill "hits" only if one of them started or finished
    a trial while it was down), and the study ends with nothing lost."""
    plan = StudyPlan(trials=24, workers=4, lease_seconds=5)
    report = two_apis(database, plan, tmp_path)
    report.assert_sound()
    assert len(report.faults) == 2 and not report.missed, report.explain()
