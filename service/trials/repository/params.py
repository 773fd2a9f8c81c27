"""One parameter added to a running trial (define-by-run), under its lease."""

from __future__ import annotations

from optuna.distributions import BaseDistribution, distribution_to_json
from sqlalchemy import Connection

from service.db.prepared import Statement
from service.sampling.repository import CURRENT_XID

_ADD_PARAM = Statement(
    f"""
    WITH h AS (
        UPDATE hpo_trials h
           SET lease_expires_at = now() + make_interval(secs => s.lease_seconds),
               change_xid = {CURRENT_XID}
          FROM hpo_studies s
         WHERE h.trial_id = :trial_id AND h.lease_token = :token AND h.lease_expires_at > now()
           AND s.study_id = h.study_id
        RETURNING h.trial_id
    ), p AS (
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
