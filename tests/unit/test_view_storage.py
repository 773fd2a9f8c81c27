"""``ViewStorage``'s trials by state and its change log, against the plain definitions.

The per-state lists are kept up to date in place (a bisection by number per change) instead of
being rebuilt after every write; whatever happens to the view, each must equal the filter of
all trials by state, in number order. The change log must name every trial put or dropped
since a cursor, or say that it no longer reaches back that far.
"""

from __future__ import annotations

import copy
import random

import optuna
from optuna.distributions import FloatDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from service.sampling.view_storage import ViewStorage

STATE_SETS = [
    (TrialState.COMPLETE, TrialState.PRUNED),
    (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
    (TrialState.WAITING,),
    (TrialState.FAIL,),
]


def _trial(trial_id: int, number: int, state: TrialState) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        value=1.0 if state == TrialState.COMPLETE else None,
        state=state,
    )
    trial._trial_id, trial.number = trial_id, number
    return trial


def test_trials_by_state_stay_the_filter_of_all_trials() -> None:
    storage = ViewStorage(1, "s", [StudyDirection.MINIMIZE])
    rng = random.Random(0)
    states = list(TrialState)
    numbers = list(range(300))
    rng.shuffle(numbers)  # trials arrive out of number order, as refreshes may bring them
    for states_set in STATE_SETS:  # the lists exist before the changes: kept up to date
        storage.get_all_trials(1, deepcopy=False, states=states_set)
    for step, number in enumerate(numbers):
        storage.put_trial(_trial(number + 1, number, rng.choice(states)))
        present = storage.trials()
        if step % 3 == 0:  # a trial read back in another state: a new object
            old = rng.choice(present)
            fresh = copy.copy(old)
            fresh.state = rng.choice(states)
            storage.put_trial(fresh)
        if step % 7 == 0:
            storage.drop_trial(rng.choice(present)._trial_id)
        if step % 11 == 0:  # a provisional trial sampled, then dropped
            provisional = storage.create_new_trial(1)
            storage.set_trial_param(provisional, "x", 0.25, FloatDistribution(0, 1))
            storage.drop_trial(provisional)
        for states_set in STATE_SETS:
            kept = storage.get_all_trials(1, deepcopy=False, states=states_set)
            assert kept == [t for t in storage.trials() if t.state in states_set]
    assert [t.number for t in storage.trials()] == sorted(t.number for t in storage.trials())


def test_the_change_log_names_what_changed_since_a_cursor() -> None:
    storage = ViewStorage(1, "s", [StudyDirection.MINIMIZE])
    storage.put_trial(_trial(1, 0, TrialState.RUNNING))
    cursor = storage.change_cursor
    assert storage.changed_since(cursor) == []
    storage.put_trial(_trial(2, 1, TrialState.RUNNING))
    storage.set_trial_state_values(1, TrialState.COMPLETE, [0.5])
    storage.drop_trial(2)
    assert storage.changed_since(cursor) == [2, 1, 2]
    assert storage.changed_since(storage.change_cursor) == []
    # Many changes later the log has been compacted: an old cursor no longer reaches back.
    for _ in range(5000):
        storage.set_trial_intermediate_value(1, 0, 0.1)
    assert storage.changed_since(cursor) is None
    recent = storage.change_cursor
    storage.drop_trial(1)
    assert storage.changed_since(recent) == [1]
