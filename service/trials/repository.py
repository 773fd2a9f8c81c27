"""SQL for trials. Repositories execute; they never commit (the service owns the transaction).

Each hot-path operation is one statement (data-modifying CTEs) so that a hand-out, a report or a
completion costs one round trip besides the transaction's own. Every statement that changes a
trial stamps ``hpo_trials.change_xid`` (see ``service.sampling.repository``) and every change that
makes work available sends ``NOTIFY hpo_work`` (delivered at commit) to wake long-polling claims.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, distribution_to_json
from sqlalchemy import Connection, text

from service.db.prepared import Statement
from service.notify import WORK_CHANNEL
from service.sampling.repository import CHANGED_TRIALS_SQL, CURRENT_XID, TRIAL_AGGREGATES
from service.sampling.rows import to_stored


def event(name: str, kind: str, source: str, study: str, trial: str, payload: str) -> str:
    """A CTE that appends one event per row of ``source`` to ``hpo_events`` (a trigger
    NOTIFYs ``hpo_events`` listeners at the end of the statement)."""
    return f"""{name} AS (
        INSERT INTO hpo_events (xid, study_id, trial_id, kind, payload)
        SELECT {CURRENT_XID}, {study}, {trial}, '{kind}', {payload} FROM {source}
    )"""


@dataclass(frozen=True)
class NewLease:
    trial_id: int
    number: int
    attempt: int
    expires_at: dt.datetime


def _params_arrays(
    params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]
) -> dict[str, list[Any]]:
    names = list(params)
    return {
        "p_names": names,
        "p_values": [distributions[n].to_internal_repr(params[n]) for n in names],
        "p_dists": [distribution_to_json(distributions[n]) for n in names],
    }


def _attr_arrays(attrs: Mapping[str, Any], prefix: str) -> dict[str, list[str]]:
    return {
        f"{prefix}_keys": list(attrs),
        f"{prefix}_values": [json.dumps(v) for v in attrs.values()],
    }


_INSERT_NEW_TRIAL = Statement(
    f"""
    WITH t AS (
        INSERT INTO trials (number, study_id, state, datetime_start)
        VALUES (:number, :study_id, 'RUNNING', now() AT TIME ZONE 'utc')
        RETURNING trial_id
    ), p AS (
        INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
        SELECT t.trial_id, x.name, x.value, x.dist
          FROM t, unnest(CAST(:p_names AS text[]), CAST(:p_values AS float8[]),
                         CAST(:p_dists AS text[])) AS x(name, value, dist)
    ), a AS (
        INSERT INTO trial_system_attributes (trial_id, key, value_json)
        SELECT t.trial_id, x.key, x.value
          FROM t, unnest(CAST(:sa_keys AS text[]), CAST(:sa_values AS text[])) AS x(key, value)
    ), h AS (
        INSERT INTO hpo_trials (trial_id, study_id, attempt, lease_token, lease_expires_at,
                                worker_id, change_xid)
        SELECT t.trial_id, :study_id, 1, :token, now() + make_interval(secs => :lease_seconds),
               :worker_id, {CURRENT_XID}
          FROM t
        RETURNING lease_expires_at
    ), s AS (
        UPDATE hpo_studies SET n_started = n_started + 1, last_handout_at = now()
         WHERE study_id = :study_id
    ), {
        event(
            "e",
            "trial_started",
            "t",
            ":study_id",
            "t.trial_id",
            "jsonb_build_object('number', :number, 'attempt', 1, 'worker_id', :worker_id)",
        )
    }
    SELECT t.trial_id, h.lease_expires_at FROM t, h
    """
)


def insert_leased_trial(
    conn: Connection,
    *,
    study_id: int,
    number: int,
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    system_attrs: Mapping[str, Any],
    token: str,
    worker_id: str,
    lease_seconds: int,
) -> NewLease:
    """A newly sampled trial, running under a lease, counted against the study's budget."""
    row = _INSERT_NEW_TRIAL.one_or_none(
        conn,
        {
            "study_id": study_id,
            "number": number,
            "token": token,
            "worker_id": worker_id,
            "lease_seconds": lease_seconds,
            **_params_arrays(params, distributions),
            **_attr_arrays(system_attrs, "sa"),
        },
    )
    assert row is not None
    return NewLease(row["trial_id"], number, 1, row["lease_expires_at"])


_LEASE_QUEUED_TRIAL = Statement(
    f"""
    WITH h AS (
        UPDATE hpo_trials
           SET attempt = attempt + 1, lease_token = :token,
               lease_expires_at = now() + make_interval(secs => :lease_seconds),
               worker_id = :worker_id, queued_at = NULL, change_xid = {CURRENT_XID}
         WHERE trial_id = :trial_id AND queued_at IS NOT NULL
        RETURNING trial_id, attempt, lease_expires_at
    ), t AS (
        UPDATE trials SET state = 'RUNNING', datetime_start = now() AT TIME ZONE 'utc'
          FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.number
    ), {
        event(
            "e",
            "trial_started",
            "h JOIN t ON t.trial_id = h.trial_id",
            ":study_id",
            "h.trial_id",
            "jsonb_build_object('number', t.number, 'attempt', h.attempt, 'worker_id', :worker_id)",
        )
    }, p AS (
        INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
        SELECT h.trial_id, x.name, x.value, x.dist
          FROM h, unnest(CAST(:p_names AS text[]), CAST(:p_values AS float8[]),
                         CAST(:p_dists AS text[])) AS x(name, value, dist)
    ), a AS (
        INSERT INTO trial_system_attributes (trial_id, key, value_json)
        SELECT h.trial_id, x.key, x.value
          FROM h, unnest(CAST(:sa_keys AS text[]), CAST(:sa_values AS text[])) AS x(key, value)
        ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
    ), s AS (
        UPDATE hpo_studies
           SET n_started = n_started + CASE WHEN (SELECT attempt FROM h) = 1 THEN 1 ELSE 0 END,
               last_handout_at = now()
         WHERE study_id = :study_id
    )
    SELECT h.trial_id, t.number, h.attempt, h.lease_expires_at FROM h, t
    """
)


def lease_queued_trial(
    conn: Connection,
    *,
    study_id: int,
    trial_id: int,
    new_params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    system_attrs: Mapping[str, Any],
    token: str,
    worker_id: str,
    lease_seconds: int,
) -> NewLease | None:
    """Lease a trial from the queue (a retry, or one a user enqueued), adding ``new_params``.

    The first lease of a trial counts against the budget; later ones (retries) do not.
    None when the trial is no longer queued.
    """
    row = _LEASE_QUEUED_TRIAL.one_or_none(
        conn,
        {
            "study_id": study_id,
            "trial_id": trial_id,
            "token": token,
            "worker_id": worker_id,
            "lease_seconds": lease_seconds,
            **_params_arrays(new_params, distributions),
            **_attr_arrays(system_attrs, "sa"),
        },
    )
    if row is None:
        return None
    return NewLease(row["trial_id"], row["number"], row["attempt"], row["lease_expires_at"])


_UPSERT_STUDY_SYSTEM_ATTRS = text(
    """
    INSERT INTO study_system_attributes (study_id, key, value_json)
    SELECT :study_id, x.key, x.value
      FROM unnest(CAST(:keys AS text[]), CAST(:values AS text[])) AS x(key, value)
    ON CONFLICT (study_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
    """
)

_UPSERT_TRIAL_ATTRS = {
    table: text(
        f"""
        INSERT INTO {table} (trial_id, key, value_json)
        SELECT :trial_id, x.key, x.value
          FROM unnest(CAST(:keys AS text[]), CAST(:values AS text[])) AS x(key, value)
        ON CONFLICT (trial_id, key) DO UPDATE SET value_json = EXCLUDED.value_json
        """
    )
    for table in ("trial_system_attributes", "trial_user_attributes")
}


def upsert_study_system_attrs(conn: Connection, study_id: int, attrs: Mapping[str, Any]) -> None:
    if attrs:
        conn.execute(
            _UPSERT_STUDY_SYSTEM_ATTRS,
            {
                "study_id": study_id,
                "keys": list(attrs),
                "values": [json.dumps(v) for v in attrs.values()],
            },
        )


def upsert_trial_attrs(
    conn: Connection, trial_id: int, attrs: Mapping[str, Any], *, system: bool = False
) -> None:
    if attrs:
        table = "trial_system_attributes" if system else "trial_user_attributes"
        conn.execute(
            _UPSERT_TRIAL_ATTRS[table],
            {
                "trial_id": trial_id,
                "keys": list(attrs),
                "values": [json.dumps(v) for v in attrs.values()],
            },
        )


_ENQUEUE = text(
    f"""
    WITH t AS (
        INSERT INTO trials (number, study_id, state)
        SELECT coalesce(max(number), -1) + 1, :study_id, 'WAITING' FROM trials
         WHERE study_id = :study_id
        RETURNING trial_id, number
    ), a AS (
        INSERT INTO trial_system_attributes (trial_id, key, value_json)
        SELECT t.trial_id, 'fixed_params', :fixed FROM t
    ), u AS (
        INSERT INTO trial_user_attributes (trial_id, key, value_json)
        SELECT t.trial_id, x.key, x.value
          FROM t, unnest(CAST(:ua_keys AS text[]), CAST(:ua_values AS text[])) AS x(key, value)
    ), h AS (
        INSERT INTO hpo_trials (trial_id, study_id, queued_at, change_xid)
        SELECT t.trial_id, :study_id, clock_timestamp(), {CURRENT_XID} FROM t
    ), n AS (SELECT pg_notify('{WORK_CHANNEL}', CAST(:study_id AS text))),
    {
        event(
            "e",
            "trial_enqueued",
            "t",
            ":study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'params', CAST(:fixed AS jsonb))",
        )
    }
    SELECT t.trial_id, t.number, (SELECT count(*) FROM n) FROM t
    """
)


def enqueue_trial(
    conn: Connection, study_id: int, fixed_params: Mapping[str, Any], user_attrs: Mapping[str, Any]
) -> int:
    """A waiting trial with Optuna's ``fixed_params`` convention; the caller holds the ask lock."""
    row = conn.execute(
        _ENQUEUE,
        {
            "study_id": study_id,
            "fixed": json.dumps(dict(fixed_params)),
            **_attr_arrays(user_attrs, "ua"),
        },
    ).one()
    return int(row.trial_id)


def count_unstarted_queued(conn: Connection, study_id: int) -> int:
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM hpo_trials WHERE study_id = :study_id"
                " AND queued_at IS NOT NULL AND attempt = 0"
            ),
            {"study_id": study_id},
        ).scalar_one()
    )


# ---- leases: heartbeat, report, complete, release ----

_HEARTBEAT = Statement(
    """
    UPDATE hpo_trials h
       SET lease_expires_at = now() + make_interval(secs => s.lease_seconds)
      FROM hpo_studies s
     WHERE h.trial_id = :trial_id AND h.lease_token = :token AND h.lease_expires_at > now()
       AND s.study_id = h.study_id
    RETURNING h.lease_expires_at, s.state
    """
)


def heartbeat(conn: Connection, trial_id: int, token: str) -> tuple[dt.datetime, str] | None:
    """Extend a live lease by the study's ``lease_seconds``; None if the lease is not live."""
    row = _HEARTBEAT.one_or_none(conn, {"trial_id": trial_id, "token": token})
    return None if row is None else (row["lease_expires_at"], row["state"])


_REPORT = Statement(
    f"""
    WITH lease AS (
        UPDATE hpo_trials h
           SET lease_expires_at = now() + make_interval(secs => s.lease_seconds),
               change_xid = {CURRENT_XID}
          FROM hpo_studies s
         WHERE h.trial_id = :trial_id AND h.lease_token = :token AND h.lease_expires_at > now()
           AND s.study_id = h.study_id
        RETURNING h.trial_id, h.study_id, s.state
    ), i AS (
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
    SELECT lease.study_id, lease.state, (SELECT count(*) FROM i) AS inserted,
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
    study_state: str
    inserted: bool
    horizon: int
    changed: list[dict[str, Any]]


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
    )


_FINISH = Statement(
    f"""
    WITH h AS (
        UPDATE hpo_trials
           SET lease_token = NULL, lease_expires_at = NULL, finish_token = :token,
               fail_reason = :fail_reason, change_xid = {CURRENT_XID}
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
    state: str,
    values: Sequence[float] | None,
    fail_reason: str | None,
    user_attrs: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Finish a leased trial (COMPLETE, PRUNED or FAIL) and return it as ``get_trial`` would;
    None if the token holds no live lease (or, for COMPLETE, the number of values is wrong)."""
    stored = [to_stored(v) for v in values or ()]
    return _FINISH.one_or_none(
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
            **_attr_arrays(user_attrs, "ua"),
        },
    )


_RELEASE = text(
    f"""
    WITH h AS (
        UPDATE hpo_trials
           SET lease_token = NULL, lease_expires_at = NULL, queued_at = clock_timestamp(),
               change_xid = {CURRENT_XID}
         WHERE trial_id = :trial_id AND lease_token = :token AND lease_expires_at > now()
        RETURNING trial_id, study_id
    ), t AS (
        UPDATE trials SET state = 'WAITING' FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.number
    ), n AS (SELECT pg_notify('{WORK_CHANNEL}', CAST(h.study_id AS text)) FROM h),
    {
        event(
            "e",
            "trial_requeued",
            "t JOIN h ON h.trial_id = t.trial_id",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'reason', 'released')",
        )
    }
    SELECT h.study_id, (SELECT count(*) FROM n) FROM h
    """
)


def release(conn: Connection, trial_id: int, token: str) -> int | None:
    """Give a leased trial back to the queue (no retry is used up); returns its study id."""
    row = conn.execute(_RELEASE, {"trial_id": trial_id, "token": token}).one_or_none()
    return None if row is None else int(row.study_id)


@dataclass(frozen=True)
class LeaseState:
    """Why a lease-checked statement changed nothing."""

    trial_state: str
    study_id: int
    lease_token: str | None
    lease_live: bool
    finish_token: str | None
    directions: int


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


# ---- the reaper ----

_REAP = text(
    f"""
    WITH expired AS (
        SELECT h.trial_id FROM hpo_trials h
         WHERE h.lease_token IS NOT NULL AND h.lease_expires_at <= now()
         ORDER BY h.lease_expires_at
         LIMIT :batch
         FOR UPDATE SKIP LOCKED
    ), h AS (
        UPDATE hpo_trials h
           SET lease_token = NULL, lease_expires_at = NULL,
               expired_leases = h.expired_leases + 1,
               queued_at = CASE WHEN h.expired_leases < s.max_retries THEN clock_timestamp() END,
               fail_reason = CASE WHEN h.expired_leases < s.max_retries THEN NULL
                                  ELSE 'lease_expired' END,
               change_xid = {CURRENT_XID}
          FROM expired e, hpo_studies s
         WHERE h.trial_id = e.trial_id AND s.study_id = h.study_id
        RETURNING h.trial_id, h.study_id, h.queued_at IS NOT NULL AS requeued
    ), t AS (
        UPDATE trials
           SET state = CASE WHEN h.requeued THEN 'WAITING'::trialstate ELSE 'FAIL'::trialstate END,
               datetime_complete = CASE WHEN h.requeued THEN NULL
                                        ELSE now() AT TIME ZONE 'utc' END
          FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.number
    ), n AS (
        SELECT pg_notify('{WORK_CHANNEL}', CAST(study_id AS text))
          FROM (SELECT DISTINCT study_id FROM h) AS studies
    ),
    {
        event(
            "e",
            "trial_requeued",
            "t JOIN h ON h.trial_id = t.trial_id AND h.requeued",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'reason', 'lease_expired')",
        )
    },
    {
        event(
            "f",
            "trial_finished",
            "t JOIN h ON h.trial_id = t.trial_id AND NOT h.requeued",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'state', 'failed', 'values', NULL,"
            " 'fail_reason', 'lease_expired')",
        )
    }
    SELECT h.trial_id, h.study_id, h.requeued, (SELECT count(*) FROM n) AS notified FROM h
    """
)


@dataclass(frozen=True)
class Reaped:
    trial_id: int
    study_id: int
    requeued: bool


def reap_expired(conn: Connection, batch: int = 100) -> list[Reaped]:
    """Expired leases: back to the queue as the same trial, or failed after ``max_retries``."""
    rows = conn.execute(_REAP, {"batch": batch}).all()
    return [Reaped(r.trial_id, r.study_id, r.requeued) for r in rows]


def touch_worker(conn: Connection, worker_id: str, tasks: Sequence[str] | None) -> None:
    conn.execute(
        text(
            """
            INSERT INTO hpo_workers (worker_id, tasks) VALUES (:worker_id, CAST(:tasks AS jsonb))
            ON CONFLICT (worker_id) DO UPDATE
               SET last_seen_at = now(), tasks = coalesce(EXCLUDED.tasks, hpo_workers.tasks)
            """
        ),
        {"worker_id": worker_id, "tasks": None if tasks is None else json.dumps(list(tasks))},
    )


def purge_events(conn: Connection, retention_seconds: int) -> int:
    result = conn.execute(
        text("DELETE FROM hpo_events WHERE created_at < now() - make_interval(secs => :ttl)"),
        {"ttl": retention_seconds},
    )
    return int(result.rowcount)


def purge_idempotency_keys(conn: Connection, ttl_seconds: int) -> int:
    result = conn.execute(
        text(
            "DELETE FROM hpo_idempotency_keys"
            " WHERE created_at < now() - make_interval(secs => :ttl)"
        ),
        {"ttl": ttl_seconds},
    )
    return int(result.rowcount)


# ---- reads ----

_TRIAL_COLUMNS = f"""
    SELECT t.trial_id, t.study_id, t.number, t.state::text AS state,
           t.datetime_start, t.datetime_complete,
           h.attempt, h.worker_id, h.fail_reason, h.lease_expires_at, h.queued_at,
           {TRIAL_AGGREGATES}
"""

_SORT_KEY = (
    "CASE v.value_type WHEN 'INF_NEG' THEN '-Infinity'::float8"
    " WHEN 'INF_POS' THEN 'Infinity'::float8 ELSE v.value END"
)


def get_trial(conn: Connection, trial_id: int) -> dict[str, Any] | None:
    row = (
        conn.execute(
            text(
                _TRIAL_COLUMNS
                + """
              FROM trials t JOIN hpo_trials h ON h.trial_id = t.trial_id
             WHERE t.trial_id = :trial_id
            """
            ),
            {"trial_id": trial_id},
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else dict(row)


def list_trials(
    conn: Connection,
    *,
    study_id: int,
    states: Sequence[str] | None,
    sort: str,
    after: Any,
    limit: int,
) -> list[dict[str, Any]]:
    """One page of a study's trials. ``sort``: number, -number, value, -value.

    Value sorts list only trials with a first objective value (complete ones); ties and pages
    are broken by number. ``after`` is the key of the last row of the previous page.
    """
    params: dict[str, Any] = {"study_id": study_id, "limit": limit, "states": list(states or [])}
    where = ["t.study_id = :study_id"]
    if states:
        where.append("t.state::text = ANY(CAST(:states AS text[]))")
    descending = sort.startswith("-")
    op = "<" if descending else ">"
    direction = "DESC" if descending else "ASC"
    if sort.lstrip("-") == "number":
        join = ""
        order = f"t.number {direction}"
        if after is not None:
            where.append(f"t.number {op} :after_number")
            params["after_number"] = after
    else:
        join = "JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0"
        order = f"{_SORT_KEY} {direction}, t.number {direction}"
        if after is not None:
            where.append(f"({_SORT_KEY}, t.number) {op} (:after_value, :after_number)")
            params["after_value"], params["after_number"] = after
    sql = (
        _TRIAL_COLUMNS
        + (f", {_SORT_KEY} AS sort_value" if join else ", NULL::float8 AS sort_value")
        + f"""
          FROM trials t JOIN hpo_trials h ON h.trial_id = t.trial_id {join}
         WHERE {" AND ".join(where)}
         ORDER BY {order}
         LIMIT :limit
        """
    )
    return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def best_trial_id(conn: Connection, study_id: int, maximize: bool) -> int | None:
    direction = "DESC" if maximize else "ASC"
    row = conn.execute(
        text(
            f"""
            SELECT t.trial_id FROM trials t
              JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
             WHERE t.study_id = :study_id AND t.state = 'COMPLETE'
             ORDER BY {_SORT_KEY} {direction}, t.number
             LIMIT 1
            """
        ),
        {"study_id": study_id},
    ).one_or_none()
    return None if row is None else int(row.trial_id)


def complete_values(conn: Connection, study_id: int) -> list[tuple[int, list[float]]]:
    """(trial id, values) of every complete trial, for Pareto fronts."""
    rows = conn.execute(
        text(
            """
            SELECT t.trial_id,
                   array_agg(CASE v.value_type WHEN 'INF_NEG' THEN '-Infinity'::float8
                                               WHEN 'INF_POS' THEN 'Infinity'::float8
                                               ELSE v.value END ORDER BY v.objective) AS vals
              FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id
             WHERE t.study_id = :study_id AND t.state = 'COMPLETE'
             GROUP BY t.trial_id
            """
        ),
        {"study_id": study_id},
    ).all()
    return [(int(r.trial_id), list(r.vals)) for r in rows]


def get_trials(conn: Connection, trial_ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = conn.execute(
        text(
            _TRIAL_COLUMNS
            + """
              FROM trials t JOIN hpo_trials h ON h.trial_id = t.trial_id
             WHERE t.trial_id = ANY(CAST(:ids AS int[]))
             ORDER BY t.number
            """
        ),
        {"ids": list(trial_ids)},
    ).mappings()
    return [dict(r) for r in rows]


def study_of_trial(conn: Connection, trial_id: int) -> int | None:
    row = conn.execute(
        text("SELECT study_id FROM hpo_trials WHERE trial_id = :trial_id"), {"trial_id": trial_id}
    ).one_or_none()
    return None if row is None else int(row.study_id)


_CANDIDATES = text(
    """
    SELECT s.study_id FROM hpo_studies s
     WHERE s.state = 'running'
       AND (CAST(:study_ids AS int[]) IS NULL OR s.study_id = ANY(CAST(:study_ids AS int[])))
       AND (CAST(:tasks AS text[]) IS NULL OR s.task_name = ANY(CAST(:tasks AS text[])))
       AND (s.max_trials IS NULL OR s.n_started < s.max_trials
            OR EXISTS (SELECT 1 FROM hpo_trials q
                        WHERE q.study_id = s.study_id AND q.queued_at IS NOT NULL
                          AND q.attempt > 0))
       AND (s.max_parallel IS NULL
            OR (SELECT count(*) FROM hpo_trials r
                 WHERE r.study_id = s.study_id AND r.lease_token IS NOT NULL) < s.max_parallel)
     ORDER BY s.last_handout_at NULLS FIRST, s.study_id
     LIMIT :limit
    """
)


def claim_candidates(
    conn: Connection, study_ids: Sequence[int] | None, tasks: Sequence[str] | None, limit: int
) -> list[int]:
    """Running studies with something to hand out, least recently served first (fairness)."""
    rows = conn.execute(
        _CANDIDATES,
        {
            "study_ids": None if study_ids is None else list(study_ids),
            "tasks": None if tasks is None else list(tasks),
            "limit": limit,
        },
    ).all()
    return [int(r.study_id) for r in rows]


def touch_trial(conn: Connection, trial_id: int) -> None:
    """Mark a trial changed (for views and change feeds) without changing anything else."""
    conn.execute(
        text(f"UPDATE hpo_trials SET change_xid = {CURRENT_XID} WHERE trial_id = :trial_id"),
        {"trial_id": trial_id},
    )


def study_directions(conn: Connection, study_id: int) -> list[str]:
    """The study's directions in objective order; empty if the study is not the service's."""
    rows = conn.execute(
        text(
            """
            SELECT lower(d.direction::text) AS direction FROM study_directions d
              JOIN hpo_studies s ON s.study_id = d.study_id
             WHERE d.study_id = :study_id ORDER BY d.objective
            """
        ),
        {"study_id": study_id},
    ).all()
    return [r.direction for r in rows]
