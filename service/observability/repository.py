"""The SQL behind the per-study gauges: trials by state, one statement per scrape."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from service.states import API_STATE_SQL, TRIAL_STATES, TrialStateName

# Every study of the service, with its trials counted by state (a study without trials has
# one row with a NULL state). One pass over ``trials``, grouped.
_COUNTS = text(
    f"""
    SELECT s.study_id, CASE WHEN t.trial_id IS NOT NULL THEN {API_STATE_SQL} END AS state,
           count(t.trial_id) AS n
      FROM hpo_studies s
      LEFT JOIN trials t ON t.study_id = s.study_id
      LEFT JOIN hpo_trials h ON h.trial_id = t.trial_id
     GROUP BY 1, 2
     ORDER BY s.study_id
    """
)


@dataclass(frozen=True)
class StudyTrialCounts:
    """A study's trials by API state (``waiting``, ``running``, ...); every state present."""

    study_id: int
    by_state: dict[TrialStateName, int] = field(
        default_factory=lambda: dict.fromkeys(TRIAL_STATES, 0)
    )

    @property
    def waiting(self) -> int:
        """The study's queue depth: trials waiting to be handed out (retries, enqueued)."""
        return self.by_state["waiting"]


def trial_counts(conn: Connection) -> list[StudyTrialCounts]:
    """Every study's trials by state, in study id order."""
    studies: dict[int, StudyTrialCounts] = {}
    for row in conn.execute(_COUNTS):
        counts = studies.setdefault(row.study_id, StudyTrialCounts(row.study_id))
        if row.state is not None:
            counts.by_state[row.state] = int(row.n)
    return list(studies.values())


# Every study with what its next hand-outs depend on (``StudyView.next_handout``): its state
# and limits, the trials holding a lease, the queued ones, and the queued ones that were
# started before (retries, which the budget already counted), and the paused ones (asha). Only
# leased, queued or paused trials are joined, so finished trials cost nothing.
_HANDOUT_STATE = text(
    """
    SELECT s.study_id, s.task_name, s.state, s.max_trials, s.max_parallel, s.n_started,
           count(h.trial_id) FILTER (WHERE h.lease_token IS NOT NULL) AS leased,
           count(h.trial_id) FILTER (WHERE h.queued_at IS NOT NULL) AS queued,
           count(h.trial_id) FILTER (WHERE h.queued_at IS NOT NULL AND h.attempt > 0) AS retries,
           count(h.trial_id) FILTER (
               WHERE h.paused_step IS NOT NULL AND h.lease_token IS NULL) AS paused
      FROM hpo_studies s
      LEFT JOIN hpo_trials h
        ON h.study_id = s.study_id
       AND (h.lease_token IS NOT NULL OR h.queued_at IS NOT NULL OR h.paused_step IS NOT NULL)
     GROUP BY s.study_id
     ORDER BY s.study_id
    """
)


@dataclass(frozen=True)
class StudyHandoutState:
    """What decides how many trials a study could hand out now."""

    study_id: int
    task: str  # the study's task name; "" for a study without a task
    state: str  # running, paused or stopped
    max_trials: int | None
    max_parallel: int | None
    n_started: int  # trials ever started (a retried trial counts once)
    leased: int  # trials holding a lease
    queued: int  # trials waiting to be handed out: retries and enqueued ones
    retries: int  # the queued trials that were started before
    paused: int = 0  # paused trials (asha) a claim may promote


def handout_states(conn: Connection) -> list[StudyHandoutState]:
    """Every study's hand-out state, in study id order."""
    return [
        StudyHandoutState(
            study_id=row.study_id,
            task=row.task_name or "",
            state=row.state,
            max_trials=row.max_trials,
            max_parallel=row.max_parallel,
            n_started=row.n_started,
            leased=int(row.leased),
            queued=int(row.queued),
            retries=int(row.retries),
            paused=int(row.paused),
        )
        for row in conn.execute(_HANDOUT_STATE)
    ]
