"""Reading trials as the API shows them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from service.sampling.repository import TRIAL_AGGREGATES
from service.states import API_STATE_SQL, TrialStateName
from service.trials.repository.rows import TrialRow

_TRIAL_COLUMNS = f"""
    SELECT t.trial_id, t.study_id, t.number, t.state::text AS state,
           t.datetime_start, t.datetime_complete,
           h.attempt, h.worker_id, h.fail_reason, h.lease_expires_at, h.queued_at,
           h.paused_step, h.parent_trial_id, h.started_from_step, h.replaced_trial_id,
           {TRIAL_AGGREGATES}
"""


_SORT_KEY = (
    "CASE v.value_type WHEN 'INF_NEG' THEN '-Infinity'::float8"
    " WHEN 'INF_POS' THEN 'Infinity'::float8 ELSE v.value END"
)


# True for a trial none of whose constraint values is above 0: Optuna's system attributes
# "constraints:<name>" (Trial.set_constraint, our complete) or the older list "constraints".
FEASIBLE = """
    NOT EXISTS (
        SELECT 1 FROM trial_system_attributes c
         WHERE c.trial_id = t.trial_id
           AND CASE WHEN starts_with(c.key, 'constraints:')
                    THEN CAST(c.value_json AS float8) > 0
                    WHEN c.key = 'constraints'
                    THEN EXISTS (SELECT 1 FROM json_array_elements_text(CAST(c.value_json AS json))
                                   AS e(x) WHERE CAST(e.x AS float8) > 0)
                    ELSE false END)
"""


def get_trial(conn: Connection, trial_id: int) -> TrialRow | None:
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
    return None if row is None else TrialRow.of(row)


# The sorts a client may ask for: (by the first value?, descending?). A whitelist: what reaches
# the SQL text is chosen from fixed fragments, never taken from the request.
_SORTS: dict[str, tuple[bool, bool]] = {
    "number": (False, False),
    "-number": (False, True),
    "value": (True, False),
    "-value": (True, True),
}


def list_trials(
    conn: Connection,
    *,
    study_id: int,
    states: Sequence[TrialStateName] | None,
    sort: str,
    after: Any,
    limit: int,
) -> list[TrialRow]:
    """One page of a study's trials in any of the API ``states`` (all for None). ``sort``:
    number, -number, value, -value (ValueError otherwise).

    Value sorts list only trials with a first objective value (complete ones); ties and pages
    are broken by number. ``after`` is the key of the last row of the previous page.
    """
    if sort not in _SORTS:
        raise ValueError(f"unknown sort {sort!r}")
    by_value, descending = _SORTS[sort]
    params: dict[str, Any] = {"study_id": study_id, "limit": limit, "states": list(states or [])}
    where = ["t.study_id = :study_id"]
    if states:
        where.append(f"({API_STATE_SQL}) = ANY(CAST(:states AS text[]))")
    op = "<" if descending else ">"
    direction = "DESC" if descending else "ASC"
    if not by_value:
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
    return [TrialRow.of(r) for r in conn.execute(text(sql), params).mappings()]


def best_trial_id(conn: Connection, study_id: int, maximize: bool) -> int | None:
    direction = "DESC" if maximize else "ASC"
    row = conn.execute(
        text(
            f"""
            SELECT t.trial_id FROM trials t
              JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
             WHERE t.study_id = :study_id AND t.state = 'COMPLETE' AND {FEASIBLE}
             ORDER BY {_SORT_KEY} {direction}, t.number
             LIMIT 1
            """
        ),
        {"study_id": study_id},
    ).one_or_none()
    return None if row is None else int(row.trial_id)


def complete_values(conn: Connection, study_id: int) -> list[tuple[int, list[float]]]:
    """(trial id, values) of every feasible complete trial, for Pareto fronts."""
    rows = conn.execute(
        text(
            f"""
            SELECT t.trial_id,
                   array_agg(CASE v.value_type WHEN 'INF_NEG' THEN '-Infinity'::float8
                                               WHEN 'INF_POS' THEN 'Infinity'::float8
                                               ELSE v.value END ORDER BY v.objective) AS vals
              FROM trials t JOIN trial_values v ON v.trial_id = t.trial_id
             WHERE t.study_id = :study_id AND t.state = 'COMPLETE' AND {FEASIBLE}
             GROUP BY t.trial_id
            """
        ),
        {"study_id": study_id},
    ).all()
    return [(int(r.trial_id), list(r.vals)) for r in rows]


def get_trials(conn: Connection, trial_ids: Sequence[int]) -> list[TrialRow]:
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
    return [TrialRow.of(r) for r in rows]


def study_of_trial(conn: Connection, trial_id: int) -> int | None:
    row = conn.execute(
        text("SELECT study_id FROM hpo_trials WHERE trial_id = :trial_id"), {"trial_id": trial_id}
    ).one_or_none()
    return None if row is None else int(row.study_id)


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
