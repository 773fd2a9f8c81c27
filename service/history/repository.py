"""SQL of the read models. Every function is one statement, and none writes.

Values come back as float8 with Optuna's infinities restored (Optuna stores them as NULL plus a
type tag); trials for ``TrialOut`` come back as :class:`~service.trials.repository.rows.TrialRow`,
everything else as the small frozen rows below, named for what they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

from service.states import OptunaTrialState
from service.trials.repository.reads import FEASIBLE
from service.trials.repository.rows import RawParams, TrialRow

# One stored objective value / intermediate value as float8, infinities (and NaN) restored.
_VALUE = (
    "CASE v.value_type WHEN 'INF_NEG' THEN '-Infinity'::float8"
    " WHEN 'INF_POS' THEN 'Infinity'::float8 ELSE v.value END"
)
_INTERMEDIATE = (
    "CASE i.intermediate_value_type WHEN 'INF_NEG' THEN '-Infinity'::float8"
    " WHEN 'INF_POS' THEN 'Infinity'::float8 WHEN 'NAN' THEN 'NaN'::float8"
    " ELSE i.intermediate_value END"
)
_VALUES_ARRAY = (
    f"(SELECT array_agg({_VALUE} ORDER BY v.objective)"
    " FROM trial_values v WHERE v.trial_id = t.trial_id)"
)


def _trial_columns(intermediate: bool) -> str:
    """The columns of a :class:`TrialRow`, for ``trials t`` joined with ``hpo_trials h``. Of
    the system attributes only ``fixed_params`` (the parameters of a trial enqueued and not
    started yet) and the constraint values are read: the API shows no other."""
    curve = (
        """(SELECT json_agg(json_build_array(i.step, i.intermediate_value,
                                             i.intermediate_value_type) ORDER BY i.step)
              FROM trial_intermediate_values i WHERE i.trial_id = t.trial_id)"""
        if intermediate
        else "NULL::json"
    )
    return f"""
        t.trial_id, t.study_id, t.number, t.state::text AS state,
        t.datetime_start, t.datetime_complete,
        coalesce(h.attempt, 0) AS attempt, h.worker_id, h.fail_reason, h.lease_expires_at,
        h.queued_at, h.paused_step, h.parent_trial_id, h.started_from_step, h.replaced_trial_id,
        (SELECT json_agg(json_build_array(p.param_name, p.param_value, p.distribution_json))
           FROM trial_params p WHERE p.trial_id = t.trial_id) AS params,
        (SELECT json_agg(json_build_array(v.objective, v.value, v.value_type))
           FROM trial_values v WHERE v.trial_id = t.trial_id) AS trial_values,
        (SELECT json_object_agg(a.key, a.value_json)
           FROM trial_user_attributes a WHERE a.trial_id = t.trial_id) AS user_attrs,
        (SELECT json_object_agg(a.key, a.value_json)
           FROM trial_system_attributes a
          WHERE a.trial_id = t.trial_id
            AND (a.key IN ('fixed_params', 'constraints')
                 OR starts_with(a.key, 'constraints:'))) AS system_attrs,
        {curve} AS intermediate
    """


# ---- studies overview ----


@dataclass(frozen=True)
class StudyActivity:
    """What the overview adds to a study row."""

    last_trial_start: dt.datetime | None
    last_trial_complete: dt.datetime | None
    workers: list[str]
    best_number: int | None
    best_value: float | None


_ACTIVITY = text(
    f"""
    SELECT s.study_id, a.last_start, a.last_complete,
           coalesce((SELECT array_agg(DISTINCT h.worker_id ORDER BY h.worker_id)
                       FROM hpo_trials h
                      WHERE h.study_id = s.study_id AND h.lease_token IS NOT NULL
                        AND h.lease_expires_at > now() AND h.worker_id IS NOT NULL),
                    '{{}}') AS workers,
           b.number AS best_number, b.value AS best_value
      FROM unnest(CAST(:ids AS int[])) AS s(study_id)
     CROSS JOIN LATERAL (
           SELECT max(t.datetime_start) AS last_start, max(t.datetime_complete) AS last_complete
             FROM trials t WHERE t.study_id = s.study_id
     ) AS a
      LEFT JOIN LATERAL (
           SELECT t.number, {_VALUE} AS value
             FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
            WHERE t.study_id = s.study_id AND t.state = 'COMPLETE' AND {FEASIBLE}
              AND s.study_id = ANY(CAST(:single AS int[]))
            ORDER BY CASE WHEN s.study_id = ANY(CAST(:maximize AS int[]))
                          THEN -({_VALUE}) ELSE {_VALUE} END, t.number
            LIMIT 1
      ) AS b ON true
    """
)


def study_activity(
    conn: Connection, ids: Sequence[int], single: Sequence[int], maximize: Sequence[int]
) -> dict[int, StudyActivity]:
    """Latest trial times, workers with a live lease, and (for the ``single``-objective studies,
    maximising those in ``maximize``) the best complete trial, of every study in ``ids``."""
    rows = conn.execute(
        _ACTIVITY, {"ids": list(ids), "single": list(single), "maximize": list(maximize)}
    ).mappings()
    return {
        r["study_id"]: StudyActivity(
            last_trial_start=r["last_start"],
            last_trial_complete=r["last_complete"],
            workers=list(r["workers"]),
            best_number=r["best_number"],
            best_value=r["best_value"],
        )
        for r in rows
    }


_COMPLETE_VALUES = text(
    f"""
    SELECT t.study_id, {_VALUES_ARRAY} AS vals
      FROM trials t
     WHERE t.study_id = ANY(CAST(:ids AS int[])) AND t.state = 'COMPLETE' AND {FEASIBLE}
    """
)


def complete_values(conn: Connection, ids: Sequence[int]) -> dict[int, list[list[float]]]:
    """The values of every feasible complete trial of the studies in ``ids`` (for Pareto
    fronts)."""
    out: dict[int, list[list[float]]] = {study_id: [] for study_id in ids}
    for row in conn.execute(_COMPLETE_VALUES, {"ids": list(ids)}):
        if row.vals is not None:
            out[row.study_id].append(list(row.vals))
    return out


# ---- optimization history ----


@dataclass(frozen=True)
class FinishedTrial:
    """A finished trial as the optimization history plots it."""

    trial_id: int
    number: int
    state: OptunaTrialState  # COMPLETE, PRUNED or FAIL
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    values: list[float] | None  # by objective; None unless it stored values
    feasible: bool = True  # False for a trial with a constraint value above 0


_HISTORY = text(
    f"""
    SELECT t.trial_id, t.number, t.state::text AS state, t.datetime_start, t.datetime_complete,
           {_VALUES_ARRAY} AS vals, {FEASIBLE} AS feasible
      FROM trials t
     WHERE t.study_id = :study_id AND t.state IN ('COMPLETE', 'PRUNED', 'FAIL')
       AND t.number > :after
     ORDER BY t.number
     LIMIT :limit
    """
)


def finished_trials(
    conn: Connection, study_id: int, after_number: int, limit: int
) -> list[FinishedTrial]:
    """Finished trials numbered above ``after_number``, in number order."""
    params = {"study_id": study_id, "after": after_number, "limit": limit}
    return [
        FinishedTrial(
            trial_id=r.trial_id,
            number=r.number,
            state=r.state,
            datetime_start=r.datetime_start,
            datetime_complete=r.datetime_complete,
            values=None if r.vals is None else list(r.vals),
            feasible=r.feasible,
        )
        for r in conn.execute(_HISTORY, params)
    ]


# ---- change feed ----

_HORIZON = "(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint"


def _changes_sql(intermediate: bool) -> str:
    return f"""
    SELECT z.horizon, c.*
      FROM (SELECT {_HORIZON} AS horizon) AS z
      LEFT JOIN LATERAL (
           SELECT h.change_xid, {_trial_columns(intermediate)}
             FROM hpo_trials h JOIN trials t ON t.trial_id = h.trial_id
            WHERE h.study_id = :study_id AND (h.change_xid, h.trial_id) > (:xid, :trial_id)
            ORDER BY h.change_xid, h.trial_id
            LIMIT :limit
      ) AS c ON true
    """


_CHANGES = {flag: text(_changes_sql(flag)) for flag in (False, True)}


def changed_trials(
    conn: Connection,
    study_id: int,
    after: tuple[int, int],
    limit: int,
    *,
    intermediate: bool,
) -> tuple[int, list[TrialRow]]:
    """The transaction horizon (``pg_snapshot_xmin`` of this statement's snapshot: every
    transaction below it has finished) and the study's trials after ``after`` in
    (change_xid, trial_id) order, each with its ``change_xid``. ``(x, -1)`` means every trial
    changed by a transaction >= x."""
    params = {"study_id": study_id, "xid": after[0], "trial_id": after[1], "limit": limit}
    rows = conn.execute(_CHANGES[intermediate], params).mappings().all()
    horizon = int(rows[0]["horizon"])
    return horizon, [TrialRow.of(r) for r in rows if r["trial_id"] is not None]


# ---- learning curves ----


@dataclass(frozen=True)
class TrialCurve:
    """A trial's intermediate values, in step order (NaN and infinities as floats)."""

    trial_id: int
    number: int
    state: OptunaTrialState
    steps: list[int]
    values: list[float]
    paused_step: int | None = None


_CURVES = text(
    f"""
    SELECT t.trial_id, t.number, t.state::text AS state, h.paused_step, c.steps, c.vals
      FROM trials t
      JOIN hpo_trials h ON h.trial_id = t.trial_id
     CROSS JOIN LATERAL (
           SELECT array_agg(i.step ORDER BY i.step) AS steps,
                  array_agg({_INTERMEDIATE} ORDER BY i.step) AS vals
             FROM trial_intermediate_values i WHERE i.trial_id = t.trial_id
     ) AS c
     WHERE t.study_id = :study_id AND t.number > :after AND c.steps IS NOT NULL
       AND (CAST(:numbers AS int[]) IS NULL OR t.number = ANY(CAST(:numbers AS int[])))
     ORDER BY t.number
     LIMIT :limit
    """
)


def curves(
    conn: Connection,
    study_id: int,
    numbers: Sequence[int] | None,
    after_number: int,
    limit: int,
) -> list[TrialCurve]:
    """Trials with intermediate values (of ``numbers`` only, if given), in number order."""
    params = {
        "study_id": study_id,
        "numbers": None if numbers is None else list(numbers),
        "after": after_number,
        "limit": limit,
    }
    return [
        TrialCurve(
            trial_id=r.trial_id,
            number=r.number,
            state=r.state,
            steps=list(r.steps),
            values=[float(v) for v in r.vals],
            paused_step=r.paused_step,
        )
        for r in conn.execute(_CURVES, params)
    ]


# ---- importance ----


def count_complete(conn: Connection, study_id: int) -> int:
    """Complete trials never change again: their count identifies what importances saw."""
    n = conn.execute(
        text("SELECT count(*) FROM trials WHERE study_id = :id AND state = 'COMPLETE'"),
        {"id": study_id},
    ).scalar_one()
    return int(n)


@dataclass(frozen=True)
class CompleteTrial:
    """A complete trial's parameters and values, what importances are computed from."""

    trial_id: int
    number: int
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    params: RawParams | None  # as ``json_agg`` returns them (``service.sampling.rows``)
    values: list[float] | None  # by objective; None if it stored none


_COMPLETE_TRIALS = text(
    f"""
    SELECT t.trial_id, t.number, t.datetime_start, t.datetime_complete,
           (SELECT json_agg(json_build_array(p.param_name, p.param_value, p.distribution_json))
              FROM trial_params p WHERE p.trial_id = t.trial_id) AS params,
           {_VALUES_ARRAY} AS vals
      FROM trials t
     WHERE t.study_id = :id AND t.state = 'COMPLETE'
     ORDER BY t.number
    """
)


def complete_trials(conn: Connection, study_id: int) -> list[CompleteTrial]:
    """Parameters and values of every complete trial, in number order."""
    return [
        CompleteTrial(
            trial_id=r.trial_id,
            number=r.number,
            datetime_start=r.datetime_start,
            datetime_complete=r.datetime_complete,
            params=r.params,
            values=None if r.vals is None else list(r.vals),
        )
        for r in conn.execute(_COMPLETE_TRIALS, {"id": study_id})
    ]


# ---- export ----


@dataclass(frozen=True)
class ExportShape:
    """What the columns of an export depend on."""

    search_space: list[str]
    param_names: list[str]
    user_attr_keys: list[str]


_EXPORT_SHAPE = text(
    """
    SELECT s.spec,
           (SELECT coalesce(array_agg(DISTINCT p.param_name), '{}')
              FROM trial_params p JOIN trials t ON t.trial_id = p.trial_id
             WHERE t.study_id = s.study_id) AS param_names,
           (SELECT coalesce(array_agg(DISTINCT a.key), '{}')
              FROM trial_user_attributes a JOIN trials t ON t.trial_id = a.trial_id
             WHERE t.study_id = s.study_id) AS user_attr_keys
      FROM hpo_studies s WHERE s.study_id = :id
    """
)


def export_shape(conn: Connection, study_id: int) -> ExportShape | None:
    row = conn.execute(_EXPORT_SHAPE, {"id": study_id}).mappings().one_or_none()
    if row is None:
        return None
    return ExportShape(
        search_space=list(row["spec"].get("search_space", {})),
        param_names=sorted(row["param_names"]),
        user_attr_keys=sorted(row["user_attr_keys"]),
    )


def _export_sql(intermediate: bool) -> str:
    return f"""
    SELECT {_trial_columns(intermediate)}
      FROM trials t LEFT JOIN hpo_trials h ON h.trial_id = t.trial_id
     WHERE t.study_id = :study_id AND t.number > :after
     ORDER BY t.number
     LIMIT :limit
    """


_EXPORT = {flag: text(_export_sql(flag)) for flag in (False, True)}


def trials_after(
    conn: Connection, study_id: int, after_number: int, limit: int, *, intermediate: bool
) -> list[TrialRow]:
    """Trials numbered above ``after_number`` (any state), in number order."""
    params = {"study_id": study_id, "after": after_number, "limit": limit}
    return [TrialRow.of(r) for r in conn.execute(_EXPORT[intermediate], params).mappings()]
