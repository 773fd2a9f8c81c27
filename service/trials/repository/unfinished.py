"""The end of trials nothing more can happen to: finished as PRUNED at their last value.

Three cases share one statement: the paused trials left when an ``asha`` study's budget is
spent, or a paused ``pbt`` member that a child replaces (``finish_paused``), and every trial
that waits without a lease once a study's GPU-hour budget is used (``finish_waiting``). The
caller holds the study's ask lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from sqlalchemy import Connection, text

from service.sampling.repository import CURRENT_XID
from service.trials.repository.events import event


def _finish_as_pruned(which: str, clear: str, reason: str) -> str:
    """The statement that finishes the study's ``hpo_trials`` rows matching ``which`` (their
    Optuna state WAITING, no lease) as PRUNED, setting ``clear``; its rows are their ids."""
    return f"""
    WITH h AS (
        UPDATE hpo_trials
           SET {clear}, change_xid = {CURRENT_XID}
         WHERE study_id = :study_id AND lease_token IS NULL AND ({which})
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
            f" 'fail_reason', NULL, 'reason', '{reason}')",
        )
    }
    SELECT t.trial_id FROM t ORDER BY t.trial_id
    """


PausedEnd = Literal["budget_spent", "replaced"]
_FINISH_PAUSED = {
    reason: text(
        _finish_as_pruned(
            "trial_id = ANY(CAST(:ids AS int[])) AND paused_step IS NOT NULL",
            "paused_step = NULL",
            reason,
        )
    )
    for reason in get_args(PausedEnd)
}

_FINISH_WAITING = text(
    _finish_as_pruned(
        "paused_step IS NOT NULL OR queued_at IS NOT NULL",
        "paused_step = NULL, queued_at = NULL",
        "gpu_budget_spent",
    )
)


def finish_paused(
    conn: Connection,
    study_id: int,
    trial_ids: Sequence[int],
    reason: PausedEnd = "budget_spent",
) -> list[int]:
    """Finish these paused trials: nothing more can happen to them (``budget_spent``), or a
    pbt child replaces one (``replaced``). The ids of those that were still paused."""
    params = {"study_id": study_id, "ids": list(trial_ids)}
    rows = conn.execute(_FINISH_PAUSED[reason], params).all()
    return [int(r.trial_id) for r in rows]


def finish_waiting(conn: Connection, study_id: int) -> list[int]:
    """Finish every trial of the study that waits without a lease (queued: a retry, a released
    trial, an enqueued one or a pbt child; or paused): the study's ``max_gpu_hours`` is used,
    so none of them can run again. Their ids."""
    rows = conn.execute(_FINISH_WAITING, {"study_id": study_id}).all()
    return [int(r.trial_id) for r in rows]
