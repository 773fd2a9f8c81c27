"""Population-based training (the ``pbt`` scheduler) on a study's view: who is replaced, by a
child of whom, with which parameters.

**Exploit.** The decision is taken on a trial's report of step ``s`` when ``s + 1`` is a
multiple of ``interval``. The population at ``s`` is every trial that did not fail and was not
replaced already (a replaced trial's lineage goes on in its child) with a value at ``s``, or,
for a trial a little behind, its latest value less than ``interval`` steps before ``s`` (as
asynchronous PBT ranks each member by its latest score; one behind usually looks worse, so this
errs towards letting the reporting trial go on). With ``n`` of them and ``k = floor(n *
quantile)`` (no decision while ``k`` is 0), the bottom is the worst ``k`` and the top the best
``k`` (NaN is the worst value; ties go to the lower number). A reporting trial in the bottom
is stopped (the report answers ``should_prune``) and replaced by a child of a trial of the top
that is still training and has a checkpoint; with none, it goes on.

**Explore.** The child copies its parent's parameters; each ``mutable`` one is drawn afresh
from its range with ``resample_probability``, else multiplied by a factor drawn from
``perturb`` and clipped to its range (int: rounded; a step: put back on its grid; categorical:
moved to a neighbouring choice).

Choices are drawn from a generator seeded by the options' ``seed``, the study, the replaced
trial's number and the step, so a report repeated in any process decides the same. Pure
functions of the view's trials (the caller holds the view lock and the study's ask lock).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from service.spec.schedulers import PbtOptions


@dataclass(frozen=True)
class Exploit:
    """A trial of the bottom at ``step``: stop it and replace it by a child of one of
    ``parents`` (the top, best first). ``again``: it was replaced already (a repeated
    report), only the stop is said again."""

    trial_id: int
    step: int
    parents: list[int]
    again: bool = False


def decides_at(options: PbtOptions, step: int) -> bool:
    """Whether a report of ``step`` is a PBT decision point."""
    return (step + 1) % options.interval == 0


def bottom_and_top(
    options: PbtOptions,
    trials: Iterable[tuple[int, FrozenTrial]],
    replaced: frozenset[int] | set[int],
    trial_id: int,
    step: int,
    *,
    maximize: bool,
) -> list[int] | None:
    """The top of the population at ``step`` (trial ids, best first) when ``trial_id`` is in
    its bottom, else None (the trial goes on)."""
    population: list[tuple[float, int, int]] = []
    for tid, trial in trials:
        if trial.state == TrialState.FAIL or tid in replaced:
            continue
        value = _value_at(trial.intermediate_values, step, options.interval)
        if value is None:
            continue
        key = math.inf if math.isnan(value) else (-value if maximize else value)
        population.append((key, trial.number, tid))
    population.sort()
    k = math.floor(len(population) * options.quantile)
    if k == 0 or trial_id not in {tid for _, _, tid in population[-k:]}:
        return None
    return [tid for _, _, tid in population[:k]]


def _value_at(values: Mapping[int, float], step: int, interval: int) -> float | None:
    """The trial's value at ``step``, else its latest before it if that is less than
    ``interval`` steps back (a trial further behind, or with none, is left out)."""
    if step in values:
        return values[step]
    earlier = [s for s in values if step - interval < s < step]
    return values[max(earlier)] if earlier else None


def chooser(options: PbtOptions, study_id: int, number: int, step: int) -> random.Random:
    """The generator of one decision (the same in every process)."""
    return random.Random(f"pbt:{options.seed}:{study_id}:{number}:{step}")


def choose_parent(rng: random.Random, candidates: Sequence[int]) -> int:
    """One of the top's trials that have a checkpoint (``candidates``, not empty)."""
    return candidates[rng.randrange(len(candidates))]


def explore(
    options: PbtOptions,
    parent_params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    rng: random.Random,
) -> dict[str, Any]:
    """The child's parameters: the parent's, its mutable ones moved (see the module docstring).
    A mutable parameter the parent does not hold (inactive in a conditional space) stays out."""
    params = dict(parent_params)
    for name in options.mutable:
        distribution = distributions.get(name)
        if name not in params or distribution is None:
            continue
        resample = rng.random() < options.resample_probability
        params[name] = _move(options, distribution, params[name], resample, rng)
    return params


def _move(
    options: PbtOptions,
    distribution: BaseDistribution,
    value: Any,
    resample: bool,
    rng: random.Random,
) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        choices = distribution.choices
        if resample:
            return choices[rng.randrange(len(choices))]
        index = choices.index(value) + rng.choice((-1, 1))
        return choices[min(max(index, 0), len(choices) - 1)]
    if not isinstance(distribution, FloatDistribution | IntDistribution):
        return value
    low, high = float(distribution.low), float(distribution.high)
    if resample:
        if distribution.log:
            moved = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            moved = rng.uniform(low, high)
    else:
        moved = float(value) * rng.choice(options.perturb)
    moved = min(max(moved, low), high)
    step = distribution.step
    if step is not None:
        moved = min(low + round((moved - low) / step) * step, high)
    if isinstance(distribution, IntDistribution):
        return round(moved)
    return moved
