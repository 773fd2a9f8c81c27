"""Calls under a lease: heartbeat, report, finish, release, and why one failed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from service.db.prepared import Statement
from service.notify import WORK_CHANNEL
from service.sampling.repository import CHANGED_TRIALS_SQL, CURRENT_XID, ChangedTrial
from service.sampling.rows import to_stored
from service.states import OptunaTrialState, StoredStudyState
from service.trials.repository.encoding import attr_arrays
from service.trials.repository.events import event
from service.trials.repository.rows import LeaseState, TrialRow
from service.usage.gpu_time import end_attempt_cte, gpu_spent_sql


def extend_live_lease(returning: str, *, stamp: bool = True) -> str:
    """The ``UPDATE`` that extends the live lease ``:token`` holds on ``:trial_id`` by its
    study's ``lease_seconds`` (``h`` is the trial's ``hpo_trials`` row, ``s`` its study), stamping
    the trial changed unless ``stamp`` is False; no row when the lease is not live."""
    changed = f", change_xid = {CURRENT_XID}" if stamp else ""
    return f"""
    UPDATE hpo_trials h
       SET lease_expires_at = now() + make_interval(secs => s.lease_seconds){changed}
      FROM hpo_studies s
     WHERE h.trial_id = :trial_id AND h.lease_token = :token AND h.lease_expires_at > now()
       AND s.study_id = h.study_id
    RETURNING {returning}"""


_HEARTBEAT = Statement(
    extend_live_lease(
        f"h.lease_expires_at, s.state, {gpu_spent_sql('s')} AS gpu_spent", stamp=False
    )
)


@dataclass(frozen=True)
class Renewed:
    """A lease extended: its new expiry, the state of the trial's study, and whether the
    study's ``max_gpu_hours`` is used."""

    expires_at: dt.datetime
    study_state: StoredStudyState
    gpu_spent: bool = False


def heartbeat(conn: Connection, trial_id: int, token: str) -> Renewed | None:
    """Extend a live lease by the study's ``lease_seconds``; None if the lease is not live."""
    row = _HEARTBEAT.one_or_none(conn, {"trial_id": trial_id, "token": token})
    if row is None:
        return None
    return Renewed(row["lease_expires_at"], row["state"], bool(row["gpu_spent"]))


_REPORT = Statement(
    f"""
    WITH lease AS ({
        extend_live_lease(f"h.trial_id, h.study_id, s.state, {gpu_spent_sql('s')} AS gpu_spent")
    }), i AS (
        INSERT INTO trial_intermediate_values
               (trial_id, step, intermediate_value, intermediate_value_type)
        SELECT lease.trial_id, CAST(:step AS int), CAST(:value AS float8),
               CAST(:value_type AS trialintermediatevaluetype) FROM lease
        ON CONFLICT (trial_id, step) DO NOTHING
        RETURNING trial_id
    ), {
        event(
            "e",
            "trial_reported",
            "i JOIN lease ON lease.trial_id = i.trial_id",
            "lease.study_id",
            "i.trial_id",
            "jsonb_build_object('number', (SELECT number FROM trials WHERE trial_id = i.trial_id),"
            " 'step', CAST(:step AS int), 'value', CAST(:value AS float8))",
        )
    }
    SELECT lease.study_id, lease.state, lease.gpu_spent, (SELECT count(*) FROM i) AS inserted,
           (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint AS horizon,
           (SELECT json_agg(c) FROM ({CHANGED_TRIALS_SQL.replace(":study_id", "lease.study_id")})
               AS c) AS changed
      FROM lease
    """
)


@dataclass(frozen=True)
class Reported:
    """A stored report, with the study's trials changed since the caller's view cursor (read in
    the same statement, so they do not include this report itself)."""

    study_id: int
    study_state: StoredStudyState
    inserted: bool
    horizon: int
    changed: list[ChangedTrial]
    gpu_spent: bool = False  # the study's max_gpu_hours is used


def report(
    conn: Connection, trial_id: int, token: str, step: int, value: float, cursor: int
) -> Reported | None:
    """Store one intermediate value (a repeated step keeps the first) and extend the lease."""
    stored, kind = to_stored(value)
    row = _REPORT.one_or_none(
        conn,
        {
            "trial_id": trial_id,
            "token": token,
            "step": step,
            "value": stored,
            "value_type": kind,
            "cursor": cursor,
        },
    )
    if row is None:
        return None
    return Reported(
        row["study_id"],
        row["state"],
        bool(row["inserted"]),
        int(row["horizon"]),
        list(row["changed"] or []),
        bool(row["gpu_spent"]),
    )


_FINISH = Statement(
    f"""
    WITH h AS (
        UPDATE hpo_trials
           SET lease_token = NULL, lease_expires_at = NULL, finish_token = :token,
               fail_reason = :fail_reason, paused_step = NULL, change_xid = {CURRENT_XID}
         WHERE trial_id = :trial_id AND lease_token = :token AND lease_expires_at > now()
           AND (:state <> 'COMPLETE'
                OR (SELECT count(*) FROM study_directions d
                     WHERE d.study_id = hpo_trials.study_id) = :n_values)
        RETURNING trial_id, study_id, attempt, worker_id, fail_reason
    ), t AS (
        UPDATE trials SET state = CAST(:state AS trialstate),
                          datetime_complete = now() AT TIME ZONE 'utc'
          FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.study_id, trials.number, trials.state::text AS state,
                  trials.datetime_start, trials.datetime_complete
    ), v AS (
        INSERT INTO trial_values (trial_id, objective, value, value_type)
        SELECT h.trial_id, x.objective, x.value, CAST(x.kind AS trialvaluetype)
          FROM h, unnest(CAST(:objectives AS int[]), CAST(:values AS float8[]),
                         CAST(:kinds AS text[])) AS x(objective, value, kind)
    ), u AS (
        INSERT INTO trial_user_attributes (trial_id, key, value_json)
        SELECT h.trial_id, x.key, x.value
          FROM h, unnest(CAST(:ua_keys AS text[]), CAST(:ua_values AS text[])) AS x(key, value)
        ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
    ), n AS (SELECT pg_notify('{WORK_CHANNEL}', CAST(h.study_id AS text)) FROM h),
    {end_attempt_cte("g", "h", "now()", "lower(CAST(:state AS text))")},
    {
        event(
            "e",
            "trial_finished",
            "t JOIN h ON h.trial_id = t.trial_id",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number,"
            " 'state', CASE t.state WHEN 'FAIL' THEN 'failed' ELSE lower(t.state) END,"
            " 'values', to_jsonb(CAST(:values AS float8[])), 'fail_reason', h.fail_reason)",
        )
    }
    -- Subqueries see the snapshot of the statement: params and intermediate values (unchanged)
    -- are read as they are; values and new user attributes are the ones written above.
    SELECT t.trial_id, t.study_id, t.number, t.state, t.datetime_start, t.datetime_complete,
           h.attempt, h.worker_id, h.fail_reason, NULL::timestamptz AS lease_expires_at,
           NULL::timestamptz AS queued_at,
           (SELECT json_agg(json_build_array(p.param_name, p.param_value, p.distribution_json))
              FROM trial_params p WHERE p.trial_id = t.trial_id) AS params,
           (SELECT json_agg(json_build_array(x.objective, x.value, x.kind))
              FROM unnest(CAST(:objectives AS int[]), CAST(:values AS float8[]),
                          CAST(:kinds AS text[])) AS x(objective, value, kind)) AS trial_values,
           (SELECT json_agg(json_build_array(i.step, i.intermediate_value,
                                             i.intermediate_value_type) ORDER BY i.step)
              FROM trial_intermediate_values i WHERE i.trial_id = t.trial_id) AS intermediate,
           (SELECT json_object_agg(a.key, a.value_json) FROM (
                SELECT key, value_json FROM trial_user_attributes
                 WHERE trial_id = t.trial_id AND key <> ALL(CAST(:ua_keys AS text[]))
                UNION ALL
                SELECT * FROM unnest(CAST(:ua_keys AS text[]), CAST(:ua_values AS text[]))
            ) AS a(key, value_json)) AS user_attrs,
           NULL::json AS system_attrs,
           (SELECT count(*) FROM n) AS notified
      FROM h JOIN t ON t.trial_id = h.trial_id
    """
)


def finish(
    conn: Connection,
    *,
    trial_id: int,
    token: str,
    state: OptunaTrialState,
    values: Sequence[float] | None,
    fail_reason: str | None,
    user_attrs: Mapping[str, Any],
) -> TrialRow | None:
    """Finish a leased trial (COMPLETE, PRUNED or FAIL) and return it as ``get_trial`` would;
    None if the token holds no live lease (or, for COMPLETE, the number of values is wrong)."""
    stored = [to_stored(v) for v in values or ()]
    row = _FINISH.one_or_none(
        conn,
        {
            "trial_id": trial_id,
            "token": token,
            "state": state,
            "fail_reason": fail_reason,
            "n_values": len(stored),
            "objectives": list(range(len(stored))),
            "values": [v for v, _ in stored],
            "kinds": [k for _, k in stored],
            **attr_arrays(user_attrs, "ua"),
        },
    )
    return None if row is None else TrialRow.of(row)


_RELEASE = text(
    f"""
    WITH h AS (
        UPDATE hpo_trials
           SET lease_token = NULL, lease_expires_at = NULL,
               queued_at = CASE WHEN paused_step IS NULL THEN clock_timestamp() END,
               change_xid = {CURRENT_XID}
         WHERE trial_id = :trial_id AND lease_token = :token AND lease_expires_at > now()
        RETURNING trial_id, study_id, paused_step
    ), t AS (
        UPDATE trials SET state = 'WAITING' FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.number
    ), n AS (SELECT pg_notify('{WORK_CHANNEL}', CAST(h.study_id AS text)) FROM h),
    {
        end_attempt_cte(
            "g",
            "h",
            "now()",
            "CASE WHEN h.paused_step IS NULL THEN 'released' ELSE 'paused' END",
        )
    },
    {
        event(
            "e",
            "trial_requeued",
            "t JOIN h ON h.trial_id = t.trial_id AND h.paused_step IS NULL",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'reason', 'released')",
        )
    },
    {
        event(
            "p",
            "trial_paused",
            "t JOIN h ON h.trial_id = t.trial_id AND h.paused_step IS NOT NULL",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'step', h.paused_step, 'reason', 'released')",
        )
    }
    SELECT h.study_id, (SELECT count(*) FROM n),
           (SELECT s.max_gpu_hours IS NOT NULL FROM hpo_studies s
             WHERE s.study_id = h.study_id) AS gpu_budget
      FROM h
    """
)


@dataclass(frozen=True)
class Released:
    """A lease given back: the trial's study, and whether it has a ``max_gpu_hours``."""

    study_id: int
    gpu_budget: bool


def release(conn: Connection, trial_id: int, token: str) -> Released | None:
    """Give a leased trial back (no retry is used up): to the queue, or, when the ``asha``
    pruner told it to pause (``paused_step`` set), paused; its attempt ends now."""
    row = conn.execute(_RELEASE, {"trial_id": trial_id, "token": token}).one_or_none()
    return None if row is None else Released(int(row.study_id), bool(row.gpu_budget))


_MARK_PAUSED = Statement(
    f"""
    UPDATE hpo_trials SET paused_step = :step, change_xid = {CURRENT_XID}
     WHERE trial_id = :trial_id AND lease_token = :token AND paused_step IS NULL
    """
)


_GRANT = Statement(
    f"""
    UPDATE hpo_trials SET resource_granted = :units, change_xid = {CURRENT_XID}
     WHERE trial_id = :trial_id AND lease_token = :token
    """
)


def grant_resource(conn: Connection, trial_id: int, token: str, units: int) -> None:
    """The ``asha`` pruner let the leased trial continue up to ``units`` resource units."""
    _GRANT.run(conn, {"trial_id": trial_id, "token": token, "units": units})


def mark_paused(conn: Connection, trial_id: int, token: str, step: int) -> None:
    """The ``asha`` pruner paused the leased trial at ``step``: it becomes paused when its lease
    is handed back or expires (a repeated decision keeps the first step)."""
    _MARK_PAUSED.run(conn, {"trial_id": trial_id, "token": token, "step": step})


_LEASE_STATE = text(
    """
    SELECT t.state::text AS trial_state, h.study_id, h.lease_token,
           coalesce(h.lease_expires_at > now(), false) AS lease_live, h.finish_token,
           (SELECT count(*) FROM study_directions d WHERE d.study_id = h.study_id) AS directions
      FROM hpo_trials h JOIN trials t ON t.trial_id = h.trial_id
     WHERE h.trial_id = :trial_id
    """
)


def lease_state(conn: Connection, trial_id: int) -> LeaseState | None:
    row = conn.execute(_LEASE_STATE, {"trial_id": trial_id}).mappings().one_or_none()
    return None if row is None else LeaseState(**row)


def touch_trial(conn: Connection, trial_id: int) -> None:
    """Mark a trial changed (for views and change feeds) without changing anything else."""
    conn.execute(
        text(f"UPDATE hpo_trials SET change_xid = {CURRENT_XID} WHERE trial_id = :trial_id"),
        {"trial_id": trial_id},
    )
