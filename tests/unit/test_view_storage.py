"""``ViewStorage``'s trials by state and by id, against the plain definitions.

The per-state lists are kept up to date in place (a bisection by number per change) instead of
being rebuilt after every write; whatever happens to the view, each must equal the filter of
all trials by state, in number order, and every trial number must lead to its trial's id.
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
    return FrozenTrial(
        number=number,
        state=state,
        value=1.0 if state == TrialState.COMPLETE else None,
        datetime_start=None,
        datetime_complete=None,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=trial_id,
    )


def _id(trial: FrozenTrial) -> int:
    return trial.number + 1  # how these tests number their trials


def test_trials_by_state_stay_the_filter_of_all_trials() -> None:
    storage = ViewStorage(1, "s", [StudyDirection.MINIMIZE])
    rng = random.Random(0)
    states = list(TrialState)
    numbers = list(range(300))
    rng.shuffle(numbers)  # trials arrive out of number order, as refreshes may bring them
    for states_set in STATE_SETS:  # the lists exist before the changes: kept up to date
        storage.get_all_trials(1, deepcopy=False, states=states_set)
    for step, number in enumerate(numbers):
        storage.put_trial(number + 1, _trial(number + 1, number, rng.choice(states)))
        present = storage.trials()
        if step % 3 == 0:  # a trial read back in another state: a new object
            old = rng.choice(present)
            fresh = copy.copy(old)
            fresh.state = rng.choice(states)
            storage.put_trial(_id(old), fresh)
        if step % 7 == 0:
            storage.drop_trial(_id(rng.choice(present)))
        if step % 11 == 0:  # a provisional trial sampled, then dropped
            provisional = storage.create_new_trial(1)
            storage.set_trial_param(provisional, "x", 0.25, FloatDistribution(0, 1))
            storage.drop_trial(provisional)
        for states_set in STATE_SETS:
            kept = storage.get_all_trials(1, deepcopy=False, states=states_set)
            assert kept == [t for t in storage.trials() if t.state in states_set]
    assert [t.number for t in storage.trials()] == sorted(t.number for t in storage.trials())
    for trial in storage.trials():
        assert storage.get_trial_id_from_study_id_trial_number(1, trial.number) == _id(trial)
        assert storage.get_trial(_id(trial)) is trial


def test_a_template_trial_is_copied_under_a_new_id_and_number() -> None:
    storage = ViewStorage(1, "s", [StudyDirection.MINIMIZE])
    template = _trial(7, 0, TrialState.WAITING)
    storage.put_trial(7, template)
    copied = storage.create_new_trial(1, template_trial=template)
    trial = storage.get_trial(copied)
    assert copied < 0 and trial.number == 1
    assert (trial.state, trial.params) == (TrialState.WAITING, template.params)
    assert storage.get_trial_id_from_study_id_trial_number(1, 1) == copied
    storage.set_trial_system_attr(copied, "k", 1)  # writes go to the copy alone
    assert storage.get_trial(7).system_attrs == {}
    assert storage.drain_journal().trial_system_attrs == {copied: {"k": 1}}


def test_optuna_lists_the_one_study_of_a_view() -> None:
    """``get_all_studies`` builds the ``FrozenStudy`` objects ``BaseStorage`` returns (a class
    imported from a private module: this fails if Optuna moves or changes it)."""
    storage = ViewStorage(1, "s", [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE])
    storage.set_study_user_attr(1, "team", "a")
    assert optuna.get_all_study_names(storage) == ["s"]
    (summary,) = optuna.get_all_study_summaries(storage, include_best_trial=False)
    assert summary.directions == [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    assert summary.user_attrs == {"team": "a"}
