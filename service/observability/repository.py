"""The SQL behind the per-study gauges: trials by state, one statement per scrape."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text

from service.states import API_STATE, TRIAL_STATES, TrialStateName

# Every study of the service, with its trials counted by state (a study without trials has
# one row with a NULL state). One pass over ``trials``, grouped.
_COUNTS = text(
    """
    SELECT s.study_id, t.state::text AS state, count(t.trial_id) AS n
      FROM hpo_studies s
      LEFT JOIN trials t ON t.study_id = s.study_id
     GROUP BY s.study_id, t.state
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
            counts.by_state[API_STATE[row.state]] = int(row.n)
    return list(studies.values())
