"""SQL of the event log (``hpo_events``). Reads only; the trial and study statements write it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, text

from service.live.position import EventPosition

EventKind = Literal[
    "study_created",
    "study_updated",
    "trial_enqueued",
    "trial_started",
    "trial_reported",
    "trial_finished",
    "trial_requeued",
]
"""What ``hpo_events.kind`` holds: the statements of studies and trials write these."""


@dataclass(frozen=True)
class StoredEvent:
    """One event of a study's log; ``payload`` is the kind's JSON object."""

    position: EventPosition
    kind: EventKind
    trial_id: int | None
    payload: dict[str, Any]
    created_at: dt.datetime


@dataclass(frozen=True)
class EventBatch:
    """Events after a position that every reader will ever see in the same order: those of
    transactions below the horizon (all finished). ``blocked``: later events exist already but
    wait for an older transaction to finish."""

    horizon: int
    events: list[StoredEvent]
    blocked: bool


_HORIZON = "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"

_READ = text(
    f"""
    WITH z AS (SELECT {_HORIZON} AS horizon)
    SELECT z.horizon,
           EXISTS (SELECT 1 FROM hpo_events p
                    WHERE p.study_id = :study_id AND (p.xid, p.id) > (:xid, :id)
                      AND p.xid >= z.horizon) AS blocked,
           (SELECT json_agg(json_build_array(e.xid, e.id, e.kind, e.trial_id, e.payload,
                                             e.created_at) ORDER BY e.xid, e.id)
              FROM (SELECT * FROM hpo_events e
                     WHERE e.study_id = :study_id AND (e.xid, e.id) > (:xid, :id)
                       AND e.xid < z.horizon
                     ORDER BY e.xid, e.id
                     LIMIT :limit) AS e) AS events
      FROM z
    """
)


def read_events(conn: Connection, study_id: int, after: EventPosition, limit: int) -> EventBatch:
    """Up to ``limit`` events of the study after ``after``, in (xid, id) order, only of
    transactions below the horizon of this statement's snapshot."""
    row = conn.execute(
        _READ, {"study_id": study_id, "xid": after.xid, "id": after.id, "limit": limit}
    ).one()
    events = [
        StoredEvent(
            position=EventPosition(int(xid), int(event_id)),
            kind=kind,
            trial_id=trial_id,
            payload=payload,
            created_at=dt.datetime.fromisoformat(created_at),
        )
        for xid, event_id, kind, trial_id, payload, created_at in row.events or ()
    ]
    return EventBatch(horizon=int(row.horizon), events=events, blocked=bool(row.blocked))


def read_horizon(conn: Connection) -> int:
    return int(conn.execute(text(f"SELECT {_HORIZON}")).scalar_one())
