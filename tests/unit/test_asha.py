"""The asha rules as pure functions: rungs, brackets, decisions and promotion order."""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from service.sampling.asha import promotions, should_pause
from service.sampling.repository import ChangedTrial, StudyState
from service.sampling.view import Handout, NoHandout, StudyDefinition, StudyView
from service.spec import PrunerSpec, SamplerSpec, parse_search_space
from service.spec.pruners import AshaSchedule
from tests.view_rows import change_row


def _trial(number: int, curve: dict[int, float], state: TrialState) -> tuple[int, FrozenTrial]:
    value = 0.0 if state == TrialState.COMPLETE else None
    trial = create_trial(state=state, value=value, intermediate_values=curve)
    trial.number = number
    return 100 + number, trial


def test_rungs_and_brackets() -> None:
    schedule = AshaSchedule(min_resource=1, reduction_factor=3, max_resource=27, brackets=2)
    assert schedule.rung_steps(0) == [0, 2, 8]  # 1, 3 and 9 units; 27 is the end
    assert schedule.rung_steps(1) == [2, 8]  # bracket 1 starts at 3 units
    assert [schedule.bracket(n) for n in range(4)] == [0, 1, 0, 1]
    assert schedule.rung_of(0, 8) == 2 and schedule.rung_of(1, 8) == 1
    assert schedule.rung_of(0, 1) is None and schedule.rung_of(1, 0) is None


def test_promotion_order_is_highest_rung_then_best_value_then_number() -> None:
    schedule = AshaSchedule(min_resource=1, reduction_factor=2, max_resource=8, brackets=1)
    # Rungs at steps 0, 1, 3 (1, 2, 4 units). Rung 0: 8 trials, top 4 = 0, 1, 2, 3 (ties by
    # number between 2 and 3). Rung 1 (step 1): trials 0, 4 (and 1) -> top 1 = trial 0.
    rows = dict(
        [
            _trial(0, {0: 0.1, 1: 0.1}, TrialState.PRUNED),  # paused at step 1
            _trial(1, {0: 0.2, 1: 0.9}, TrialState.RUNNING),
            _trial(2, {0: 0.3}, TrialState.PRUNED),  # paused at step 0
            _trial(3, {0: 0.3}, TrialState.PRUNED),  # paused at step 0
            _trial(4, {0: 0.5, 1: 0.2}, TrialState.PRUNED),
            _trial(5, {0: 0.6}, TrialState.PRUNED),
            _trial(6, {0: math.nan}, TrialState.PRUNED),  # NaN is the worst
            _trial(7, {0: 0.7}, TrialState.FAIL),  # failed trials are no population
            _trial(8, {0: 0.8}, TrialState.PRUNED),
        ]
    )
    paused = {100: 1, 102: 0, 103: 0, 104: 1, 105: 0, 106: 0, 108: 0}
    found = promotions(schedule, rows, paused, maximize=False)
    assert [(p.trial_id - 100, p.rung, p.resume_from_step) for p in found] == [
        (0, 1, 2),
        (2, 0, 1),
        (3, 0, 1),
    ]
    # Maximised: rung 1's top is trial 1 (running); rung 0's top 4 = 8, 5, 4 and 2 (the tie
    # with 3 goes to the lower number), of which 4 is paused at rung 1.
    found = promotions(schedule, rows, paused, maximize=True)
    assert [p.trial_id - 100 for p in found] == [8, 5, 2]


def test_decision_counts_the_reporting_trial() -> None:
    schedule = AshaSchedule(min_resource=1, reduction_factor=3, max_resource=9)
    rows = [_trial(n, {0: v}, TrialState.RUNNING) for n, v in enumerate([0.3, 0.2, 0.1])]
    assert should_pause(schedule, rows[:1], 100, 0, 0, maximize=False)  # n=1: top 0
    assert not should_pause(schedule, rows, 102, 2, 0, maximize=False)  # n=3: the best
    assert should_pause(schedule, rows, 101, 1, 0, maximize=False)
    assert not should_pause(schedule, rows, 100, 0, 0, maximize=True)
    assert not should_pause(schedule, rows, 100, 0, 1, maximize=False)  # no rung at step 1


def _view(sampler: str) -> StudyView:
    definition = StudyDefinition(
        study_id=1,
        name="asha-view",
        directions=["minimize"],
        search_space=parse_search_space({"x": {"type": "float", "low": 0.0, "high": 1.0}}),
        sampler=SamplerSpec(name=sampler, options={"seed": 1}),
        pruner=PrunerSpec(
            name="asha", options={"min_resource": 1, "reduction_factor": 3, "max_resource": 9}
        ),
        task=None,
    )
    return StudyView(definition)


def _row(trial_id: int, number: int, x: float, loss: float, **extra: Any) -> ChangedTrial:
    trial = create_trial(
        state=TrialState.WAITING,
        params={"x": x},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        intermediate_values={0: loss},
    )
    trial.number = number
    row = change_row(trial_id, trial, **extra)
    row["paused_step"] = 0
    return row


def test_the_sampler_sees_paused_trials_as_pruned_and_promotion_comes_first() -> None:
    view = _view("tpe")
    rows = [_row(10 + n, n, x, x) for n, x in enumerate([0.2, 0.5, 0.8, 0.9])]
    rows[3]["leased"] = True  # told to pause, still holding its lease: running
    rows[3]["state"] = "RUNNING"
    view.apply_changes(rows, horizon=1)
    states = {t.number: t.state for t in view.storage.trials()}
    assert states == {0: TrialState.PRUNED, 1: TrialState.PRUNED, 2: TrialState.PRUNED,
                      3: TrialState.RUNNING}  # fmt: skip
    assert view.paused() == {10: 0, 11: 0, 12: 0}
    state = StudyState("running", 4, None, 4, 60, 1, {})
    handout = view.next_handout(state)  # n=4 at rung 0: top 1 = trial 0, paused
    assert handout == Handout("promoted", 10, False, 1, granted=3)  # up to rung 1 (3 units)
    assert view.leftover_paused(state) == []  # trial 3 holds a lease
    view.apply_changes([{**rows[3], "leased": False, "state": "WAITING"}], horizon=2)
    assert view.leftover_paused(state) == []  # trial 0 can still be promoted
    assert view.sample().params["x"] is not None  # TPE learns from pruned trials


def test_leftover_paused_trials_when_nothing_more_can_happen() -> None:
    view = _view("random")
    view.apply_changes([_row(10, 0, 0.2, 0.2), _row(11, 1, 0.5, 0.5)], horizon=1)
    assert view.next_handout(StudyState("running", 3, None, 2, 60, 1, {})) == Handout(
        "new", granted=1
    )
    spent = StudyState("running", 2, None, 2, 60, 1, {})
    assert view.next_handout(spent) == NoHandout("budget_spent")  # n=2: top 0
    assert view.leftover_paused(spent) == [10, 11]
    assert view.leftover_paused(StudyState("stopped", 2, None, 2, 60, 1, {})) == []
    assert view.leftover_paused(StudyState("running", None, None, 2, 60, 1, {})) == []
