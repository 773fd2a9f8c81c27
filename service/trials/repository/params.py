"""One parameter added to a running trial (define-by-run), under its lease."""

from __future__ import annotations

from optuna.distributions import BaseDistribution, distribution_to_json
from sqlalchemy import Connection

from service.db.prepared import Statement
from service.trials.repository.leases import extend_live_lease

_ADD_PARAM = Statement(
    f"""
    WITH h AS ({extend_live_lease("h.trial_id")}), p AS (
        INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
        SELECT h.trial_id, :name, :value, :dist FROM h
        RETURNING trial_id
    )
    SELECT (SELECT count(*) FROM p) AS added FROM h
    """
)


def add_param(
    conn: Connection,
    trial_id: int,
    token: str,
    name: str,
    value: float,
    distribution: BaseDistribution,
) -> bool:
    """Store one parameter (``value`` in Optuna's internal representation) of the trial that
    ``token`` holds a live lease on, extend the lease and stamp the trial changed (so every
    process's view reads it); False, with nothing changed, when the lease is not live. The
    caller holds the study's ask lock and checked the trial does not hold ``name`` yet."""
    row = _ADD_PARAM.one_or_none(
        conn,
        {
            "trial_id": trial_id,
            "token": token,
            "name": name,
            "value": value,
            "dist": distribution_to_json(distribution),
        },
    )
    return row is not None
