"""The end of a study whose GPU-hour budget is used: its waiting trials are finished."""

from __future__ import annotations

from sqlalchemy import Connection, text

from service.sampling.repository import CURRENT_XID
from service.trials.repository.events import event

_FINISH_WAITING = text(
    f"""
    WITH h AS (
        UPDATE hpo_trials
           SET paused_step = NULL, queued_at = NULL, change_xid = {CURRENT_XID}
         WHERE study_id = :study_id AND lease_token IS NULL
           AND (paused_step IS NOT NULL OR queued_at IS NOT NULL)
        RETURNING trial_id, study_id
    ), t AS (
        UPDATE trials
           SET state = 'PRUNED',
               datetime_start = coalesce(datetime_start, now() AT TIME ZONE 'utc'),
               datetime_complete = now() AT TIME ZONE 'utc'
          FROM h WHERE trials.trial_id = h.trial_id AND trials.state = 'WAITING'
        RETURNING trials.trial_id, trials.number
    ), last AS (
        SELECT DISTINCT ON (i.trial_id) i.trial_id, i.intermediate_value, i.intermediate_value_type
          FROM trial_intermediate_values i JOIN t ON t.trial_id = i.trial_id
         ORDER BY i.trial_id, i.step DESC
    ), v AS (
        -- As Optuna's tell does for a pruned trial: its value is its last reported one.
        INSERT INTO trial_values (trial_id, objective, value, value_type)
        SELECT last.trial_id, 0, last.intermediate_value,
               CAST(CAST(last.intermediate_value_type AS text) AS trialvaluetype)
          FROM last WHERE CAST(last.intermediate_value_type AS text) <> 'NAN'
        ON CONFLICT DO NOTHING
    ), {
        event(
            "e",
            "trial_finished",
            "t",
            ":study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'state', 'pruned', 'values', NULL,"
            " 'fail_reason', NULL, 'reason', 'gpu_budget_spent')",
        )
    }
    SELECT t.trial_id FROM t ORDER BY t.trial_id
    """
)


def finish_waiting(conn: Connection, study_id: int) -> list[int]:
    """Finish every trial of the study that waits without a lease (queued: a retry, a released
    trial, an enqueued one; or paused) as PRUNED at its last reported value: the study's
    ``max_gpu_hours`` is used, so none of them can run again. The caller holds the study's ask
    lock. Returns their ids."""
    rows = conn.execute(_FINISH_WAITING, {"study_id": study_id}).all()
    return [int(r.trial_id) for r in rows]
