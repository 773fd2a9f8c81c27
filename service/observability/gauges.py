"""Per-study gauges, read from the database at scrape time.

Counting in each process would be wrong as soon as two processes serve the same study (or the
reaper of one requeues the trial another handed out); the database is the truth, so every
scrape reads it once (``repository.trial_counts`` and ``repository.handout_states``, in one read
transaction), and every server process reports the same values (aggregate them with ``max``).
When the database does not answer (or no connection is free in time), the scrape still succeeds
with the process's own metrics and ``hpo_database_up 0``.

``hpo_trials_ready{task}`` is the demand a worker autoscaler (KEDA) reads: per training task,
how many trials a claim could hand out now, by the rules of ``StudyView.next_handout``
(:func:`trials_ready`); ``hpo_trials_leased{task}`` is the work in progress beside it.
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


READY_HELP = (
    "Trials a claim could hand out now, per study task (study state, max_parallel, max_trials"
    " and queued trials respected; paused trials count as ready); a study with neither"
    " max_parallel nor max_trials counts its waiting and paused trials + 1."
)
LEASED_HELP = "Trials holding a lease, per study task."


def trials_ready(study: repo.StudyHandoutState) -> int:
    """How many trials the study could hand out now, one claim after another.

    Nothing unless the study is running. ``max_parallel`` leaves ``max_parallel - leased``
    slots; ``max_trials`` leaves the retries (already counted) plus ``max_trials - n_started``
    first starts (queued or newly sampled); the smaller limit wins. A study with neither limit
    could hand out without end: it counts its queued trials + 1, so an autoscaler starts a
    worker for it (and one more each time that one is busy) up to its own maximum. Paused
    trials (asha) count as ready on top of the budget (a promotion starts no new trial): whether
    one is promotable now depends on its rung, which only a hand-out decides, and counting them
    keeps an autoscaler from scaling to zero while promotions wait.
    """
    if study.state != "running":
        return 0
    room = None if study.max_parallel is None else max(0, study.max_parallel - study.leased)
    supply = (
        None
        if study.max_trials is None
        else study.retries + study.paused + max(0, study.max_trials - study.n_started)
    )
    if room is None and supply is None:
        return study.queued + study.paused + 1
    return min(limit for limit in (room, supply) if limit is not None)


class StudyGauges:
    """A prometheus_client collector: ``hpo_study_trials{study_id,state}``,
    ``hpo_study_queue_depth{study_id}``, ``hpo_trials_ready{task}``,
    ``hpo_trials_leased{task}`` and ``hpo_database_up``."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    def collect(self) -> Iterator[Metric]:
        studies: list[repo.StudyTrialCounts] | None
        handouts: list[repo.StudyHandoutState] = []
        try:
            with self._uow.read() as conn:
                studies = repo.trial_counts(conn)
                handouts = repo.handout_states(conn)
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
        yield from _per_task(handouts)


def _per_task(studies: list[repo.StudyHandoutState]) -> Iterator[Metric]:
    """The ready and leased trials summed per task; every task of a study appears, 0 included."""
    ready: dict[str, int] = {}
    leased: dict[str, int] = {}
    for study in studies:
        ready[study.task] = ready.get(study.task, 0) + trials_ready(study)
        leased[study.task] = leased.get(study.task, 0) + study.leased
    ready_family = GaugeMetricFamily("hpo_trials_ready", READY_HELP, labels=["task"])
    leased_family = GaugeMetricFamily("hpo_trials_leased", LEASED_HELP, labels=["task"])
    for task in sorted(ready):
        ready_family.add_metric([task], ready[task])
        leased_family.add_metric([task], leased[task])
    yield ready_family
    yield leased_family
