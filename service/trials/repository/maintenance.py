"""The reaper's statements: expired leases, old events and idempotency records."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from service.notify import WORK_CHANNEL
from service.sampling.repository import CURRENT_XID
from service.trials.repository.events import event
from service.usage.gpu_time import end_attempt_cte

_REAP = text(
    f"""
    WITH expired AS (
        SELECT h.trial_id, h.lease_expires_at FROM hpo_trials h
         WHERE h.lease_token IS NOT NULL AND h.lease_expires_at <= now()
         ORDER BY h.lease_expires_at
         LIMIT :batch
         FOR UPDATE SKIP LOCKED
    ), h AS (
        -- A trial the asha pruner told to pause is paused: no retry used, not queued.
        UPDATE hpo_trials h
           SET lease_token = NULL, lease_expires_at = NULL,
               expired_leases = h.expired_leases + CASE WHEN h.paused_step IS NULL THEN 1
                                                        ELSE 0 END,
               queued_at = CASE WHEN h.paused_step IS NULL AND h.expired_leases < s.max_retries
                                THEN clock_timestamp() END,
               fail_reason = CASE WHEN h.paused_step IS NOT NULL
                                    OR h.expired_leases < s.max_retries THEN NULL
                                  ELSE 'lease_expired' END,
               change_xid = {CURRENT_XID}
          FROM expired e, hpo_studies s
         WHERE h.trial_id = e.trial_id AND s.study_id = h.study_id
        RETURNING h.trial_id, h.study_id, h.queued_at IS NOT NULL AS requeued,
                  h.paused_step IS NOT NULL AS paused, s.max_gpu_hours IS NOT NULL AS gpu_budget
    ), t AS (
        UPDATE trials
           SET state = CASE WHEN h.requeued OR h.paused THEN 'WAITING'::trialstate
                            ELSE 'FAIL'::trialstate END,
               datetime_complete = CASE WHEN h.requeued OR h.paused THEN NULL
                                        ELSE now() AT TIME ZONE 'utc' END
          FROM h WHERE trials.trial_id = h.trial_id
        RETURNING trials.trial_id, trials.number
    ), n AS (
        SELECT pg_notify('{WORK_CHANNEL}', CAST(study_id AS text))
          FROM (SELECT DISTINCT study_id FROM h) AS studies
    ),
    -- The attempt ran until its lease expired (the worker's last heartbeat plus lease_seconds).
    {end_attempt_cte("g", "expired", "expired.lease_expires_at", "'expired'")},
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
            "t JOIN h ON h.trial_id = t.trial_id AND NOT h.requeued AND NOT h.paused",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'state', 'failed', 'values', NULL,"
            " 'fail_reason', 'lease_expired')",
        )
    },
    {
        event(
            "p",
            "trial_paused",
            "t JOIN h ON h.trial_id = t.trial_id AND h.paused",
            "h.study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'reason', 'lease_expired')",
        )
    }
    SELECT h.trial_id, h.study_id, h.requeued, h.paused, h.gpu_budget,
           (SELECT count(*) FROM n) AS notified
      FROM h
    """
)


@dataclass(frozen=True)
class Reaped:
    trial_id: int
    study_id: int
    requeued: bool
    paused: bool = False  # told to pause by asha: paused, no retry used
    gpu_budget: bool = False  # its study has a max_gpu_hours


def reap_expired(conn: Connection, batch: int = 100) -> list[Reaped]:
    """Expired leases: back to the queue as the same trial, or failed after ``max_retries``; a
    trial the ``asha`` pruner told to pause becomes paused (no retry used). The attempt ends
    at the lease's expiry."""
    rows = conn.execute(_REAP, {"batch": batch}).all()
    return [Reaped(r.trial_id, r.study_id, r.requeued, r.paused, r.gpu_budget) for r in rows]


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
