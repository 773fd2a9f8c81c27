"""Asynchronous successive halving (ASHA) and asynchronous Hyperband on a study's view: which
trial continues or pauses at a rung, which paused trial is promoted, and which are left over.

The rungs are :class:`~service.spec.pruners.AshaSchedule`'s: a trial is decided on when it
reports the step of one of its bracket's rungs. A rung's population is every trial of the
bracket with a value at that step (running, paused, complete, pruned and queued again; failed
trials are left out). A trial is in the top of its rung when it is among the best
``floor(n / reduction_factor)`` of the ``n`` trials there (itself included; NaN is the worst
value; ties go to the lower number). A reporting trial in the top continues, any other pauses;
a paused trial in the top of its rung now (populations grow as other trials arrive) may be
promoted. That is Li et al.'s ASHA with the promotion of a trial that is already in the top
taken at its own report instead of at the next hand-out.

Pure functions of the view's trials (each caller holds the view lock and the study's ask lock,
so every process decides on the same population).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from service.spec.pruners import AshaSchedule


@dataclass(frozen=True)
class Promotion:
    """A paused trial to hand out again, resuming at ``resume_from_step``, granted up to
    ``grant`` units (its next rung, or max_resource)."""

    trial_id: int
    rung: int
    resume_from_step: int
    grant: int


@dataclass(frozen=True)
class _Entry:
    trial_id: int
    number: int
    value: float


class Rungs:
    """The populations of every rung of one study, read once from its trials."""

    def __init__(
        self,
        schedule: AshaSchedule,
        trials: Iterable[tuple[int, FrozenTrial]],
        *,
        maximize: bool,
    ) -> None:
        self._schedule = schedule
        self._maximize = maximize
        self._population: dict[tuple[int, int], list[_Entry]] = defaultdict(list)
        steps = {b: schedule.rung_steps(b) for b in range(schedule.brackets)}
        for trial_id, trial in trials:
            if trial.state == TrialState.FAIL:
                continue
            bracket = schedule.bracket(trial.number)
            for step in steps[bracket]:
                if step in trial.intermediate_values:
                    entry = _Entry(trial_id, trial.number, float(trial.intermediate_values[step]))
                    self._population[bracket, step].append(entry)
        for population in self._population.values():
            population.sort(key=self._rank)

    def in_top(self, trial_id: int, number: int, step: int) -> bool:
        """Whether the trial is among the best ``floor(n / reduction_factor)`` at ``step``."""
        population = self._population.get((self._schedule.bracket(number), step), [])
        top = len(population) // self._schedule.reduction_factor
        return any(entry.trial_id == trial_id for entry in population[:top])

    def rank_key(self, trial_id: int, number: int, step: int) -> tuple[float, int]:
        """The trial's sort key at ``step`` (best first)."""
        population = self._population.get((self._schedule.bracket(number), step), [])
        return next(self._rank(e) for e in population if e.trial_id == trial_id)

    def _rank(self, entry: _Entry) -> tuple[float, int]:
        value = entry.value
        if math.isnan(value):
            return math.inf, entry.number
        return (-value if self._maximize else value), entry.number


def should_pause(
    schedule: AshaSchedule,
    trials: Iterable[tuple[int, FrozenTrial]],
    trial_id: int,
    number: int,
    step: int,
    *,
    maximize: bool,
) -> bool:
    """The decision on the report of ``step`` (already in ``trials``): pause unless the step is
    no rung of the trial's bracket or the trial is in the top of that rung."""
    if schedule.rung_of(number, step) is None:
        return False
    return not Rungs(schedule, trials, maximize=maximize).in_top(trial_id, number, step)


def promotions(
    schedule: AshaSchedule,
    trials: Mapping[int, FrozenTrial],
    paused: Mapping[int, int],
    *,
    maximize: bool,
) -> list[Promotion]:
    """The paused trials (id -> paused step) that are in the top of their rung now, in the order
    they are promoted: highest rung first, then best value, then lowest number."""
    if not paused:
        return []
    rungs = Rungs(schedule, trials.items(), maximize=maximize)
    found: list[tuple[tuple[int, float, int], Promotion]] = []
    for trial_id, step in paused.items():
        number = trials[trial_id].number
        rung = schedule.rung_of(number, step)
        if rung is None or not rungs.in_top(trial_id, number, step):
            continue
        value, _ = rungs.rank_key(trial_id, number, step)
        grant = schedule.next_stop(number, step + 1)
        found.append(((-rung, value, number), Promotion(trial_id, rung, step + 1, grant)))
    found.sort(key=lambda pair: pair[0])
    return [promotion for _, promotion in found]
