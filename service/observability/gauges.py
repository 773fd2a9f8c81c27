"""Per-study gauges, read from the database at scrape time.

Counting in each process would be wrong as soon as two processes serve the same study (or the
reaper of one requeues the trial another handed out); the database is the truth, so every
scrape reads it once (``repository.trial_counts``). When the database does not answer (or no
connection is free in time), the scrape still succeeds with the process's own metrics and
``hpo_database_up 0``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from service.db.unit_of_work import UnitOfWork
from service.errors import DatabaseUnavailable
from service.observability import repository as repo
from service.states import TRIAL_STATES

logger = logging.getLogger(__name__)


class StudyGauges:
    """A prometheus_client collector: ``hpo_study_trials{study_id,state}``,
    ``hpo_study_queue_depth{study_id}`` and ``hpo_database_up``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def collect(self) -> Iterator[Metric]:
        studies: list[repo.StudyTrialCounts] | None
        try:
            with self._uow.read() as conn:
                studies = repo.trial_counts(conn)
        except DatabaseUnavailable as exc:  # down, or the pool exhausted (a busy server)
            logger.warning("metrics: the database did not answer: %s", exc)
            studies = None
        yield GaugeMetricFamily(
            "hpo_database_up",
            "1 when the database answered this scrape.",
            value=0 if studies is None else 1,
        )
        if studies is None:
            return
        trials = GaugeMetricFamily(
            "hpo_study_trials", "Trials of each study by state.", labels=["study_id", "state"]
        )
        queue = GaugeMetricFamily(
            "hpo_study_queue_depth",
            "Trials of each study waiting to be handed out (retries and enqueued trials).",
            labels=["study_id"],
        )
        for study in studies:
            study_id = str(study.study_id)
            for state in TRIAL_STATES:
                trials.add_metric([study_id, state], study.by_state[state])
            queue.add_metric([study_id], study.waiting)
        yield trials
        yield queue
