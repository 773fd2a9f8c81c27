"""Rows of Optuna's tables (with our lease columns) as the API's trial objects."""

from __future__ import annotations

import datetime as dt
import math

from service.sampling.rows import (
    IMPORTED_FROM,
    constraint_values,
    decode_attrs,
    decode_intermediate,
    decode_params,
    decode_values,
)
from service.states import api_state
from service.trials.repository.rows import TrialRow
from service.trials.schemas import IntermediateValue, TrialOut


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """Optuna keeps naive UTC timestamps; the API always answers with aware ones."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def to_trial_out(row: TrialRow, *, intermediate: bool) -> TrialOut:
    params, _ = decode_params(row.params)
    state = api_state(row.state, row.paused_step)
    if state == "waiting" and not params:  # enqueued: the values it was queued with
        params = dict(decode_attrs(row.system_attrs).get("fixed_params") or {})
    values = decode_values(row.trial_values) if state == "complete" else None
    system_attrs = decode_attrs(row.system_attrs)
    constraints = constraint_values(system_attrs) or None
    imported = system_attrs.get(IMPORTED_FROM)
    start, end = utc(row.datetime_start), utc(row.datetime_complete)
    out = TrialOut(
        id=row.trial_id,
        study_id=row.study_id,
        number=row.number,
        state=state,
        attempt=row.attempt,
        params=params,
        values=values,
        value=values[0] if values else None,
        user_attrs=decode_attrs(row.user_attrs),
        fail_reason=row.fail_reason,
        worker_id=row.worker_id,
        datetime_start=start,
        datetime_complete=end if state in ("complete", "pruned", "failed") else None,
        duration_s=(end - start).total_seconds() if start and end else None,
        lease_expires_at=row.lease_expires_at if state == "running" else None,
        constraints=constraints,
        feasible=None if constraints is None else all(v <= 0 for v in constraints.values()),
        imported_from=imported if isinstance(imported, dict) else None,
        parent_trial_id=row.parent_trial_id,
        started_from_step=row.started_from_step,
        replaced_trial_id=row.replaced_trial_id,
    )
    if intermediate:
        curve = decode_intermediate(row.intermediate)
        out.intermediate_values = [
            IntermediateValue(step=step, value=finite_or_none(value))
            for step, value in sorted(curve.items())
        ]
    return out
