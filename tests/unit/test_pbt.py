"""The rules of population-based training (``service.sampling.pbt``) against hand-computed
populations and moves."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from service.sampling import pbt
from service.spec.schedulers import PbtOptions


def _trial(
    number: int, values: dict[int, float], state: TrialState = TrialState.RUNNING
) -> tuple[int, FrozenTrial]:
    trial = FrozenTrial(
        number=number,
        state=state,
        value=None,
        datetime_start=None,
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values=values,
        trial_id=100 + number,
    )
    return 100 + number, trial


def _options(**changes: Any) -> PbtOptions:
    return PbtOptions(**{"mutable": ["lr"], "interval": 2, "quantile": 0.25, **changes})


def _running(number: int, values: dict[int, float]) -> tuple[int, FrozenTrial]:
    return _trial(number, values)


def test_decisions_come_every_interval_steps() -> None:
    options = _options(interval=3)
    assert [s for s in range(10) if pbt.decides_at(options, s)] == [2, 5, 8]


def test_the_bottom_quantile_is_replaced_by_the_top_one() -> None:
    trials = [_running(n, {1: v}) for n, v in enumerate([0.4, 0.1, 0.3, 0.2, 0.9, 0.5, 0.6, 0.8])]
    options = _options()  # 8 trials: k = 2
    top = [101, 103]  # 0.1 and 0.2
    assert pbt.bottom_and_top(options, trials, set(), 104, 1, maximize=False) == top
    assert pbt.bottom_and_top(options, trials, set(), 107, 1, maximize=False) == top
    assert pbt.bottom_and_top(options, trials, set(), 106, 1, maximize=False) is None
    # Maximizing turns the ranking round.
    assert pbt.bottom_and_top(options, trials, set(), 101, 1, maximize=True) == [104, 107]


def test_nan_is_worst_and_failed_or_replaced_trials_are_left_out() -> None:
    trials = [
        _running(0, {1: 0.1}),
        _running(1, {1: math.nan}),
        _running(2, {1: 0.3}),
        _running(3, {1: 0.2}),
    ]
    options = _options()  # 4 trials: k = 1
    assert pbt.bottom_and_top(options, trials, set(), 101, 1, maximize=False) == [100]
    # Without trial 1 (replaced), the 3 others give k = 0: no decision.
    assert pbt.bottom_and_top(options, trials, {101}, 102, 1, maximize=False) is None
    failed = [*trials[:3], _trial(3, {1: 0.2}, TrialState.FAIL)]
    assert pbt.bottom_and_top(options, failed, set(), 101, 1, maximize=False) is None


def test_a_trial_a_little_behind_counts_with_its_latest_value() -> None:
    options = _options(interval=4)
    trials = [
        _running(0, {5: 0.1}),  # at step 5 itself
        _running(1, {1: 0.2, 3: 0.3}),  # latest 3: less than 4 steps behind 5
        _running(2, {0: 0.05, 1: 0.05}),  # latest 1: 4 behind: left out
        _running(3, {4: 0.9, 5: 0.8}),
        _running(4, {5: 0.15}),
    ]
    # Ranked at 5: 0.1 (#0), 0.15 (#4), 0.3 (#1), 0.8 (#3): k = 1.
    assert pbt.bottom_and_top(options, trials, set(), 103, 5, maximize=False) == [100]


def test_ties_go_to_the_lower_number() -> None:
    trials = [_running(n, {1: 0.5}) for n in range(4)]
    assert pbt.bottom_and_top(_options(), trials, set(), 103, 1, maximize=False) == [100]
    assert pbt.bottom_and_top(_options(), trials, set(), 100, 1, maximize=False) is None


def test_explore_moves_only_mutable_parameters_within_their_ranges() -> None:
    distributions = {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "width": IntDistribution(8, 64, step=8),
        "act": CategoricalDistribution(["relu", "tanh", "gelu"]),
        "dropout": FloatDistribution(0.0, 0.5),
    }
    parent = {"lr": 0.08, "width": 64, "act": "relu", "dropout": 0.2}
    options = _options(mutable=["lr", "width", "act"], perturb=[0.8, 1.2], resample_probability=0)
    for seed in range(50):
        child = pbt.explore(options, parent, distributions, random.Random(seed))
        assert child["dropout"] == 0.2
        assert child["lr"] in (pytest.approx(0.064), pytest.approx(0.096))
        assert child["width"] in (48, 56, 64)  # 51.2 -> 48 on the grid of 8; 76.8 -> 64 (high)
        assert child["act"] in ("relu", "tanh")  # a neighbour of relu, clipped at the end
        assert 1e-4 <= child["lr"] <= 1e-1 and child["width"] % 8 == 0


def test_resampling_draws_from_the_whole_range() -> None:
    distributions = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    options = _options(resample_probability=1.0)
    drawn = [
        pbt.explore(options, {"lr": 0.01}, distributions, random.Random(s))["lr"]
        for s in range(200)
    ]
    assert all(1e-4 <= v <= 1e-1 for v in drawn)
    assert min(drawn) < 1e-3 and max(drawn) > 1e-2  # log-uniform: both decades reached


def test_the_choices_of_one_decision_are_the_same_in_every_process() -> None:
    options = _options(seed=5)
    first = pbt.chooser(options, 3, 7, 11)
    again = pbt.chooser(options, 3, 7, 11)
    assert [first.random() for _ in range(5)] == [again.random() for _ in range(5)]
    other = pbt.chooser(options, 3, 8, 11)
    assert other.random() != pbt.chooser(options, 3, 7, 11).random()
