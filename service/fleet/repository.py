"""SQL for the workers list: ``hpo_workers`` with the live leases each worker holds."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, text

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
) -> list[dict[str, Any]]:
    """The team's workers (every team's for None) seen since ``since`` or holding a live
    lease, by id, after ``after``."""
    params = {"team_id": team_id, "since": since, "after": after, "limit": limit}
    rows = conn.execute(_WORKERS, params)
    return [dict(r) for r in rows.mappings()]
