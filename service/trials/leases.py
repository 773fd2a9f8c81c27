"""Calls under a lease: heartbeat, report (with the pruning decision), attributes,
completion, release.

Every call names the lease token; a token that does not hold a live lease changes nothing and
gets ``409 lease_lost`` (or ``trial_finished`` when its own trial is already finished). Each
call is one transaction, committed before it returns.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from service.errors import InvalidInput, LeaseLost, NotFound, TrialFinished
from service.sampling.registry import StudyViews
from service.studies.repository import OPTUNA_STATE
from service.trials import repository as repo
from service.trials.handout import HandOut, HandoutService
from service.trials.index import TrialStudyIndex
from service.trials.read_model import to_trial_out
from service.trials.schemas import TrialOut

_FINISHED = {"COMPLETE", "PRUNED", "FAIL"}


@dataclass(frozen=True)
class Finish:
    """How a complete call finishes its trial: ``complete`` with values, ``pruned``, or
    ``failed`` with a reason; user attributes with any of them."""

    state: str
    values: Sequence[float] | None = None
    reason: str | None = None
    user_attrs: Mapping[str, Any] = field(default_factory=dict)

    def run(self, conn: Connection, trial_id: int, token: str) -> dict[str, Any] | None:
        """The finishing statement: the finished trial, or None if it changed nothing."""
        return repo.finish(
            conn,
            trial_id=trial_id,
            token=token,
            state=OPTUNA_STATE[self.state],
            values=self.values,
            fail_reason=self.reason if self.state == "failed" else None,
            user_attrs=self.user_attrs,
        )


class LeaseService:
    """``handout`` leases the next trial of a complete that asks for one (``complete_and_ask``)."""

    def __init__(
        self, engine: Engine, views: StudyViews, index: TrialStudyIndex, handout: HandoutService
    ) -> None:
        self._engine = engine
        self._views = views
        self._index = index
        self._handout = handout

    def heartbeat(self, trial_id: int, token: str) -> tuple[Any, bool]:
        """Extend the lease; returns (new expiry, should_stop)."""
        with self._engine.begin() as conn:
            result = repo.heartbeat(conn, trial_id, token)
            if result is None:
                _raise_for_lease(conn, trial_id, token)
        assert result is not None
        expires_at, study_state = result
        return expires_at, study_state == "stopped"

    def report(self, trial_id: int, token: str, step: int, value: float) -> tuple[bool, bool]:
        """Store an intermediate value and ask the study's pruner; (should_prune, should_stop).

        Reporting a step again keeps the first value and answers the same question again.
        """
        study_id = self._index.study_of(trial_id)
        with self._views.locked(study_id) as view:
            if len(view.definition.directions) > 1:
                raise InvalidInput(
                    "intermediate values cannot be reported for a multi-objective study "
                    "(Optuna prunes single-objective studies only)"
                )
            with self._engine.begin() as conn:
                reported = repo.report(conn, trial_id, token, step, value, view.cursor)
                if reported is None:
                    _raise_for_lease(conn, trial_id, token)
                assert reported is not None
                view.dirty = True
                view.apply_changes(reported.changed, reported.horizon)
                if reported.inserted:
                    view.add_intermediate_value(trial_id, step, value)
                prune, journal = view.should_prune(trial_id)
                repo.flush_journal(conn, study_id, journal)
        return prune, reported.study_state == "stopped"

    def set_attrs(self, trial_id: int, token: str, attrs: Mapping[str, Any]) -> None:
        with self._engine.begin() as conn:
            if repo.heartbeat(conn, trial_id, token) is None:
                _raise_for_lease(conn, trial_id, token)
            repo.upsert_trial_attrs(conn, trial_id, attrs)
            repo.touch_trial(conn, trial_id)

    def complete(self, trial_id: int, token: str, finish: Finish) -> tuple[TrialOut, bool]:
        """Finish the trial. Repeating it with the same token returns the same trial.

        Returns the finished trial and whether this call was such a repetition.
        """
        with self._engine.begin() as conn:
            row = finish.run(conn, trial_id, token)
            replayed = row is None
            if replayed:
                _check_replay(conn, trial_id, token, finish.state, finish.values)
                row = repo.get_trial(conn, trial_id)
        assert row is not None
        return to_trial_out(row, intermediate=True), replayed

    def complete_and_ask(
        self, trial_id: int, token: str, finish: Finish, worker_id: str
    ) -> tuple[TrialOut, HandOut]:
        """Finish the trial and lease the study's next trial to ``worker_id``, in one
        transaction. A repeated call gets the same finished trial and the same next trial."""
        handout = self._handout
        both = handout.finish_and_ask(
            self._index.study_of(trial_id),
            functools.partial(finish.run, trial_id=trial_id, token=token),
            token,
            worker_id,
        )
        if both is None:  # nothing finished: a repetition (or a lost lease, raised here)
            finished, replayed = self.complete(trial_id, token, finish)
            return finished, handout.ask_next(finished, token, worker_id, replayed)
        row, following = both
        return to_trial_out(row, intermediate=True), following

    def release(self, trial_id: int, token: str) -> None:
        """Hand the lease back: the trial waits in the queue again, no retry used up."""
        with self._engine.begin() as conn:
            if repo.release(conn, trial_id, token) is None:
                _raise_for_lease(conn, trial_id, token)


def _check_replay(
    conn: Connection, trial_id: int, token: str, state: str, values: Sequence[float] | None
) -> None:
    """A complete that changed nothing: the same completion again (fine), a wrong number of
    values under a live lease (422), or no lease (404/409)."""
    lease = repo.lease_state(conn, trial_id)
    if lease is None:
        raise NotFound(f"trial {trial_id} does not exist")
    if lease.finish_token == token and lease.trial_state in _FINISHED:
        return
    if lease.lease_token == token and lease.lease_live and state == "complete":
        n = len(values or ())
        raise InvalidInput(
            f"the study has {lease.directions} objective(s) but {n} value(s) were given",
            {"expected": lease.directions, "got": n},
        )
    _raise_for_lease(conn, trial_id, token)


def _raise_for_lease(conn: Connection, trial_id: int, token: str) -> None:
    lease = repo.lease_state(conn, trial_id)
    if lease is None:
        raise NotFound(f"trial {trial_id} does not exist")
    if lease.trial_state in _FINISHED and lease.finish_token == token:
        raise TrialFinished(f"trial {trial_id} is already finished")
    raise LeaseLost(
        f"the lease on trial {trial_id} is no longer held by this token "
        "(expired, handed to another worker, or the trial finished)",
        {"trial_id": trial_id, "state": lease.trial_state.lower()},
    )
