"""SQL for team usage: attempts (``hpo_trial_attempts``) summed per team over a period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, text

from service.usage.gpu_time import ATTEMPT_END_SQL

_USAGE = text(
    f"""
    WITH x AS (
        SELECT s.team_id, a.study_id, a.trial_id, a.gpus, a.started_at,
               {ATTEMPT_END_SQL} AS ended_at
          FROM hpo_trial_attempts a
          JOIN hpo_studies s ON s.study_id = a.study_id
          LEFT JOIN hpo_trials h ON h.trial_id = a.trial_id
         WHERE a.started_at < CAST(:until AS timestamptz)
           AND (a.ended_at IS NULL OR a.ended_at > CAST(:since AS timestamptz))
           AND (CAST(:team_id AS int) IS NULL OR s.team_id = :team_id)
    )
    SELECT tm.name AS team,
           CAST(coalesce(sum(x.gpus * greatest(0, extract(epoch FROM
                    least(x.ended_at, CAST(:until AS timestamptz))
                    - greatest(x.started_at, CAST(:since AS timestamptz))))), 0) AS float8)
               / 3600 AS gpu_hours,
           count(DISTINCT x.trial_id) FILTER (WHERE x.started_at >= CAST(:since AS timestamptz))
               AS trials_started,
           count(x.trial_id) FILTER (WHERE x.started_at >= CAST(:since AS timestamptz))
               AS attempts_started,
           count(DISTINCT x.study_id) AS studies
      FROM hpo_teams tm LEFT JOIN x ON x.team_id = tm.team_id
     WHERE CAST(:team_id AS int) IS NULL OR tm.team_id = :team_id
     GROUP BY tm.team_id, tm.name
     ORDER BY tm.name
    """
)


@dataclass(frozen=True)
class TeamUsage:
    team: str
    gpu_hours: float
    trials_started: int
    attempts_started: int
    studies: int


def team_usage(
    conn: Connection, since: dt.datetime, until: dt.datetime, team_id: int | None
) -> list[TeamUsage]:
    """Each team's usage over ``[since, until)`` (only ``team_id``'s unless None), by name."""
    rows = conn.execute(_USAGE, {"since": since, "until": until, "team_id": team_id}).mappings()
    return [
        TeamUsage(
            team=r["team"],
            gpu_hours=float(r["gpu_hours"]),
            trials_started=int(r["trials_started"]),
            attempts_started=int(r["attempts_started"]),
            studies=int(r["studies"]),
        )
        for r in rows
    ]
