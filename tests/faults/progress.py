"""A scenario's view of its study while faults fly: read from PostgreSQL directly, so it
works while API processes are down (and says so while PostgreSQL is). Times are this
process's ``time.time()`` compared with PostgreSQL's ``created_at``, so the database must run
on the same host as the test (as the local and the embedded servers do)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg2

from tests.faults.audit import FINISHED


def _query(dsn: str, sql: str, args: Sequence[object]) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn, connect_timeout=3)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, tuple(args))
            return list(cur.fetchall())
    finally:
        conn.close()


def finished_count(dsn: str, study_id: int) -> int | None:
    """Finished trials of the study; None while the database does not answer."""
    try:
        rows = _query(
            dsn,
            "SELECT count(*) FROM trials WHERE study_id = %s AND state::text = ANY(%s)",
            [study_id, list(FINISHED)],
        )
    except psycopg2.OperationalError:
        return None
    return int(rows[0][0])


def wait_finished(dsn: str, study_id: int, n: int, timeout_s: float) -> None:
    """Wait until at least ``n`` trials of the study are finished."""
    deadline = time.monotonic() + timeout_s
    while (finished_count(dsn, study_id) or 0) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {n} trials of study {study_id} finished in time")
        time.sleep(0.2)


def live_leases(dsn: str, study_id: int) -> list[tuple[str, int, int]]:
    """(worker id, trial id, steps reported so far) of every live lease of the study."""
    rows = _query(
        dsn,
        """
        SELECT h.worker_id, h.trial_id,
               (SELECT count(*) FROM trial_intermediate_values i WHERE i.trial_id = h.trial_id)
          FROM hpo_trials h
         WHERE h.study_id = %s AND h.lease_token IS NOT NULL AND h.lease_expires_at > now()
        """,
        [study_id],
    )
    return [(str(w), int(t), int(s)) for w, t, s in rows]


def wait_in_flight(dsn: str, study_id: int, timeout_s: float = 10.0) -> int:
    """Wait (up to ``timeout_s``) until the study has a live lease; the number of live leases
    then (0 if none came). A fault aimed between one trial's finish and the next claim would
    hit nothing, so the scenarios wait for trials in flight before injecting it."""
    deadline = time.monotonic() + timeout_s
    while not (leases := live_leases(dsn, study_id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(leases)


def first_event_after(
    dsn: str, study_id: int, after: float, workers: Sequence[str] | None = None
) -> float | None:
    """When (time.time() scale) the first trial started or finished after ``after``, by one of
    ``workers`` if given (a start names its worker; a finish, the trial's last one)."""
    rows = _query(
        dsn,
        """
        SELECT min(extract(epoch FROM e.created_at))
          FROM hpo_events e JOIN hpo_trials h ON h.trial_id = e.trial_id
         WHERE e.study_id = %s AND e.kind IN ('trial_started', 'trial_finished')
           AND e.created_at > to_timestamp(%s)
           AND (%s::text[] IS NULL
                OR coalesce(e.payload->>'worker_id', h.worker_id) = ANY(%s::text[]))
        """,
        [study_id, after, workers, workers],
    )
    value = rows[0][0]
    return None if value is None else float(value)


def lease_loss_after(dsn: str, trial_id: int, after: float) -> tuple[bool, float | None]:
    """Whether the trial's lease expired after ``after`` (requeued, or failed for it), and when
    it was leased again (None if never)."""
    rows = _query(
        dsn,
        """
        SELECT e.kind, coalesce(e.payload->>'reason', e.payload->>'fail_reason'),
               extract(epoch FROM e.created_at)
          FROM hpo_events e
         WHERE e.trial_id = %s AND e.created_at > to_timestamp(%s)
         ORDER BY e.id
        """,
        [trial_id, after],
    )
    if not any(why == "lease_expired" for _, why, _ in rows):
        return False, None
    again = [float(at) for kind, _, at in rows if kind == "trial_started"]
    return True, (again[0] if again else None)


def wait_for_event(
    dsn: str, study_id: int, after: float, workers: Sequence[str] | None, timeout_s: float
) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = first_event_after(dsn, study_id, after, workers)
        except psycopg2.OperationalError:
            found = None
        if found is not None:
            return found
        time.sleep(0.1)
    return None
