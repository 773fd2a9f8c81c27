"""Optuna's TPE with its per-trial work done once per trial instead of once per sample.

On every sample ``optuna.samplers.TPESampler`` walks the whole trial list in Python: each
trial's parameters are converted to their internal representation, its feasibility read from
its system attributes, its sort key computed, and the list split into the best ("below") and
the rest ("above") by sorting trial objects. At 1 000 trials that walk is about 1.7 of the
5.6 ms a sample takes on the development machine. A study view
(``service.sampling.view_storage``) never mutates a trial: a changed trial is a new
``FrozenTrial`` object. So :class:`ViewTPESampler` keeps one row per trial object (its
internal parameters, its group and sort key), reuses it while the object is the same, and
picks the below set with ``heapq.nsmallest`` instead of sorting every trial.

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


_by_key = operator.attrgetter("key")
_by_number = operator.attrgetter("number")


class ViewTPESampler(TPESampler):
    """``TPESampler`` with cached per-trial rows; same constructor, same samples."""

    _row_cache: dict[tuple[Space, bool, bool], dict[int, _Row]]

    def _rows(
        self,
        study: Study,
        trials: Sequence[FrozenTrial],
        space: dict[str, BaseDistribution],
        skip: int | None = None,
    ) -> list[_Row]:
        """One row per trial but the one whose id is ``skip``, computed only for trial objects
        not seen before."""
        try:
            caches = self._row_cache
        except AttributeError:
            caches = self._row_cache = {}
        maximize = study.directions[0] == StudyDirection.MAXIMIZE
        multivariate = self._is_multivariate(study)
        space_key = tuple(space.items())
        cache = caches.setdefault((space_key, maximize, multivariate), {})
        rows = []
        for trial in trials:
            if trial._trial_id == skip:
                continue
            row = cache.get(trial._trial_id)
            if row is None or row.trial is not trial:
                row = self._row(study, trial, space_key, maximize)
                cache[trial._trial_id] = row
            rows.append(row)
        if len(cache) > 2 * len(trials) + 64:  # trials dropped from the study (rare)
            live = {t._trial_id for t in trials}
            for trial_id in [k for k in cache if k not in live]:
                del cache[trial_id]
        return rows

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
        return _observations(self._rows(study, trials, search_space), list(search_space))

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
        states: tuple[TrialState, ...]
        if self._constant_liar:
            states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
            trials = study._get_trials(deepcopy=False, states=states, use_cache=False)
        else:
            states = (TrialState.COMPLETE, TrialState.PRUNED)
            trials = study._get_trials(deepcopy=False, states=states, use_cache=True)
        if self._gamma is None:
            self._gamma = default_gamma
        # With the constant liar, every trial but the one being sampled.
        rows = self._rows(study, trials, search_space, skip=trial._trial_id)
        below, above = _split(rows, self._gamma)
        names, build = list(search_space), self._parzen_estimator_cls
        options = self._parzen_estimator_parameters
        mpe_below = build(_observations(below, names), search_space, options)
        mpe_above = build(_observations(above, names), search_space, options)
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


def _observations(rows: list[_Row], names: list[str]) -> dict[str, np.ndarray]:
    complete = [r.internal for r in rows if r.internal is not None]
    return {name: np.asarray([x[i] for x in complete]) for i, name in enumerate(names)}
