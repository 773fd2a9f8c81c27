"""Optuna's TPE with its per-trial work done once per trial instead of once per sample.

On every sample ``optuna.samplers.TPESampler`` walks the whole trial list in Python: each
trial's parameters are converted to their internal representation, its feasibility read from
its system attributes, its sort key computed, and the list split into the best ("below") and
the rest ("above") by sorting trial objects. At 1 000 trials that walk is about 1.7 of the
5.6 ms a sample takes on the development machine. A study view
(``service.sampling.view_storage``) never mutates a trial: a changed trial is a new
``FrozenTrial`` object. So :class:`ViewTPESampler` keeps one row per trial object (its
internal parameters, its group and sort key), reuses it while the object is the same.

Each row also has a slot in arrays (:class:`_Table`: group, sort key, number and internal
parameters of every trial, indexed by the order trials were first seen), so the split and the
observations the Parzen estimators are built from are a few numpy operations on those arrays
(a stable ``lexsort`` picks the below set) instead of walks over the rows. Where the arrays
could differ from the walk (a NaN sort key), the walk (``_split``, with ``heapq.nsmallest``)
is used.

On a study view (the service's case) no sample visits every trial in Python: the view's
storage logs the id of every trial it puts or drops (``ViewStorage.changed_since``), and the
table follows that log, recomputing the rows of the trials named there and keeping, per slot,
whether its trial is in the view and in which state. The trials a sample uses are then a mask
over the arrays, ordered by number (``_view_slots``). On any other storage each sample checks,
trial by trial, that the object is the one its row was computed from (``_rows``).

The samples are Optuna's, draw for draw: the same trials end up below and above in the same
order, the same Parzen estimators are built from the same arrays, and the RNG is consumed in
the same way (``tests/unit/test_view_tpe.py`` compares whole runs against ``TPESampler``).
Multi-objective studies keep Optuna's split (a Pareto / hypervolume selection) and share only
the cached parameter rows. The class overrides three private methods of Optuna's TPE
(``_sample_relative``, ``_sample``, ``_get_internal_repr``): Optuna is pinned to the 5.0 line,
and the equality test is what catches a change of its internals.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.sampler import default_gamma
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from service.sampling.view_storage import ViewStorage

# Groups of Optuna's split, in the order it fills the below set.
_COMPLETE, _PRUNED, _INFEASIBLE, _RUNNING = 0, 1, 2, 3

Space = tuple[tuple[str, BaseDistribution], ...]


@dataclass(frozen=True, slots=True)
class _Row:
    trial: FrozenTrial  # the object this row was computed from (rows are reused by identity)
    number: int  # the trial's number (a plain slot: FrozenTrial.number is a property)
    group: int
    key: tuple[float, float]  # the order within the group
    internal: tuple[Any, ...] | None  # the space's parameters, internal; None if one is missing
    slot: int = -1  # the row's place in its table's arrays


_by_key = operator.attrgetter("key")
_by_number = operator.attrgetter("number")
_by_slot = operator.attrgetter("slot")


class _Table:
    """The rows of one space (and direction and mode), by trial id, and their fields in arrays
    indexed by slot: a trial's slot is given when it is first seen and kept when its row is
    recomputed, so a trial that changes overwrites its slot in place."""

    def __init__(self, n_params: int) -> None:
        self.rows: dict[int, _Row] = {}
        self._slots: dict[int, int] = {}
        self._size = 0
        self.group = np.zeros(64, dtype=np.int8)
        self.key = np.zeros((64, 2))
        self.number = np.zeros(64, dtype=np.int64)
        self.complete = np.zeros(64, dtype=bool)  # every parameter of the space present
        self.internal = np.zeros((64, n_params))
        self.ids = np.zeros(64, dtype=np.int64)  # the trial of each slot
        self.state = np.zeros(64, dtype=np.int8)  # its TrialState's value
        # Kept only by ViewTPESampler._view_slots: whether the slot's trial is in the storage
        # now, which storage the table follows, how far into its change log, and the trials
        # left to look at next time.
        self.present = np.zeros(64, dtype=bool)
        self.source: ViewStorage | None = None
        self.cursor = 0
        self.pending: list[int] = []
        # The Python types of each parameter's internal values: np.asarray of a list of them
        # is int64 for ints only (a categorical's index) and float64 for floats only.
        self.types: list[set[type]] = [set() for _ in range(n_params)]

    def store(self, trial_id: int, row: _Row) -> _Row:
        slot = self._slots.get(trial_id)
        if slot is None:
            slot = self._slots[trial_id] = self._size
            self._size += 1
            if slot == len(self.group):
                self._grow()
        row = _Row(row.trial, row.number, row.group, row.key, row.internal, slot)
        self.rows[trial_id] = row
        self.group[slot] = row.group
        self.key[slot] = row.key
        self.number[slot] = row.number
        self.ids[slot] = trial_id
        self.state[slot] = row.trial.state.value
        self.complete[slot] = row.internal is not None
        if row.internal is not None:
            self.internal[slot] = row.internal
            for seen, value in zip(self.types, row.internal, strict=True):
                seen.add(type(value))
        return row

    @property
    def size(self) -> int:
        return self._size

    def slot_of(self, trial_id: int) -> int | None:
        return self._slots.get(trial_id)

    def rows_at(self, slots: np.ndarray) -> list[_Row]:
        return [self.rows[int(trial_id)] for trial_id in self.ids[slots]]

    def _grow(self) -> None:
        for name in ("group", "key", "number", "complete", "internal", "ids", "state", "present"):
            old = getattr(self, name)
            new = np.zeros((2 * len(old), *old.shape[1:]), dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)


class ViewTPESampler(TPESampler):
    """``TPESampler`` with cached per-trial rows; same constructor, same samples."""

    _tables: dict[tuple[Space, bool, bool, bool], _Table]

    def _table(self, study: Study, space: Space, *, view: bool = False) -> _Table:
        """The table of ``space`` in this study's direction and mode; the tables that follow a
        view's change log (``view``) are kept apart from those filled by walks."""
        try:
            tables = self._tables
        except AttributeError:
            tables = self._tables = {}
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        key = (space, maximize, self._is_multivariate(study), view)
        table = tables.get(key)
        if table is None:
            table = tables[key] = _Table(len(space))
        return table

    def _forget(self, table: _Table) -> None:
        self._tables = {k: t for k, t in self._tables.items() if t is not table}

    def _rows(
        self,
        study: Study,
        trials: Sequence[FrozenTrial],
        space: dict[str, BaseDistribution],
        skip: int | None = None,
    ) -> tuple[list[_Row], _Table]:
        """One row per trial but the one whose id is ``skip``, computed only for trial objects
        not seen before; and the table that holds them."""
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        space_key = tuple(space.items())
        table = self._table(study, space_key)
        cache = table.rows
        rows = []
        for trial in trials:
            if trial._trial_id == skip:
                continue
            row = cache.get(trial._trial_id)
            if row is None or row.trial is not trial:
                row = table.store(trial._trial_id, self._row(study, trial, space_key, maximize))
            rows.append(row)
        if len(cache) > 2 * len(trials) + 64:  # trials dropped from the study (rare): start over
            self._forget(table)
            return self._rows(study, trials, space, skip)
        return rows, table

    def _view_slots(
        self,
        study: Study,
        storage: ViewStorage,
        space: dict[str, BaseDistribution],
        states: tuple[TrialState, ...],
        skip: int,
    ) -> tuple[np.ndarray, _Table]:
        """What ``_rows`` gives for ``study._get_trials(states=states)`` but ``skip``, as the
        rows' slots in the same order (by number), without visiting every trial: the table
        follows the view's change log, so only the trials put or dropped since the last call
        are looked at (every trial on the first call, or when the log no longer reaches back).

        ``skip`` (the trial being sampled) is looked at on the next call instead: it is
        changing while it is sampled."""
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        space_key = tuple(space.items())
        table = self._table(study, space_key, view=True)
        changed = storage.changed_since(table.cursor) if table.source is storage else None
        if changed is None:
            table.present[:] = False
            ids = [trial._trial_id for trial in storage.trials()]
        else:
            ids = [*table.pending, *changed]
        table.pending = []
        for trial_id in dict.fromkeys(ids):
            if trial_id == skip:
                table.pending.append(trial_id)
                continue
            trial = storage.find_trial(trial_id)
            slot = table.slot_of(trial_id)
            if trial is None:
                if slot is not None:
                    table.present[slot] = False
                continue
            row = table.rows.get(trial_id)
            if row is None or row.trial is not trial:
                row = table.store(trial_id, self._row(study, trial, space_key, maximize))
            table.present[row.slot] = True
        table.source, table.cursor = storage, storage.change_cursor
        present = table.present[: table.size]
        if table.size > 2 * int(np.count_nonzero(present)) + 64:  # many trials dropped
            self._forget(table)
            return self._view_slots(study, storage, space, states, skip)
        member = present & np.isin(table.state[: table.size], [s.value for s in states])
        skipped = table.slot_of(skip)
        if skipped is not None:
            member[skipped] = False
        slots = np.flatnonzero(member)
        return slots[np.argsort(table.number[slots], kind="stable")], table

    def _row(self, study: Study, trial: FrozenTrial, space: Space, maximize: bool) -> _Row:
        params = self._get_params(trial, study)
        internal = (
            tuple(d.to_internal_repr(params[name]) for name, d in space)
            if all(name in params for name, _ in space)
            else None
        )
        key: tuple[float, float] = (0.0, 0.0)
        if trial.state == TrialState.RUNNING:
            group = _RUNNING
        elif (score := sum(v for v in trial.constraints.values() if v > 0)) > 0:
            group, key = _INFEASIBLE, (score, 0.0)
        elif trial.state == TrialState.COMPLETE:
            group = _COMPLETE
            if len(trial.values) == 1:
                key = (-trial.values[0] if maximize else trial.values[0], 0.0)
        else:
            group, key = _PRUNED, _pruned_key(trial, maximize)
        return _Row(trial, trial.number, group, key, internal)

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: Study
    ) -> dict[str, np.ndarray]:
        rows, _ = self._rows(study, trials, search_space)
        return _observations(rows, list(search_space))

    def _sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Optuna's, but the finished trials are counted from the storage's list: Optuna
        filters its cached list of all trials in Python (a property call per trial) just to
        count them against ``n_startup_trials``; a study view keeps that list per state set."""
        if search_space == {}:
            return {}
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        if len(study._get_trials(deepcopy=False, states=finished)) < self._n_startup_trials:
            return {}
        return self._sample(study, trial, search_space)

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        states: tuple[TrialState, ...] = (TrialState.COMPLETE, TrialState.PRUNED)
        if self._constant_liar:
            states += (TrialState.RUNNING,)
        if self._gamma is None:
            self._gamma = default_gamma
        names = list(search_space)
        storage = study._storage
        # With the constant liar, every trial but the one being sampled.
        if isinstance(storage, ViewStorage):
            slots, table = self._view_slots(study, storage, search_space, states, trial._trial_id)
        else:
            trials = study._get_trials(
                deepcopy=False, states=states, use_cache=not self._constant_liar
            )
            rows, table = self._rows(study, trials, search_space, skip=trial._trial_id)
            slots = _slots(rows)
        sides = _split_arrays(table, slots, self._gamma, names)
        if sides is None:  # a case the arrays do not reproduce exactly: walk the rows
            below, above = _split(table.rows_at(slots), self._gamma)
            sides = _observations(below, names), _observations(above, names)
        build, options = self._parzen_estimator_cls, self._parzen_estimator_parameters
        mpe_below = build(sides[0], search_space, options)
        mpe_above = build(sides[1], search_space, options)
        if not isinstance(mpe_below, _ParzenEstimator):
            raise RuntimeError("_parzen_estimator_cls must override _ParzenEstimator.")
        candidates = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        scores = self._compute_acquisition_func(candidates, mpe_below, mpe_above)
        best = TPESampler._compare(candidates, scores)
        return {name: d.to_external_repr(best[name]) for name, d in search_space.items()}


def _pruned_key(trial: FrozenTrial, maximize: bool) -> tuple[float, float]:
    """Pruned trials rank by the last step they reached (later first), then by its value."""
    if not trial.intermediate_values:
        return (1.0, 0.0)
    step, value = max(trial.intermediate_values.items())
    if math.isnan(value):
        return (-step, math.inf)
    return (-step, -value if maximize else value)


def _split(rows: list[_Row], gamma: Callable[[int], int]) -> tuple[list[_Row], list[_Row]]:
    """Optuna's single-objective split: the best complete trials, then the furthest pruned ones,
    then the least infeasible ones fill ``gamma(number of finished trials)``; both sides
    ordered by trial number.

    ``heapq.nsmallest`` is ``sorted(...)[:n]``, ties kept in input order, as Optuna's sort.
    The keys are slots read by ``operator.attrgetter`` (no Python call per row)."""
    groups: dict[int, list[_Row]] = {_COMPLETE: [], _PRUNED: [], _INFEASIBLE: [], _RUNNING: []}
    for row in rows:
        groups[row.group].append(row)
    n_below = gamma(len(rows) - len(groups[_RUNNING]))
    below: list[_Row] = []
    for group in (_COMPLETE, _PRUNED, _INFEASIBLE):
        take = max(0, min(n_below, len(groups[group])))
        if take:
            below += heapq.nsmallest(take, groups[group], key=_by_key)
        n_below -= take
    chosen = {id(r) for r in below}
    above = [r for r in rows if id(r) not in chosen]
    below.sort(key=_by_number)
    above.sort(key=_by_number)
    return below, above


def _slots(rows: list[_Row]) -> np.ndarray:
    return np.fromiter(map(_by_slot, rows), dtype=np.intp, count=len(rows))


def _split_arrays(
    table: _Table, slots: np.ndarray, gamma: Callable[[int], int], names: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """``_split`` then ``_observations`` of both sides of the rows at ``slots`` (in the rows'
    order), on the table's arrays: the same arrays in the same order. None where that is not
    guaranteed (a NaN sort key, or a parameter whose internal values mix Python types), for
    the caller to walk the rows instead."""
    if any(len(seen) > 1 or not seen <= {int, float} for seen in table.types):
        return None
    groups = table.group[slots]
    n_below = gamma(len(slots) - int(np.count_nonzero(groups == _RUNNING)))
    chosen = []
    for group in (_COMPLETE, _PRUNED, _INFEASIBLE):
        members = np.flatnonzero(groups == group)  # positions in the rows' order
        take = max(0, min(n_below, len(members)))
        if take:
            keys = table.key[slots[members]]
            if np.isnan(keys).any():
                return None
            # lexsort is stable, as sorted() and heapq.nsmallest: ties keep the rows' order.
            chosen.append(members[np.lexsort((keys[:, 1], keys[:, 0]))[:take]])
        n_below -= take
    below = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.intp)
    rest = np.ones(len(slots), dtype=bool)
    rest[below] = False
    above = np.flatnonzero(rest)
    return _columns(table, slots[below], names), _columns(table, slots[above], names)


def _columns(table: _Table, slots: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """The side's observations: its trials by number, those with every parameter present."""
    slots = slots[np.argsort(table.number[slots], kind="stable")]
    slots = slots[table.complete[slots]]
    if len(slots) == 0:
        return {name: np.asarray([]) for name in names}
    columns = {}
    for i, name in enumerate(names):
        column = table.internal[slots, i]
        columns[name] = column.astype(np.int64) if table.types[i] == {int} else column
    return columns


def _observations(rows: list[_Row], names: list[str]) -> dict[str, np.ndarray]:
    complete = [r.internal for r in rows if r.internal is not None]
    return {name: np.asarray([x[i] for x in complete]) for i, name in enumerate(names)}
