"""The ``event(...)`` CTE: how statements append to ``hpo_events``."""

from __future__ import annotations

from service.sampling.repository import CURRENT_XID


def event(name: str, kind: str, source: str, study: str, trial: str, payload: str) -> str:
    """A CTE that appends one event per row of ``source`` to ``hpo_events`` (a trigger
    NOTIFYs ``hpo_events`` listeners at the end of the statement)."""
    return f"""{name} AS (
        INSERT INTO hpo_events (xid, study_id, trial_id, kind, payload)
        SELECT {CURRENT_XID}, {study}, {trial}, '{kind}', {payload} FROM {source}
    )"""
