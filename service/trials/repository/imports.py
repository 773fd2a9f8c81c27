"""Imported trials: finished trials written in bulk, and a study's finished trials read back.

:func:`insert_finished_trials` writes many finished trials with one statement per chunk (all of
Optuna's rows and ours, arrays ``unnest``-ed), exactly as the service's own complete leaves a
trial: Optuna's ``trials``, ``trial_params``, ``trial_values``, ``trial_intermediate_values`` and
attribute rows, and an ``hpo_trials`` row stamped with ``change_xid`` so that every study view
re-reads them on its next refresh. They never held a lease: ``attempt`` 0, no worker, not
counted in ``hpo_studies.n_started``. The caller holds the study's ask lock (numbers follow the
study's last one) and owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution, distribution_to_json
from sqlalchemy import Connection, text

from service.sampling.repository import CURRENT_XID, TRIAL_AGGREGATES
from service.sampling.rows import (
    decode_attrs,
    decode_intermediate,
    decode_params,
    decode_values,
    to_stored,
)
from service.states import OptunaTrialState

# Trials per statement: each is one round trip whatever its size.
CHUNK = 10_000


@dataclass(frozen=True)
class FinishedTrial:
    """A finished trial to store, already checked against its study (``params`` exactly its
    active parameters, normalized; ``values`` for COMPLETE only)."""

    state: OptunaTrialState
    params: Mapping[str, Any]
    values: Sequence[float] | None = None
    intermediate: Mapping[int, float] = field(default_factory=dict)
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    system_attrs: Mapping[str, Any] = field(default_factory=dict)
    fail_reason: str | None = None
    datetime_start: dt.datetime | None = None  # naive UTC, as Optuna keeps it
    datetime_complete: dt.datetime | None = None
    # Distributions of parameters the study does not declare (define-by-run).
    undeclared: Mapping[str, BaseDistribution] = field(default_factory=dict)


_INSERT = text(
    f"""
    WITH base AS (
        SELECT coalesce(max(number), -1) + 1 AS n FROM trials WHERE study_id = :study_id
    ), t AS (
        INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete)
        SELECT base.n + x.i - 1, :study_id, CAST(x.state AS trialstate),
               coalesce(x.started, x.completed, now() AT TIME ZONE 'utc'),
               coalesce(x.completed, now() AT TIME ZONE 'utc')
          FROM base, unnest(CAST(:states AS text[]), CAST(:starts AS timestamp[]),
                            CAST(:completes AS timestamp[])) WITH ORDINALITY
                     AS x(state, started, completed, i)
        RETURNING trial_id, number
    ), k AS (
        SELECT t.trial_id, t.number, t.number - base.n AS i FROM t, base
    ), h AS (
        INSERT INTO hpo_trials (trial_id, study_id, attempt, fail_reason, change_xid)
        SELECT k.trial_id, :study_id, 0, x.reason, {CURRENT_XID}
          FROM k JOIN unnest(CAST(:reasons AS text[])) WITH ORDINALITY AS x(reason, i)
            ON k.i = x.i - 1
    ), p AS (
        INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
        SELECT k.trial_id, x.name, x.value, (CAST(:dists AS text[]))[x.dist]
          FROM k JOIN unnest(CAST(:p_trials AS int[]), CAST(:p_names AS text[]),
                             CAST(:p_values AS float8[]), CAST(:p_dists AS int[]))
                      AS x(i, name, value, dist) ON k.i = x.i
    ), v AS (
        INSERT INTO trial_values (trial_id, objective, value, value_type)
        SELECT k.trial_id, x.objective, x.value, CAST(x.kind AS trialvaluetype)
          FROM k JOIN unnest(CAST(:v_trials AS int[]), CAST(:v_objectives AS int[]),
                             CAST(:v_values AS float8[]), CAST(:v_kinds AS text[]))
                      AS x(i, objective, value, kind) ON k.i = x.i
    ), iv AS (
        INSERT INTO trial_intermediate_values
               (trial_id, step, intermediate_value, intermediate_value_type)
        SELECT k.trial_id, x.step, x.value, CAST(x.kind AS trialintermediatevaluetype)
          FROM k JOIN unnest(CAST(:i_trials AS int[]), CAST(:i_steps AS int[]),
                             CAST(:i_values AS float8[]), CAST(:i_kinds AS text[]))
                      AS x(i, step, value, kind) ON k.i = x.i
    ), ua AS (
        INSERT INTO trial_user_attributes (trial_id, key, value_json)
        SELECT k.trial_id, x.key, x.value
          FROM k JOIN unnest(CAST(:ua_trials AS int[]), CAST(:ua_keys AS text[]),
                             CAST(:ua_values AS text[])) AS x(i, key, value) ON k.i = x.i
    ), sa AS (
        INSERT INTO trial_system_attributes (trial_id, key, value_json)
        SELECT k.trial_id, x.key, x.value
          FROM k JOIN unnest(CAST(:sa_trials AS int[]), CAST(:sa_keys AS text[]),
                             CAST(:sa_values AS text[])) AS x(i, key, value) ON k.i = x.i
    )
    SELECT k.trial_id, k.number FROM k ORDER BY k.number
    """
)


def insert_finished_trials(
    conn: Connection,
    study_id: int,
    trials: Sequence[FinishedTrial],
    distributions: Mapping[str, BaseDistribution],
) -> list[tuple[int, int]]:
    """Store ``trials`` after the study's last number, in order; (trial id, number) of each.
    One statement per :data:`CHUNK` trials. The caller holds the study's ask lock."""
    stored: list[tuple[int, int]] = []
    for start in range(0, len(trials), CHUNK):
        chunk = trials[start : start + CHUNK]
        rows = conn.execute(_INSERT, _arrays(study_id, chunk, distributions)).all()
        stored += [(int(r.trial_id), int(r.number)) for r in rows]
    return stored


_COLUMNS = {
    "p": ("names", "values", "dists"),
    "v": ("objectives", "values", "kinds"),
    "i": ("steps", "values", "kinds"),
    "ua": ("keys", "values"),
    "sa": ("keys", "values"),
}


def _arrays(
    study_id: int, trials: Sequence[FinishedTrial], distributions: Mapping[str, BaseDistribution]
) -> dict[str, Any]:
    """The statement's parameters: one array per column, child rows keyed by trial index."""
    dists: dict[str, int] = {}  # distribution JSON -> its 1-based index (SQL arrays)

    def index(distribution: BaseDistribution) -> int:
        return dists.setdefault(distribution_to_json(distribution), len(dists) + 1)

    out: dict[str, Any] = {
        "study_id": study_id,
        "states": [t.state for t in trials],
        "starts": [t.datetime_start for t in trials],
        "completes": [t.datetime_complete for t in trials],
        "reasons": [t.fail_reason for t in trials],
    }
    columns: dict[str, list[Any]] = {
        f"{prefix}_{name}": [] for prefix, rest in _COLUMNS.items() for name in ("trials", *rest)
    }
    for i, trial in enumerate(trials):
        for name, value in trial.params.items():
            dist = distributions.get(name) or trial.undeclared[name]
            _append(columns, "p", i, name, dist.to_internal_repr(value), index(dist))
        for objective, value in enumerate(trial.values or ()):
            _append(columns, "v", i, objective, *to_stored(value))
        for step, value in trial.intermediate.items():
            _append(columns, "i", i, step, *to_stored(value))
        for key, value in trial.user_attrs.items():
            _append(columns, "ua", i, key, json.dumps(value))
        for key, value in trial.system_attrs.items():
            _append(columns, "sa", i, key, json.dumps(value))
    arrays = {**out, "dists": list(dists), **columns}
    return {k: v if k == "study_id" else array_literal(v) for k, v in arrays.items()}


def array_literal(values: Sequence[Any]) -> str:
    """A PostgreSQL array literal (``'{...}'``) of ``values``: ``CAST(... AS float8[])``
    parses it about twenty times faster than the ``ARRAY[...]`` expression psycopg2 writes
    for a list, which matters at a hundred thousand elements."""
    return "{" + ",".join(_element(v) for v in values) + "}"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # finite: non-finite values travel as NULL plus a type tag
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _append(columns: dict[str, list[Any]], prefix: str, trial: int, *values: Any) -> None:
    columns[f"{prefix}_trials"].append(trial)
    for name, value in zip(_COLUMNS[prefix], values, strict=True):
        columns[f"{prefix}_{name}"].append(value)


@dataclass(frozen=True)
class StoredTrial:
    """A finished trial of a study as Optuna's tables hold it (external parameter values)."""

    number: int
    state: OptunaTrialState
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    values: list[float] | None
    intermediate: dict[int, float]
    user_attrs: dict[str, Any]
    system_attrs: dict[str, Any]
    fail_reason: str | None
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None


_FINISHED = text(
    f"""
    SELECT t.trial_id, t.number, t.state::text AS state, t.datetime_start, t.datetime_complete,
           h.fail_reason,
           {TRIAL_AGGREGATES}
      FROM trials t LEFT JOIN hpo_trials h ON h.trial_id = t.trial_id
     WHERE t.study_id = :study_id AND t.state::text = ANY(CAST(:states AS text[]))
     ORDER BY t.number
     LIMIT :limit
    """
)


def finished_trials(
    conn: Connection, study_id: int, states: Sequence[OptunaTrialState], limit: int
) -> list[StoredTrial]:
    """The study's trials in ``states``, by number, at most ``limit``."""
    rows = conn.execute(
        _FINISHED, {"study_id": study_id, "states": list(states), "limit": limit}
    ).mappings()
    return [_stored(row) for row in rows]


def _stored(row: Mapping[Any, Any]) -> StoredTrial:
    params, distributions = decode_params(row["params"])
    state: OptunaTrialState = row["state"]
    return StoredTrial(
        number=row["number"],
        state=state,
        params=params,
        distributions=distributions,
        values=decode_values(row["trial_values"]) if state == "COMPLETE" else None,
        intermediate=decode_intermediate(row["intermediate"]),
        user_attrs=decode_attrs(row["user_attrs"]),
        system_attrs=decode_attrs(row["system_attrs"]),
        fail_reason=row["fail_reason"],
        datetime_start=row["datetime_start"],
        datetime_complete=row["datetime_complete"],
    )


def count_trials(conn: Connection, study_id: int, states: Sequence[OptunaTrialState]) -> int:
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM trials WHERE study_id = :study_id"
                " AND state::text = ANY(CAST(:states AS text[]))"
            ),
            {"study_id": study_id, "states": list(states)},
        ).scalar_one()
    )
