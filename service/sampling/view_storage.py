"""An Optuna storage over the in-memory view of one study, recording what samplers write.

Optuna's samplers and pruners read a study through ``BaseStorage``. This implementation serves
those reads from memory (the view, kept in step with PostgreSQL by ``StudyView.apply_changes``) and
records every write a sampler or pruner makes (``set_trial_system_attr`` for CMA-ES, NSGA-II,
grid and TPE's constant liar, ``set_study_system_attr`` for QMC and NSGA-II, parameters of the
trial being sampled) in a :class:`Journal`. States are never journaled, nor constraint values
(the view may present a failed trial as infeasible evidence; the database keeps it failed). The
caller persists the journal in the same transaction as the trial it belongs to, so the database
stays the only source of truth.

Not thread-safe: ``StudyView`` serialises all use with its lock.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection

# BaseStorage.get_all_studies returns FrozenStudy objects, a class no public module exports.
from optuna.study._frozen import FrozenStudy  # private-ok: BaseStorage's own return type
from optuna.trial import FrozenTrial, TrialState

from service.sampling.rows import is_constraint_key

# Provisional trials (being sampled, not yet in the database) get negative ids.
_FIRST_PROVISIONAL_ID = -1


@dataclass
class Journal:
    """Writes made through the storage since the journal was last drained."""

    study_system_attrs: dict[str, Any] = field(default_factory=dict)
    trial_system_attrs: dict[int, dict[str, Any]] = field(default_factory=dict)
    trial_user_attrs: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.study_system_attrs or self.trial_system_attrs or self.trial_user_attrs)


class ViewStorage(BaseStorage):
    """Optuna storage holding exactly one study, in memory."""

    def __init__(
        self,
        study_id: int,
        study_name: str,
        directions: Sequence[StudyDirection],
        user_attrs: dict[str, Any] | None = None,
    ) -> None:
        self.study_id = study_id
        self.study_name = study_name
        self._directions = list(directions)
        self._user_attrs = dict(user_attrs or {})
        self._system_attrs: dict[str, Any] = {}
        self._by_id: dict[int, FrozenTrial] = {}
        # Trials ordered by number, their ids in the same order, and each trial's index in
        # those lists, kept up to date incrementally: a refresh usually appends one trial or
        # replaces one in place.
        self._ordered: list[FrozenTrial] = []
        self._ordered_ids: list[int] = []
        self._index: dict[int, int] = {}
        # The trials of each state set asked for, ordered by number, kept up to date in place.
        self._by_states: dict[tuple[TrialState, ...], list[FrozenTrial]] = {}
        self._next_provisional = _FIRST_PROVISIONAL_ID
        self.journal = Journal()

    # ---- maintenance by the view (not part of Optuna's interface) ----

    def put_trial(self, trial_id: int, trial: FrozenTrial) -> None:
        """Insert or replace the trial ``trial_id`` as read from the database (numbers never
        change). ``trial`` must have been built with ``trial_id=trial_id``: Optuna's samplers
        write back to the storage by the id the trial carries."""
        old = self._by_id.get(trial_id)
        self._by_id[trial_id] = trial
        index = self._index.get(trial_id)
        if index is not None:
            self._ordered[index] = trial
        elif not self._ordered or trial.number > self._ordered[-1].number:
            self._index[trial_id] = len(self._ordered)
            self._ordered.append(trial)
            self._ordered_ids.append(trial_id)
        else:
            position = bisect.bisect_left([t.number for t in self._ordered], trial.number)
            self._ordered.insert(position, trial)
            self._ordered_ids.insert(position, trial_id)
            self._reindex(position)
        self._changed(old, trial)

    def drop_trial(self, trial_id: int) -> FrozenTrial | None:
        trial = self._by_id.pop(trial_id, None)
        index = self._index.pop(trial_id, None)
        if index is not None:
            del self._ordered[index]
            del self._ordered_ids[index]
            self._reindex(index)
        if trial is not None:
            self._changed(trial, None)
        return trial

    def _changed(self, old: FrozenTrial | None, new: FrozenTrial | None) -> None:
        """Bring the per-state lists up to date (a bisection each, by number)."""
        trial = new if new is not None else old
        assert trial is not None
        for states, members in self._by_states.items():
            was = old is not None and old.state in states
            kept = new if new is not None and new.state in states else None
            if not was and kept is None:
                continue
            position = bisect.bisect_left(members, trial.number, key=_number)
            if was and (position == len(members) or members[position] is not old):
                self._by_states.clear()  # numbers not unique after all: rebuild on demand
                break
            if kept is None:
                del members[position]
            elif was:
                members[position] = kept
            else:
                members.insert(position, kept)

    def _reindex(self, start: int) -> None:
        for position in range(start, len(self._ordered_ids)):
            self._index[self._ordered_ids[position]] = position

    def replace_system_attrs(self, attrs: dict[str, Any]) -> None:
        self._system_attrs = dict(attrs)

    def drain_journal(self) -> Journal:
        journal, self.journal = self.journal, Journal()
        return journal

    @property
    def n_trials(self) -> int:
        return len(self._by_id)

    @property
    def next_number(self) -> int:
        return self._ordered[-1].number + 1 if self._ordered else 0

    def trials(self) -> list[FrozenTrial]:
        """All trials ordered by number (shared objects: do not mutate)."""
        return self._ordered

    def trials_by_id(self) -> Iterator[tuple[int, FrozenTrial]]:
        """(trial id, trial) of every trial, ordered by number (shared objects: do not mutate)."""
        return zip(self._ordered_ids, self._ordered, strict=True)

    def _trial(self, trial_id: int) -> FrozenTrial:
        try:
            return self._by_id[trial_id]
        except KeyError:
            raise KeyError(
                f"trial {trial_id} is not in the view of study {self.study_id}"
            ) from None

    def _check_study(self, study_id: int) -> None:
        if study_id != self.study_id:
            raise KeyError(f"study {study_id} is not in this view")

    # ---- studies ----

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        raise NotImplementedError("the view holds one existing study")

    def delete_study(self, study_id: int) -> None:
        raise NotImplementedError("studies are deleted through the service")

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._check_study(study_id)
        self._user_attrs[key] = value

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._check_study(study_id)
        self._system_attrs[key] = value
        self.journal.study_system_attrs[key] = value

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name != self.study_name:
            raise KeyError(f"no study named {study_name!r} in this view")
        return self.study_id

    def get_study_name_from_id(self, study_id: int) -> str:
        self._check_study(study_id)
        return self.study_name

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        self._check_study(study_id)
        return list(self._directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        self._check_study(study_id)
        return dict(self._user_attrs)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        self._check_study(study_id)
        return dict(self._system_attrs)

    def get_all_studies(self) -> list[FrozenStudy]:
        """The one study in the view."""
        return [
            FrozenStudy(
                study_name=self.study_name,
                direction=None,
                directions=self._directions,
                user_attrs=dict(self._user_attrs),
                system_attrs=dict(self._system_attrs),
                study_id=self.study_id,
            )
        ]

    # ---- trials ----

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        """Create a provisional trial (negative id) numbered after every trial in the view."""
        self._check_study(study_id)
        trial_id = self._next_provisional
        self._next_provisional -= 1
        number = self.next_number
        now = dt.datetime.now()
        if template_trial is None:
            trial = FrozenTrial(
                number=number,
                state=TrialState.RUNNING,
                value=None,
                datetime_start=now,
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=trial_id,
            )
        else:
            template = copy.deepcopy(template_trial)
            trial = FrozenTrial(
                number=number,
                state=template.state,
                value=None,
                values=template.values,
                datetime_start=template.datetime_start,
                datetime_complete=template.datetime_complete,
                params=template.params,
                distributions=template.distributions,
                user_attrs=template.user_attrs,
                system_attrs=template.system_attrs,
                intermediate_values=template.intermediate_values,
                trial_id=trial_id,
            )
        self.put_trial(trial_id, trial)
        return trial_id

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        trial = copy.copy(self._trial(trial_id))
        trial.params = {
            **trial.params,
            param_name: distribution.to_external_repr(param_value_internal),
        }
        trial.distributions = {**trial.distributions, param_name: distribution}
        self.put_trial(trial_id, trial)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        self._check_study(study_id)
        numbers = [t.number for t in self._ordered]
        position = bisect.bisect_left(numbers, trial_number)
        if position < len(numbers) and numbers[position] == trial_number:
            return self._ordered_ids[position]
        raise KeyError(f"no trial number {trial_number} in study {study_id}")

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        trial = copy.copy(self._trial(trial_id))
        trial.state = state
        if values is not None:
            trial.values = list(values)
        if state == TrialState.RUNNING and trial.datetime_start is None:
            trial.datetime_start = dt.datetime.now()
        if state.is_finished():
            trial.datetime_complete = dt.datetime.now()
        self.put_trial(trial_id, trial)
        return True

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        trial = copy.copy(self._trial(trial_id))
        trial.intermediate_values = {**trial.intermediate_values, step: intermediate_value}
        self.put_trial(trial_id, trial)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        trial = copy.copy(self._trial(trial_id))
        trial.user_attrs = {**trial.user_attrs, key: value}
        self.put_trial(trial_id, trial)
        self.journal.trial_user_attrs.setdefault(trial_id, {})[key] = value

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        """Recorded in the journal, except constraint values: those come from complete calls
        only (the view may show a failed trial as infeasible evidence, see
        :class:`~service.sampling.rows.Evidence`, and that must never reach the database)."""
        trial = copy.copy(self._trial(trial_id))
        trial.system_attrs = {**trial.system_attrs, key: value}
        self.put_trial(trial_id, trial)
        if not is_constraint_key(key):
            self.journal.trial_system_attrs.setdefault(trial_id, {})[key] = value

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._trial(trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        self._check_study(study_id)
        trials = self._filtered(states)
        return copy.deepcopy(trials) if deepcopy else list(trials)

    def _filtered(self, states: Container[TrialState] | None) -> list[FrozenTrial]:
        if states is None:
            return self.trials()
        key = tuple(s for s in TrialState if s in states)
        cached = self._by_states.get(key)
        if cached is None:
            cached = [t for t in self.trials() if t.state in key]
            self._by_states[key] = cached
        return cached


def _number(trial: FrozenTrial) -> int:
    return trial.number
