"""The typed rows the trial repository hands to the services.

The aggregates (``params``, ``trial_values``, ``intermediate``, attributes) are kept as
PostgreSQL's ``json_agg`` returns them; ``service.sampling.rows`` decodes them into Optuna's
objects and the read model into the API's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from service.states import OptunaTrialState

# [[name, internal value, distribution JSON], ...]
RawParams = list[list[Any]]
# [[objective or step, value or None, value type], ...]
RawValues = list[list[Any]]
# {key: JSON text}
RawAttrs = dict[str, str]


@dataclass(frozen=True)
class TrialRow:
    """A trial as the API reads it: Optuna's columns, our lease columns, the aggregates."""

    trial_id: int
    study_id: int
    number: int
    state: OptunaTrialState
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    attempt: int
    worker_id: str | None
    fail_reason: str | None
    lease_expires_at: dt.datetime | None
    queued_at: dt.datetime | None
    params: RawParams | None
    trial_values: RawValues | None
    intermediate: RawValues | None
    user_attrs: RawAttrs | None
    system_attrs: RawAttrs | None
    # The sort key of a page sorted by value (the first objective's value), else None.
    sort_value: float | None = None
    # The writing transaction's id, in reads of a change feed (``hpo_trials.change_xid``).
    change_xid: int | None = None
    # The step at which the asha pruner paused the trial (``hpo_trials.paused_step``).
    paused_step: int | None = None
    # pbt lineage (``hpo_trials``): the parent, the child's first step, the trial it replaced.
    parent_trial_id: int | None = None
    started_from_step: int | None = None
    replaced_trial_id: int | None = None

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> TrialRow:
        """From a result row with these columns (others, such as bookkeeping, are ignored)."""
        return cls(**{name: row[name] for name in _FIELDS if name in row})


_FIELDS = tuple(f.name for f in fields(TrialRow))


@dataclass(frozen=True)
class LeaseState:
    """Why a lease-checked statement changed nothing: the trial's state and lease as they are."""

    trial_state: OptunaTrialState
    study_id: int
    lease_token: str | None
    lease_live: bool
    finish_token: str | None
    directions: int
