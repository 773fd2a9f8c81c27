"""SQL for studies: Optuna's rows (studies, directions, attributes) plus ``hpo_studies``.

Functions run on the caller's connection and never commit; studies come back as
:class:`StudyRow` (the API's view) or :class:`StudyDefinitionRow` (what a study view is built
from)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from service.notify import WORK_CHANNEL
from service.states import (
    API_STATE_SQL,
    TRIAL_STATES,
    StoredStudyState,
    StudyStateName,
    TrialStateName,
)
from service.trials.repository import event
from service.usage.gpu_time import study_gpu_seconds_sql

METRIC_NAMES_KEY = "study:metric_names"  # where Optuna keeps metric names (a study system attr)


@dataclass(frozen=True)
class StudyRow:
    """A study as the API shows it: its stored state with ``completed`` derived, its trials
    counted by state (every state present)."""

    study_id: int
    name: str
    optuna_name: str
    team: str
    state: StudyStateName
    spec: dict[str, Any]
    directions: list[str]
    metric_names: list[str] | None
    metadata: dict[str, Any]
    max_trials: int | None
    max_parallel: int | None
    max_retries: int
    lease_seconds: int
    n_started: int
    created_at: dt.datetime
    updated_at: dt.datetime
    counts: dict[TrialStateName, int]
    last_activity_at: dt.datetime | None = None
    max_resource_total: int | None = None
    max_gpu_hours: float | None = None
    gpu_seconds: float = 0.0  # GPU time used, running attempts up to now (service.usage)
    # Why the server paused the study by itself (None when a user set the state).
    state_reason: str | None = None


_INSERT = text(
    f"""
    WITH tm AS (
        SELECT team_id, name FROM hpo_teams
         WHERE team_id = CAST(:team_id AS int)
            OR (CAST(:team_id AS int) IS NULL AND name = 'default')
    ), st AS (
        INSERT INTO studies (study_name)
        SELECT CASE WHEN tm.name = 'default' THEN :name ELSE tm.name || '/' || :name END
          FROM tm
        RETURNING study_id
    ), d AS (
        INSERT INTO study_directions (direction, study_id, objective)
        SELECT CAST(upper(x.direction) AS studydirection), st.study_id, x.ord - 1
          FROM st, unnest(CAST(:directions AS text[])) WITH ORDINALITY AS x(direction, ord)
    ), ua AS (
        INSERT INTO study_user_attributes (study_id, key, value_json)
        SELECT st.study_id, x.key, x.value
          FROM st, unnest(CAST(:ua_keys AS text[]), CAST(:ua_values AS text[])) AS x(key, value)
    ), sa AS (
        INSERT INTO study_system_attributes (study_id, key, value_json)
        SELECT st.study_id, x.key, x.value
          FROM st, unnest(CAST(:sa_keys AS text[]), CAST(:sa_values AS text[])) AS x(key, value)
    ), h AS (
        INSERT INTO hpo_studies (study_id, team_id, name, state, spec, task_name, max_trials,
                                 max_parallel, max_retries, lease_seconds, max_resource_total,
                                 max_gpu_hours)
        SELECT st.study_id, tm.team_id, :name, 'running', CAST(:spec AS json), :task_name,
               :max_trials, :max_parallel, :max_retries, :lease_seconds,
               CAST(:max_resource_total AS int), CAST(:max_gpu_hours AS float8)
          FROM st, tm
        RETURNING study_id
    ), n AS (SELECT pg_notify('{WORK_CHANNEL}', CAST(st.study_id AS text)) FROM st),
    {
        event(
            "e",
            "study_created",
            "st JOIN h ON h.study_id = st.study_id",
            "st.study_id",
            "NULL",
            "jsonb_build_object('name', CAST(:name AS text), 'state', 'running')",
        )
    }
    SELECT st.study_id, (SELECT count(*) FROM n) FROM st
    """
)


def insert_study(
    conn: Connection,
    *,
    team_id: int | None,
    name: str,
    directions: Sequence[str],
    metric_names: Sequence[str] | None,
    metadata: Mapping[str, Any],
    spec: Mapping[str, Any],
    task_name: str | None,
    max_trials: int | None,
    max_parallel: int | None,
    max_retries: int,
    lease_seconds: int,
    max_resource_total: int | None = None,
    max_gpu_hours: float | None = None,
) -> int:
    """Create the study of team ``team_id`` (the default team for None) in Optuna's tables
    (named ``<team>/<name>``, or ``<name>`` in the default team) and ours; IntegrityError on a
    name the team already uses."""
    system_attrs = {METRIC_NAMES_KEY: list(metric_names)} if metric_names else {}
    row = conn.execute(
        _INSERT,
        {
            "team_id": team_id,
            "name": name,
            "directions": list(directions),
            "ua_keys": list(metadata),
            "ua_values": [json.dumps(v) for v in metadata.values()],
            "sa_keys": list(system_attrs),
            "sa_values": [json.dumps(v) for v in system_attrs.values()],
            "spec": json.dumps(dict(spec)),
            "task_name": task_name,
            "max_trials": max_trials,
            "max_parallel": max_parallel,
            "max_retries": max_retries,
            "lease_seconds": lease_seconds,
            "max_resource_total": max_resource_total,
            "max_gpu_hours": max_gpu_hours,
        },
    ).one()
    return int(row.study_id)


_SELECT = f"""
    SELECT st.study_id, s.name, st.study_name AS optuna_name, tm.name AS team, s.team_id,
           s.state, s.state_reason, s.spec,
           s.max_trials, s.max_parallel, s.max_retries, s.lease_seconds, s.n_started,
           s.max_resource_total, s.resource_spent, s.max_gpu_hours, s.created_at, s.updated_at,
           {study_gpu_seconds_sql("st.study_id")} AS gpu_seconds,
           (SELECT array_agg(lower(d.direction::text) ORDER BY d.objective)
              FROM study_directions d WHERE d.study_id = st.study_id) AS directions,
           (SELECT a.value_json FROM study_system_attributes a
             WHERE a.study_id = st.study_id AND a.key = 'study:metric_names') AS metric_names,
           (SELECT json_object_agg(a.key, a.value_json)
              FROM study_user_attributes a WHERE a.study_id = st.study_id) AS metadata,
           counts.by_state,
           counts.active
      FROM hpo_studies s
      JOIN studies st ON st.study_id = s.study_id
      JOIN hpo_teams tm ON tm.team_id = s.team_id
      CROSS JOIN LATERAL (
          SELECT json_object_agg(c.state, c.n) AS by_state,
                 coalesce(sum(c.n) FILTER (WHERE c.state IN ('running', 'waiting', 'paused')), 0)
                     AS active
            FROM (SELECT {API_STATE_SQL} AS state, count(*) AS n
                    FROM trials t LEFT JOIN hpo_trials h ON h.trial_id = t.trial_id
                   WHERE t.study_id = st.study_id GROUP BY 1) AS c
      ) AS counts
"""

# "completed" is derived, never stored: running, budget spent (max_trials all started, or the
# asha resource budget found spent), nothing running, waiting or paused.
_COMPLETED = (
    "(s.state = 'running' AND ((s.max_trials IS NOT NULL AND s.n_started >= s.max_trials)"
    " OR s.resource_spent) AND counts.active = 0)"
)
_STATE_FILTERS = {
    "running": f"s.state = 'running' AND NOT {_COMPLETED}",
    "completed": _COMPLETED,
    "paused": "s.state = 'paused'",
    "stopped": "s.state = 'stopped'",
}


_TEAM_FILTER = "(CAST(:team_id AS int) IS NULL OR s.team_id = :team_id)"


def _to_row(m: RowMapping) -> StudyRow:
    by_state = m["by_state"] or {}
    counts = {api: int(by_state.get(api, 0)) for api in TRIAL_STATES}
    spent = m["resource_spent"] or (
        m["max_trials"] is not None and m["n_started"] >= m["max_trials"]
    )
    completed = (
        m["state"] == "running"
        and spent
        and counts["running"] + counts["waiting"] + counts["paused"] == 0
    )
    metadata = {k: json.loads(v) for k, v in (m["metadata"] or {}).items()}
    return StudyRow(
        study_id=m["study_id"],
        name=m["name"],
        optuna_name=m["optuna_name"],
        team=m["team"],
        state="completed" if completed else m["state"],
        spec=m["spec"],
        directions=list(m["directions"] or []),
        metric_names=json.loads(m["metric_names"]) if m["metric_names"] else None,
        metadata=metadata,
        max_trials=m["max_trials"],
        max_parallel=m["max_parallel"],
        max_retries=m["max_retries"],
        lease_seconds=m["lease_seconds"],
        n_started=m["n_started"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        counts=counts,
        state_reason=m["state_reason"],
        max_resource_total=m["max_resource_total"],
        max_gpu_hours=m["max_gpu_hours"],
        gpu_seconds=float(m["gpu_seconds"] or 0.0),
    )


def get_study(conn: Connection, study_id: int) -> StudyRow | None:
    row = conn.execute(text(_SELECT + " WHERE s.study_id = :id"), {"id": study_id})
    m = row.mappings().one_or_none()
    return None if m is None else _to_row(m)


def get_study_by_name(conn: Connection, name: str, team_id: int | None) -> StudyRow | None:
    """The study named ``name`` in the team; for None (auth off), in any team, the default
    team's first."""
    row = conn.execute(
        text(
            _SELECT
            + " WHERE s.name = :name AND "
            + _TEAM_FILTER
            + " ORDER BY tm.name = 'default' DESC, s.study_id LIMIT 1"
        ),
        {"name": name, "team_id": team_id},
    )
    m = row.mappings().one_or_none()
    return None if m is None else _to_row(m)


def list_studies(
    conn: Connection,
    *,
    team_id: int | None,
    state: StudyStateName | None,
    after_id: int | None,
    limit: int,
) -> list[StudyRow]:
    """The team's studies (every team's for None) by id, after ``after_id``."""
    clauses = ["(CAST(:after AS int) IS NULL OR s.study_id > :after)", _TEAM_FILTER]
    if state is not None:
        clauses.append(_STATE_FILTERS[state])
    sql = _SELECT + " WHERE " + " AND ".join(clauses) + " ORDER BY s.study_id LIMIT :limit"
    params = {"after": after_id, "limit": limit, "team_id": team_id}
    rows = conn.execute(text(sql), params).mappings()
    return [_to_row(m) for m in rows]


_UPDATE = text(
    f"""
    WITH s AS (
        UPDATE hpo_studies
           SET state = coalesce(:state, state),
               state_reason = CASE WHEN :state IS NULL THEN state_reason END,
               max_trials = CASE WHEN :set_max_trials THEN :max_trials ELSE max_trials END,
               max_parallel = CASE WHEN :set_max_parallel THEN :max_parallel
                                   ELSE max_parallel END,
               max_resource_total = CASE WHEN :set_max_resource_total
                                         THEN CAST(:max_resource_total AS int)
                                         ELSE max_resource_total END,
               max_gpu_hours = CASE WHEN :set_max_gpu_hours
                                    THEN CAST(:max_gpu_hours AS float8) ELSE max_gpu_hours END,
               resource_spent = resource_spent AND NOT :set_max_resource_total
                                AND NOT :set_max_gpu_hours,
               updated_at = now()
         WHERE study_id = :study_id
        RETURNING study_id, state, max_trials, max_parallel, max_resource_total, max_gpu_hours
    ), n AS (SELECT pg_notify('{WORK_CHANNEL}', CAST(s.study_id AS text)) FROM s),
    {
        event(
            "e",
            "study_updated",
            "s",
            "s.study_id",
            "NULL",
            "jsonb_build_object('state', s.state, 'max_trials', s.max_trials,"
            " 'max_parallel', s.max_parallel, 'max_resource_total', s.max_resource_total,"
            " 'max_gpu_hours', s.max_gpu_hours)",
        )
    }
    SELECT s.study_id, (SELECT count(*) FROM n) FROM s
    """
)


def update_study(
    conn: Connection,
    study_id: int,
    *,
    state: StoredStudyState | None,
    max_trials: tuple[int | None] | None,
    max_parallel: tuple[int | None] | None,
    max_resource_total: tuple[int | None] | None = None,
    max_gpu_hours: tuple[float | None] | None = None,
) -> bool:
    """Change the stored state and budgets (a 1-tuple sets a field, even to None; a new
    ``max_resource_total`` or ``max_gpu_hours`` clears ``resource_spent``); False if there is
    no such study."""
    result = conn.execute(
        _UPDATE,
        {
            "study_id": study_id,
            "state": state,
            "set_max_trials": max_trials is not None,
            "max_trials": max_trials[0] if max_trials else None,
            "set_max_parallel": max_parallel is not None,
            "max_parallel": max_parallel[0] if max_parallel else None,
            "set_max_resource_total": max_resource_total is not None,
            "max_resource_total": max_resource_total[0] if max_resource_total else None,
            "set_max_gpu_hours": max_gpu_hours is not None,
            "max_gpu_hours": max_gpu_hours[0] if max_gpu_hours else None,
        },
    ).one_or_none()
    return result is not None


_PAUSE_FAILING = text(
    f"""
    WITH f AS (
        SELECT count(*) FILTER (WHERE t.state = 'FAIL') AS failed,
               count(*) FILTER (WHERE t.state IN ('COMPLETE', 'PRUNED')) AS succeeded,
               count(DISTINCT coalesce(h.fail_reason, '')) FILTER (WHERE t.state = 'FAIL')
                   AS reasons,
               min(coalesce(h.fail_reason, 'unknown')) FILTER (WHERE t.state = 'FAIL') AS reason
          FROM trials t JOIN hpo_trials h ON h.trial_id = t.trial_id
         WHERE t.study_id = :study_id
    ), last_message AS (
        SELECT a.value_json::json #>> '{{}}' AS message
          FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id
         WHERE t.study_id = :study_id AND t.state = 'FAIL' AND a.key = 'fail_message'
         ORDER BY t.number DESC LIMIT 1
    ), s AS (
        UPDATE hpo_studies
           SET state = 'paused', updated_at = now(),
               state_reason = format(
                   'paused by the server: its first %s trials all failed with reason %L%s;'
                   ' fix the cause, then resume the study',
                   f.failed, f.reason,
                   coalesce(' (last: ' || left((SELECT message FROM last_message), 300) || ')',
                            ''))
          FROM f
         WHERE hpo_studies.study_id = :study_id AND hpo_studies.state = 'running'
           AND f.succeeded = 0 AND f.failed >= :n AND f.reasons = 1
        RETURNING hpo_studies.study_id, hpo_studies.state_reason
    ), {
        event(
            "e",
            "study_updated",
            "s",
            "s.study_id",
            "NULL",
            "jsonb_build_object('state', 'paused', 'state_reason', s.state_reason)",
        )
    }
    SELECT s.state_reason FROM s
    """
)


def pause_if_all_failed(conn: Connection, study_id: int, n: int) -> str | None:
    """Pause a running study whose finished trials are at least ``n`` failures, all for one
    reason, and nothing else; returns the reason stored, or None if the study was left as is."""
    row = conn.execute(_PAUSE_FAILING, {"study_id": study_id, "n": n}).one_or_none()
    return None if row is None else str(row.state_reason)


def mark_resource_spent(conn: Connection, study_id: int) -> None:
    """The asha hand-out found the study's ``max_resource_total`` spent with nothing left to
    run, or its ``max_gpu_hours`` used (the caller holds the study's ask lock): the study is
    completed once nothing is active."""
    conn.execute(
        text("UPDATE hpo_studies SET resource_spent = true WHERE study_id = :id"), {"id": study_id}
    )


def replace_metadata(conn: Connection, study_id: int, metadata: Mapping[str, Any]) -> None:
    conn.execute(text("DELETE FROM study_user_attributes WHERE study_id = :id"), {"id": study_id})
    conn.execute(
        text(
            """
            INSERT INTO study_user_attributes (study_id, key, value_json)
            SELECT :id, x.key, x.value
              FROM unnest(CAST(:keys AS text[]), CAST(:values AS text[])) AS x(key, value)
            """
        ),
        {
            "id": study_id,
            "keys": list(metadata),
            "values": [json.dumps(v) for v in metadata.values()],
        },
    )


_DELETE = [
    f"DELETE FROM {table} WHERE trial_id IN (SELECT trial_id FROM trials WHERE study_id = :id)"
    for table in (
        "trial_params",
        "trial_values",
        "trial_intermediate_values",
        "trial_user_attributes",
        "trial_system_attributes",
        "trial_heartbeats",
    )
] + [
    "DELETE FROM trials WHERE study_id = :id",
    "DELETE FROM study_directions WHERE study_id = :id",
    "DELETE FROM study_user_attributes WHERE study_id = :id",
    "DELETE FROM study_system_attributes WHERE study_id = :id",
    "DELETE FROM studies WHERE study_id = :id",
]


def lock_study_row(conn: Connection, study_id: int) -> bool:
    """Lock the study's ``hpo_studies`` row until commit; False if there is no such study."""
    found = conn.execute(
        text("SELECT 1 FROM hpo_studies WHERE study_id = :id FOR UPDATE"), {"id": study_id}
    ).one_or_none()
    return found is not None


def delete_study(conn: Connection, study_id: int) -> None:
    """Delete the study and everything under it, Optuna's rows and ours (ON DELETE CASCADE)."""
    for statement in _DELETE:
        conn.execute(text(statement), {"id": study_id})


@dataclass(frozen=True)
class StudyDefinitionRow:
    """What never changes after a study's creation."""

    optuna_name: str  # Optuna's study_name: ``<team>/<name>`` (``<name>`` in the default team)
    name: str  # the API's name, unique in the team
    spec: dict[str, Any]  # search space, sampler, pruner, task (``service.studies.service``)
    directions: list[str]


def load_definition_row(conn: Connection, study_id: int) -> StudyDefinitionRow | None:
    row = (
        conn.execute(
            text(
                """
                SELECT st.study_name AS optuna_name, s.name, s.spec,
                       (SELECT array_agg(lower(d.direction::text) ORDER BY d.objective)
                          FROM study_directions d WHERE d.study_id = st.study_id) AS directions
                  FROM hpo_studies s JOIN studies st ON st.study_id = s.study_id
                 WHERE s.study_id = :id
                """
            ),
            {"id": study_id},
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        return None
    return StudyDefinitionRow(
        optuna_name=row["optuna_name"],
        name=row["name"],
        spec=row["spec"],
        directions=list(row["directions"] or []),
    )
