"""``kill -9`` of random workers, repeatedly, while a study runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cluster import Database, StudyPlan
from tests.faults.scenarios import worker_kills

pytestmark = pytest.mark.slow


def test_killed_workers_lose_and_duplicate_no_trial(database: Database, tmp_path: Path) -> None:
    """The issue's scenario is 200 trials on 8 workers (``bench/chaos.py`` runs it); here 40
    trials on 4 workers and 6 kills, to fit the fault suite in about three minutes on two cores.

    Every kill must hit a worker in the middle of a trial (its lease then expires and the trial
    is leased again, as the same trial), and the study must end with exactly ``max_trials``
    trials finished once each.
    """
    plan = StudyPlan(trials=40, workers=4, steps=6, sleep_s=0.15, lease_seconds=3)
    report = worker_kills(database, plan, tmp_path, kills=6)
    report.assert_sound()
    assert len(report.faults) == 6, report.explain()
    assert not report.missed, [f.target for f in report.missed]
    assert report.audit.retried >= 1
    assert all(f.recovered_s is not None for f in report.faults)  # every killed trial ran again
    assert report.audit.states["COMPLETE"] + report.audit.states["FAIL"] == plan.trials
