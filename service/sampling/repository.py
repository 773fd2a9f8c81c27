"""SQL that keeps a study's in-memory view in step with PostgreSQL.

Change tracking: every write the service makes to a trial also stamps ``hpo_trials.change_xid``
with the writing transaction's id. A reader remembers the oldest transaction still running when
it last read (``pg_snapshot_xmin``) and next time fetches every trial stamped at or after it.
Transactions that commit late are therefore never missed, at the price of re-reading a few rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from sqlalchemy import Connection, text

from service.db.prepared import Statement
from service.errors import NotFound
from service.states import OptunaTrialState, StoredStudyState
from service.usage.gpu_time import gpu_spent_sql

CURRENT_XID = "(pg_current_xact_id()::text)::bigint"

_LOCK_STUDY = Statement(
    "SELECT pg_advisory_xact_lock(CAST(:namespace AS int), CAST(:study_id AS int))"
)
# The advisory-lock namespace of "asks on one study" (the other int4 of the pair is the study id).
ASK_LOCK_NAMESPACE = 0x6870  # "hp"

_STUDY_STATE = text(
    f"""
    SELECT s.state, s.max_trials, s.max_parallel, s.n_started, s.lease_seconds,
           s.max_resource_total, s.resource_spent, s.max_gpu_hours,
           {gpu_spent_sql("s")} AS gpu_spent,
           (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint AS xmin,
           (SELECT coalesce(json_object_agg(a.key, a.value_json), '{{}}')
              FROM study_system_attributes a WHERE a.study_id = s.study_id) AS system_attrs
      FROM hpo_studies s
     WHERE s.study_id = :study_id
    """
)

TRIAL_AGGREGATES = """
       (SELECT json_agg(json_build_array(p.param_name, p.param_value, p.distribution_json))
          FROM trial_params p WHERE p.trial_id = t.trial_id) AS params,
       (SELECT json_agg(json_build_array(v.objective, v.value, v.value_type))
          FROM trial_values v WHERE v.trial_id = t.trial_id) AS trial_values,
       (SELECT json_agg(json_build_array(i.step, i.intermediate_value,
                                         i.intermediate_value_type) ORDER BY i.step)
          FROM trial_intermediate_values i WHERE i.trial_id = t.trial_id) AS intermediate,
       (SELECT json_object_agg(a.key, a.value_json)
          FROM trial_user_attributes a WHERE a.trial_id = t.trial_id) AS user_attrs,
       (SELECT json_object_agg(a.key, a.value_json)
          FROM trial_system_attributes a WHERE a.trial_id = t.trial_id) AS system_attrs
"""

CHANGED_TRIALS_SQL = f"""
    SELECT t.trial_id, t.number, t.state::text AS state, t.datetime_start, t.datetime_complete,
           h.attempt, h.queued_at, h.lease_token IS NOT NULL AS leased, h.fail_reason,
           h.paused_step, h.resource_granted, h.parent_trial_id, h.started_from_step,
           h.replaced_trial_id,
           {TRIAL_AGGREGATES}
      FROM hpo_trials h JOIN trials t ON t.trial_id = h.trial_id
     WHERE h.study_id = :study_id AND h.change_xid >= :cursor
"""


class ChangedTrial(TypedDict):
    """A row of ``CHANGED_TRIALS_SQL`` as ``json_agg`` returns it (timestamps as ISO text);
    the aggregates are those of ``TRIAL_AGGREGATES`` (decoded by ``service.sampling.rows``)."""

    trial_id: int
    number: int
    state: OptunaTrialState
    datetime_start: str | None
    datetime_complete: str | None
    attempt: int
    queued_at: str | None
    leased: bool
    fail_reason: str | None
    # Absent in rows built by tests and benchmarks:
    paused_step: NotRequired[int | None]
    resource_granted: NotRequired[int | None]
    parent_trial_id: NotRequired[int | None]
    started_from_step: NotRequired[int | None]
    replaced_trial_id: NotRequired[int | None]
    params: list[list[Any]] | None
    trial_values: list[list[Any]] | None
    intermediate: list[list[Any]] | None
    user_attrs: dict[str, str] | None
    system_attrs: dict[str, str] | None


# The study's hand-out state and every trial changed since the view's cursor, in one round trip
# (run after the ask lock is granted, so it sees every hand-out committed before).
_STATE_AND_CHANGES = Statement(
    f"""
    SELECT s.state, s.max_trials, s.max_parallel, s.n_started, s.lease_seconds,
           s.max_resource_total, s.resource_spent, s.max_gpu_hours,
           {gpu_spent_sql("s")} AS gpu_spent,
           (pg_snapshot_xmin(pg_current_snapshot())::text)::bigint AS xmin,
           (SELECT coalesce(json_object_agg(a.key, a.value_json), '{{}}')
              FROM study_system_attributes a WHERE a.study_id = s.study_id) AS system_attrs,
           (SELECT json_agg(c) FROM ({CHANGED_TRIALS_SQL}) AS c) AS changed
      FROM hpo_studies s
     WHERE s.study_id = :study_id
    """
)


@dataclass(frozen=True)
class StudyState:
    """What the hand-out rules need of a study, read under its ask lock."""

    state: StoredStudyState
    max_trials: int | None
    max_parallel: int | None
    n_started: int
    lease_seconds: int
    xmin: int
    system_attrs: dict[str, str]
    max_resource_total: int | None = None  # the asha resource budget (units over all trials)
    resource_spent: bool = False
    max_gpu_hours: float | None = None  # the GPU-hour budget (service.usage.gpu_time)
    gpu_spent: bool = False  # that budget used, running attempts counted up to now


def lock_study_for_ask(conn: Connection, study_id: int) -> None:
    """Serialise asks on one study across every server process (released at commit)."""
    _LOCK_STUDY.run(conn, {"namespace": ASK_LOCK_NAMESPACE, "study_id": study_id})


_TRY_LOCK_STUDY = Statement(
    "SELECT pg_try_advisory_xact_lock(CAST(:namespace AS int), CAST(:study_id AS int)) AS got"
)


def try_lock_study_for_ask(conn: Connection, study_id: int) -> bool:
    """Take the study's ask lock if no other transaction holds it; False at once otherwise
    (for a transaction that already holds other studies' locks: waiting could deadlock)."""
    row = _TRY_LOCK_STUDY.one_or_none(conn, {"namespace": ASK_LOCK_NAMESPACE, "study_id": study_id})
    return bool(row is not None and row["got"])


def read_study_state(conn: Connection, study_id: int) -> StudyState:
    row = conn.execute(_STUDY_STATE, {"study_id": study_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"study {study_id} does not exist")
    return StudyState(**row)


def lock_and_read(
    conn: Connection, study_id: int, cursor: int, *, savepoint: str | None = None
) -> tuple[StudyState, list[ChangedTrial]]:
    """Take the study's ask lock, then read its state plus its trials changed by transactions
    with id >= ``cursor``: one round trip (the read runs after the lock is granted, with its own
    snapshot). With ``savepoint``, that savepoint is set first, in the same round trip."""
    before: list[Any] = [] if savepoint is None else [f"SAVEPOINT {savepoint}"]
    before.append((_LOCK_STUDY, {"namespace": ASK_LOCK_NAMESPACE, "study_id": study_id}))
    row = _STATE_AND_CHANGES.one_or_none(
        conn, {"study_id": study_id, "cursor": cursor}, before=before
    )
    if row is None:
        raise NotFound(f"study {study_id} does not exist")
    fields = {k: v for k, v in row.items() if k != "changed"}
    return StudyState(**fields), list(row["changed"] or [])
