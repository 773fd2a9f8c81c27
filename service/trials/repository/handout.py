"""Hand-out: new and queued trials under a lease, enqueued configurations, claims."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution
from sqlalchemy import Connection, text

from service.db.prepared import Statement
from service.notify import WORK_CHANNEL
from service.sampling.repository import CURRENT_XID
from service.trials.repository.encoding import attr_arrays, params_arrays
from service.trials.repository.events import event
from service.usage.gpu_time import start_attempt_cte


@dataclass(frozen=True)
class NewLease:
    trial_id: int
    number: int
    attempt: int
    expires_at: dt.datetime


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
                                worker_id, resource_granted, change_xid)
        SELECT t.trial_id, :study_id, 1, :token, now() + make_interval(secs => :lease_seconds),
               :worker_id, CAST(:granted AS int), {CURRENT_XID}
          FROM t
        RETURNING lease_expires_at
    ), s AS (
        UPDATE hpo_studies SET n_started = n_started + 1, last_handout_at = now()
         WHERE study_id = :study_id
    ), {start_attempt_cte("g", "t", "t.trial_id")}, {
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
    granted: int | None = None,
    device: str | None = None,
    gpus: int = 0,
) -> NewLease:
    """A newly sampled trial, running under a lease, counted against the study's budget
    (``granted``: the asha resource units it may reach); its first attempt starts on
    ``device`` with ``gpus`` GPUs."""
    row = _INSERT_NEW_TRIAL.one_or_none(
        conn,
        {
            "study_id": study_id,
            "device": device,
            "gpus": gpus,
            "number": number,
            "token": token,
            "worker_id": worker_id,
            "lease_seconds": lease_seconds,
            "granted": granted,
            **params_arrays(params, distributions),
            **attr_arrays(system_attrs, "sa"),
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
               worker_id = :worker_id, queued_at = NULL,
               resource_granted = coalesce(resource_granted, CAST(:granted AS int)),
               change_xid = {CURRENT_XID}
         WHERE trial_id = :trial_id AND queued_at IS NOT NULL
        RETURNING trial_id, attempt, lease_expires_at
    ), t AS (
        UPDATE trials SET state = 'RUNNING', datetime_start = now() AT TIME ZONE 'utc'
          FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.number
    ), {start_attempt_cte("g", "h", "h.trial_id")}, {
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
    granted: int | None = None,
    device: str | None = None,
    gpus: int = 0,
) -> NewLease | None:
    """Lease a trial from the queue (a retry, or one a user enqueued), adding ``new_params``.

    The first lease of a trial counts against the budget; later ones (retries) do not, and keep
    their asha grant (``granted`` is for a first lease). None when the trial is no longer queued.
    The attempt starts on ``device`` with ``gpus`` GPUs.
    """
    row = _LEASE_QUEUED_TRIAL.one_or_none(
        conn,
        {
            "study_id": study_id,
            "device": device,
            "gpus": gpus,
            "trial_id": trial_id,
            "token": token,
            "worker_id": worker_id,
            "lease_seconds": lease_seconds,
            "granted": granted,
            **params_arrays(new_params, distributions),
            **attr_arrays(system_attrs, "sa"),
        },
    )
    if row is None:
        return None
    return NewLease(row["trial_id"], row["number"], row["attempt"], row["lease_expires_at"])


_LEASE_PAUSED_TRIAL = Statement(
    f"""
    WITH h AS (
        UPDATE hpo_trials
           SET lease_token = :token,
               lease_expires_at = now() + make_interval(secs => :lease_seconds),
               worker_id = :worker_id, paused_step = NULL,
               resource_granted = CAST(:granted AS int), change_xid = {CURRENT_XID}
         WHERE trial_id = :trial_id AND paused_step IS NOT NULL AND lease_token IS NULL
        RETURNING trial_id, attempt, lease_expires_at
    ), t AS (
        UPDATE trials SET state = 'RUNNING' FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.number
    ), s AS (
        UPDATE hpo_studies SET last_handout_at = now() WHERE study_id = :study_id
    ), {start_attempt_cte("g", "h", "h.trial_id")}, {
        event(
            "e",
            "trial_promoted",
            "h JOIN t ON t.trial_id = h.trial_id",
            ":study_id",
            "h.trial_id",
            "jsonb_build_object('number', t.number, 'attempt', h.attempt,"
            " 'worker_id', CAST(:worker_id AS text),"
            " 'resume_from_step', CAST(:resume_from_step AS int))",
        )
    }
    SELECT h.trial_id, t.number, h.attempt, h.lease_expires_at FROM h, t
    """
)


def lease_paused_trial(
    conn: Connection,
    *,
    study_id: int,
    trial_id: int,
    resume_from_step: int,
    granted: int | None,
    token: str,
    worker_id: str,
    lease_seconds: int,
    device: str | None = None,
    gpus: int = 0,
) -> NewLease | None:
    """Promote a paused trial (``asha``): leased again as the same trial, its ``attempt``
    unchanged and not counted against the budget again, granted up to ``granted`` units; a new
    attempt (in ``hpo_trial_attempts``) starts on ``device``. None when it is no longer paused."""
    row = _LEASE_PAUSED_TRIAL.one_or_none(
        conn,
        {
            "study_id": study_id,
            "device": device,
            "gpus": gpus,
            "trial_id": trial_id,
            "resume_from_step": resume_from_step,
            "granted": granted,
            "token": token,
            "worker_id": worker_id,
            "lease_seconds": lease_seconds,
        },
    )
    if row is None:
        return None
    return NewLease(row["trial_id"], row["number"], row["attempt"], row["lease_expires_at"])


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
            **attr_arrays(user_attrs, "ua"),
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


def touch_worker(
    conn: Connection,
    worker_id: str,
    tasks: Sequence[str] | None,
    *,
    team_id: int | None = None,
    study_id: int | None = None,
) -> None:
    """Record that a worker asked, as a worker of ``team_id``, else of the study's team, else
    of the default team (auth off)."""
    conn.execute(
        text(
            """
            INSERT INTO hpo_workers (team_id, worker_id, tasks)
            VALUES (coalesce(CAST(:team_id AS int),
                             (SELECT team_id FROM hpo_studies WHERE study_id = :study_id),
                             (SELECT team_id FROM hpo_teams WHERE name = 'default')),
                    :worker_id, CAST(:tasks AS jsonb))
            ON CONFLICT (team_id, worker_id) DO UPDATE
               SET last_seen_at = now(), tasks = coalesce(EXCLUDED.tasks, hpo_workers.tasks)
            """
        ),
        {
            "team_id": team_id,
            "study_id": study_id,
            "worker_id": worker_id,
            "tasks": None if tasks is None else json.dumps(list(tasks)),
        },
    )


_CANDIDATES = text(
    """
    SELECT s.study_id FROM hpo_studies s
     WHERE s.state = 'running'
       AND (CAST(:team_id AS int) IS NULL OR s.team_id = :team_id)
       AND (CAST(:study_ids AS int[]) IS NULL OR s.study_id = ANY(CAST(:study_ids AS int[])))
       AND (CAST(:tasks AS text[]) IS NULL OR s.task_name = ANY(CAST(:tasks AS text[])))
       AND NOT s.resource_spent
       AND (s.max_trials IS NULL OR s.n_started < s.max_trials
            OR EXISTS (SELECT 1 FROM hpo_trials q
                        WHERE q.study_id = s.study_id AND q.queued_at IS NOT NULL
                          AND q.attempt > 0)
            OR EXISTS (SELECT 1 FROM hpo_trials p
                        WHERE p.study_id = s.study_id AND p.paused_step IS NOT NULL
                          AND p.lease_token IS NULL))
       AND (s.max_parallel IS NULL
            OR (SELECT count(*) FROM hpo_trials r
                 WHERE r.study_id = s.study_id AND r.lease_token IS NOT NULL) < s.max_parallel)
     ORDER BY s.last_handout_at NULLS FIRST, s.study_id
     LIMIT :limit
    """
)


def claim_candidates(
    conn: Connection,
    study_ids: Sequence[int] | None,
    tasks: Sequence[str] | None,
    limit: int,
    *,
    team_id: int | None,
) -> list[int]:
    """Running studies of the team (of any team for None) with something to hand out (a paused
    trial may be promoted, or finished when nothing more can happen), least recently served
    first (fairness)."""
    rows = conn.execute(
        _CANDIDATES,
        {
            "team_id": team_id,
            "study_ids": None if study_ids is None else list(study_ids),
            "tasks": None if tasks is None else list(tasks),
            "limit": limit,
        },
    ).all()
    return [int(r.study_id) for r in rows]
