"""Lease rules: how a complete call finishes its trial, and why a lease-checked call failed.

Every call under a lease names its token; a token that does not hold a live lease changes
nothing and gets ``409 lease_lost`` (or ``trial_finished`` when its own trial is already
finished). :class:`~service.trials.service.TrialService` runs these on its transactions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import Connection

from service.errors import InvalidInput, LeaseLost, NotFound, TrialFinished
from service.sampling.rows import constraint_attrs
from service.states import FINISHED_STATES, OPTUNA_STATE
from service.trials import repository as repo
from service.trials.repository import TrialRow

FinishState = Literal["complete", "pruned", "failed"]


@dataclass(frozen=True)
class Finish:
    """How a complete call finishes its trial: ``complete`` with values, ``pruned``, or
    ``failed`` with a reason; user attributes with any of them."""

    state: FinishState
    values: Sequence[float] | None = None
    reason: str | None = None
    user_attrs: Mapping[str, Any] = field(default_factory=dict)
    constraints: Mapping[str, float] | None = None

    def checked(self, declared: Sequence[str]) -> Finish:
        """This finish, its constraint values checked against the study's ``declared`` names
        and put in their order: a complete trial of a study with constraints gives exactly
        those (422 naming the missing or unknown ones); nothing else gives any."""
        if self.state != "complete":
            return self
        given = dict(self.constraints or {})
        missing = [n for n in declared if n not in given]
        unknown = sorted(n for n in given if n not in declared)
        if missing or unknown:
            raise InvalidInput(
                _constraint_problem(missing, unknown, declared),
                {"missing": missing, "unknown": unknown, "declared": list(declared)},
            )
        return replace(self, constraints={n: given[n] for n in declared} or None)

    def run(self, conn: Connection, trial_id: int, token: str) -> TrialRow | None:
        """The finishing statement: the finished trial, or None if it changed nothing. A
        complete trial's constraint values (see :meth:`checked`) become its Optuna system
        attributes ``constraints:<name>``, as ``optuna.Trial.set_constraint`` stores them."""
        row = repo.finish(
            conn,
            trial_id=trial_id,
            token=token,
            state=OPTUNA_STATE[self.state],
            values=self.values,
            fail_reason=self.reason if self.state == "failed" else None,
            user_attrs=self.user_attrs,
        )
        if row is None or not self.constraints:
            return row
        attrs = constraint_attrs(self.constraints)
        repo.upsert_trial_attrs(conn, trial_id, attrs, system=True)
        return replace(row, system_attrs={k: json.dumps(v) for k, v in attrs.items()})


def _constraint_problem(missing: list[str], unknown: list[str], declared: Sequence[str]) -> str:
    parts = []
    if missing:
        parts.append(f"missing constraint value(s): {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown constraint name(s): {', '.join(unknown)}")
    names = ", ".join(declared) if declared else "none"
    return f"{'; '.join(parts)} (the study declares: {names})"


def check_replay(conn: Connection, trial_id: int, token: str, finish: Finish) -> None:
    """A complete that changed nothing: the same completion again (fine), a wrong number of
    values under a live lease (422), or no lease (404/409)."""
    lease = repo.lease_state(conn, trial_id)
    if lease is None:
        raise NotFound(f"trial {trial_id} does not exist")
    if lease.finish_token == token and lease.trial_state in FINISHED_STATES:
        return
    if lease.lease_token == token and lease.lease_live and finish.state == "complete":
        n = len(finish.values or ())
        raise InvalidInput(
            f"the study has {lease.directions} objective(s) but {n} value(s) were given",
            {"expected": lease.directions, "got": n},
        )
    raise_for_lease(conn, trial_id, token)


def raise_for_lease(conn: Connection, trial_id: int, token: str) -> None:
    """Raise why a call under ``token`` on the trial changed nothing."""
    lease = repo.lease_state(conn, trial_id)
    if lease is None:
        raise NotFound(f"trial {trial_id} does not exist")
    if lease.trial_state in FINISHED_STATES and lease.finish_token == token:
        raise TrialFinished(f"trial {trial_id} is already finished")
    raise LeaseLost(
        f"the lease on trial {trial_id} is no longer held by this token "
        "(expired, handed to another worker, or the trial finished)",
        {"trial_id": trial_id, "state": lease.trial_state.lower()},
    )
