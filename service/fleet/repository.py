"""SQL for the workers list: ``hpo_workers`` with the live leases each worker holds."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class HeldLease:
    """A live lease a worker holds."""

    trial_id: int
    study_id: int
    number: int
    attempt: int
    lease_expires_at: dt.datetime


@dataclass(frozen=True)
class WorkerRow:
    """A worker as ``hpo_workers`` keeps it, with the live leases it holds (by trial id)."""

    worker_id: str
    tasks: list[str] | None
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    leases: list[HeldLease]


_WORKERS = text(
    """
    SELECT w.worker_id, w.tasks, w.first_seen_at, w.last_seen_at,
           coalesce((SELECT json_agg(json_build_object(
                        'trial_id', h.trial_id, 'study_id', h.study_id, 'number', t.number,
                        'attempt', h.attempt, 'lease_expires_at', h.lease_expires_at)
                      ORDER BY h.trial_id)
                       FROM hpo_trials h JOIN trials t ON t.trial_id = h.trial_id
                       JOIN hpo_studies s ON s.study_id = h.study_id AND s.team_id = w.team_id
                      WHERE h.worker_id = w.worker_id AND h.lease_token IS NOT NULL
                        AND h.lease_expires_at > now()), '[]') AS trials
      FROM hpo_workers w
     WHERE (CAST(:team_id AS int) IS NULL OR w.team_id = :team_id)
       AND (w.last_seen_at >= :since
            OR EXISTS (SELECT 1 FROM hpo_trials h
                         JOIN hpo_studies s ON s.study_id = h.study_id AND s.team_id = w.team_id
                        WHERE h.worker_id = w.worker_id
                          AND h.lease_token IS NOT NULL AND h.lease_expires_at > now()))
       AND (CAST(:after AS text) IS NULL OR w.worker_id > :after)
     ORDER BY w.worker_id
     LIMIT :limit
    """
)


def list_workers(
    conn: Connection, *, team_id: int | None, since: dt.datetime, after: str | None, limit: int
) -> list[WorkerRow]:
    """The team's workers (every team's for None) seen since ``since`` or holding a live
    lease, by id, after ``after``."""
    params = {"team_id": team_id, "since": since, "after": after, "limit": limit}
    return [
        WorkerRow(
            worker_id=r.worker_id,
            tasks=r.tasks,
            first_seen_at=r.first_seen_at,
            last_seen_at=r.last_seen_at,
            leases=[_lease(t) for t in r.trials],
        )
        for r in conn.execute(_WORKERS, params)
    ]


def _lease(held: dict[str, Any]) -> HeldLease:
    """One element of the ``json_agg`` (its timestamp as ISO text)."""
    return HeldLease(
        trial_id=held["trial_id"],
        study_id=held["study_id"],
        number=held["number"],
        attempt=held["attempt"],
        lease_expires_at=dt.datetime.fromisoformat(held["lease_expires_at"]),
    )


_RECENT_TASKS = text(
    """
    SELECT tm.name AS team, array_agg(DISTINCT x.task) AS tasks
      FROM hpo_workers w
      JOIN hpo_teams tm ON tm.team_id = w.team_id
     CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(w.tasks, '[]'::jsonb)) AS x(task)
     WHERE tm.name = ANY(CAST(:teams AS text[]))
       AND w.last_seen_at > now() - make_interval(secs => :within_s)
     GROUP BY tm.name
    """
)


def recent_tasks(conn: Connection, teams: Sequence[str], within_s: float) -> dict[str, set[str]]:
    """Per team (by name), the tasks its workers announced in the last ``within_s`` seconds."""
    rows = conn.execute(_RECENT_TASKS, {"teams": list(teams), "within_s": within_s}).all()
    return {str(r.team): set(r.tasks) for r in rows}
