"""Trials as the view's change query returns them (``ChangedTrial``), so tests and benchmarks
can feed ``StudyView.apply_changes`` the way the service does, without a database: parameters
in Optuna's internal representation with their distribution's JSON, values and intermediate
values with their type tag, attributes as JSON text, timestamps as ISO text."""

from __future__ import annotations

import datetime as dt
import json
from typing import cast

from optuna.distributions import distribution_to_json
from optuna.trial import FrozenTrial

from service.sampling.repository import ChangedTrial
from service.sampling.rows import to_stored
from service.states import OptunaTrialState


def change_row(
    trial_id: int,
    trial: FrozenTrial,
    *,
    leased: bool = False,
    attempt: int = 1,
    queued_at: dt.datetime | None = None,
    fail_reason: str | None = None,
) -> ChangedTrial:
    """``trial`` (its number, state and data) as the row of ``trial_id`` a refresh reads."""
    return {
        "trial_id": trial_id,
        "number": trial.number,
        "state": cast(OptunaTrialState, trial.state.name),
        "datetime_start": _iso(trial.datetime_start),
        "datetime_complete": _iso(trial.datetime_complete),
        "attempt": attempt,
        "queued_at": _iso(queued_at),
        "leased": leased,
        "fail_reason": fail_reason,
        "params": [
            [name, d.to_internal_repr(trial.params[name]), distribution_to_json(d)]
            for name, d in trial.distributions.items()
        ]
        or None,
        "trial_values": [[k, *to_stored(v)] for k, v in enumerate(trial.values or [])] or None,
        "intermediate": [[s, *to_stored(v)] for s, v in sorted(trial.intermediate_values.items())]
        or None,
        "user_attrs": {k: json.dumps(v) for k, v in trial.user_attrs.items()} or None,
        "system_attrs": {k: json.dumps(v) for k, v in trial.system_attrs.items()} or None,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()
