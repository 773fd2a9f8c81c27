"""``ViewTPESampler`` caches per-trial work; it must sample exactly what Optuna's TPE samples.

Each case runs the same history and the same ask/tell sequence twice on Optuna's in-memory
storage, once with ``optuna.samplers.TPESampler`` and once with the service's sampler built
from the same options, and requires every suggested parameter to be identical. The histories
mix complete, pruned (with and without intermediate values, one NaN), infeasible (constraint
attributes), running and partial (a parameter missing) trials, so every group of TPE's split
and the constant-liar path are exercised.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

import optuna
import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import TrialState

from service.sampling.tpe import ViewTPESampler
from service.sampling.view_storage import ViewStorage
from service.spec import SamplerSpec, build_sampler, parse_search_space

optuna.logging.set_verbosity(optuna.logging.ERROR)

SPACE = {
    "lr": FloatDistribution(1e-5, 0.1, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.05),
    "layers": IntDistribution(1, 6),
    "width": IntDistribution(16, 1024, log=True),
    "batch": CategoricalDistribution([16, 32, 64, 128]),
    "act": CategoricalDistribution(["relu", "gelu", "tanh"]),
}


def _loss(params: dict[str, Any]) -> float:
    return (
        (math.log10(params["lr"]) + 3) ** 2
        + params["dropout"]
        + 0.1 * params["layers"]
        + abs(math.log2(params["width"]) - 7)
        + params["batch"] / 256
        + (0.0 if params["act"] == "gelu" else 0.3)
    )


def _history(n_objectives: int, seed: int = 1) -> list[optuna.trial.FrozenTrial]:
    rng = random.Random(seed)
    trials = []
    for i in range(120):
        params = {
            "lr": 10 ** rng.uniform(-5, -1),
            "dropout": rng.randrange(11) * 0.05,
            "layers": rng.randint(1, 6),
            "width": rng.choice([16, 40, 128, 333, 1024]),
            "batch": rng.choice([16, 32, 64, 128]),
            "act": rng.choice(["relu", "gelu", "tanh"]),
        }
        dists = dict(SPACE)
        if i % 17 == 5:  # a conditional trial without one parameter
            del params["act"], dists["act"]
        loss = _loss({"act": "relu", **params})
        values = [loss, -loss * rng.random()][:n_objectives]
        kind = i % 10
        if kind == 3 and n_objectives == 1:  # pruned, with a curve (one ends in NaN)
            curve = {s: loss * (2 - s / 10) for s in range(rng.randint(1, 6))}
            if i % 20 == 3:
                curve[max(curve) + 1] = float("nan")
            trial = optuna.trial.create_trial(
                params=params,
                distributions=dists,
                state=TrialState.PRUNED,
                intermediate_values=curve,
            )
        elif kind in (3, 7):  # pruned before any report (Optuna's TPE cannot rank the
            # curves of pruned trials in a multi-objective study)
            trial = optuna.trial.create_trial(
                params=params, distributions=dists, state=TrialState.PRUNED
            )
        else:
            attrs = {"constraints": [rng.uniform(-1, 1)]} if kind == 8 else {}
            trial = optuna.trial.create_trial(
                params=params, distributions=dists, values=values, system_attrs=attrs
            )
        trials.append(trial)
    trials[10] = optuna.trial.create_trial(  # a tie on the best value
        params=trials[11].params,
        distributions=trials[11].distributions,
        values=trials[11].values if trials[11].values else [0.5] * n_objectives,
    )
    return trials


def _run(
    sampler: optuna.samplers.BaseSampler, directions: list[str], *, view: bool = False
) -> list[dict[str, Any]]:
    """The run on Optuna's in-memory storage, or on a study view's storage (``view``: the one
    the service samples on, which ``ViewTPESampler`` follows through its change log)."""
    if view:
        storage = ViewStorage(1, "view", [StudyDirection[d.upper()] for d in directions])
        study = optuna.Study(study_name="view", storage=storage, sampler=sampler)
    else:
        study = optuna.create_study(sampler=sampler, directions=directions)
    study.add_trials(_history(len(directions)))
    asked: list[dict[str, Any]] = []
    running = []
    for i in range(40):
        trial = study.ask(SPACE)
        asked.append(dict(trial.params))
        loss = _loss(trial.params)
        if i % 6 == 2:
            running.append(trial)  # left running: constant liar sees it
        elif i % 6 == 4:
            if len(directions) == 1:  # Optuna takes reports from single-objective studies only
                trial.report(loss * 1.5, 0)
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, [loss, -loss / 2][: len(directions)])
        if len(running) > 3:
            study.tell(running.pop(0), [1.0, -1.0][: len(directions)])
    return asked


CASES = [
    ({}, ["minimize"]),
    ({}, ["maximize"]),
    ({"constant_liar": False}, ["minimize"]),
    ({"multivariate": False}, ["minimize"]),
    ({"multivariate": True, "group": True}, ["maximize"]),
    ({"n_startup_trials": 0, "n_ei_candidates": 7, "prior_weight": 2.0}, ["minimize"]),
    # 120 finished trials in the history: random samples until the run finishes 15 more
    ({"n_startup_trials": 135}, ["minimize"]),
    ({"consider_endpoints": True, "consider_magic_clip": False}, ["minimize"]),
    ({}, ["minimize", "maximize"]),
]


@pytest.mark.parametrize(("options", "directions"), CASES)
def test_samples_match_optunas_tpe(options: dict[str, Any], directions: list[str]) -> None:
    stock = optuna.samplers.TPESampler(seed=3, **options)
    space = parse_search_space(  # SPACE as a study would declare it
        {
            "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
            "layers": {"type": "int", "low": 1, "high": 6},
            "width": {"type": "int", "low": 16, "high": 1024, "log": True},
            "batch": {"type": "categorical", "choices": [16, 32, 64, 128]},
            "act": {"type": "categorical", "choices": ["relu", "gelu", "tanh"]},
        }
    )
    spec = SamplerSpec(name="tpe", options={"seed": 3, **options})
    ours = build_sampler(spec, space, directions)
    assert isinstance(ours, ViewTPESampler)
    expected = _run(stock, directions)
    got = _run(ours, directions)
    assert got == expected
    on_a_view = build_sampler(spec, space, directions)
    assert _run(on_a_view, directions, view=True) == expected
    # The history has several trials in every group, so each case exercised the split.
    assert len({tuple(sorted(p.items())) for p in got}) > 30


def test_rows_are_reused_until_a_trial_changes() -> None:
    sampler = ViewTPESampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    study.add_trials(_history(1))
    study.tell(study.ask(SPACE), 1.0)
    # One cache per searched space (the trials without "act" make it sampled on its own).
    caches = [table.rows for table in sampler._tables.values()]
    before = [dict(cache) for cache in caches]
    trial = study.ask(SPACE)
    for cache, old in zip(caches, before, strict=True):
        assert len(old) > 100
        # nothing recomputed for trials that did not change
        assert all(cache[k] is row for k, row in old.items())
    study.tell(trial, 2.0)
    study.ask(SPACE)
    for cache in caches:  # the finished trial is a new object: its row was recomputed
        assert cache[trial._trial_id].trial.state == TrialState.COMPLETE


def _tables_after_a_run(options: dict[str, Any]) -> tuple[ViewTPESampler, optuna.Study]:
    sampler = ViewTPESampler(seed=0, **options)
    study = optuna.create_study(sampler=sampler)
    study.add_trials(_history(1))
    for _ in range(3):
        trial = study.ask(SPACE)
        study.tell(trial, _loss(trial.params))
    study.ask(SPACE)  # left running
    return sampler, study


@pytest.mark.parametrize("constant_liar", [False, True])
def test_array_split_equals_the_walk_over_the_rows(constant_liar: bool) -> None:
    """The split and observations taken from the table's arrays are the walk's, array for
    array: same values, same order, same dtype (ints for a categorical's indices)."""
    from service.sampling import tpe

    sampler, study = _tables_after_a_run({"constant_liar": constant_liar})
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    trials = study._get_trials(deepcopy=False, states=states)
    checked = 0
    for space_key, *_ in list(sampler._tables):
        space = dict(space_key)
        names = list(space)
        rows, table = sampler._rows(study, trials, space)
        sides = tpe._split_arrays(table, tpe._slots(rows), tpe.default_gamma, names)
        assert sides is not None
        below, above = tpe._split(rows, tpe.default_gamma)
        for got, rows_of_side in zip(sides, (below, above), strict=True):
            expected = tpe._observations(rows_of_side, names)
            assert list(got) == names
            for name in names:
                assert got[name].dtype == expected[name].dtype
                assert got[name].tolist() == expected[name].tolist()
        checked += 1
    assert checked >= 2  # the whole space, and the space without the conditional "act"


def test_array_split_defers_to_the_walk_on_a_nan_key() -> None:
    from service.sampling import tpe

    sampler, study = _tables_after_a_run({})
    trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    rows, table = sampler._rows(study, trials, dict(SPACE))
    assert tpe._split_arrays(table, tpe._slots(rows), tpe.default_gamma, list(SPACE)) is not None
    best = min((r for r in rows if r.group == tpe._COMPLETE), key=lambda r: r.key)
    table.key[best.slot, 0] = math.nan
    assert tpe._split_arrays(table, tpe._slots(rows), tpe.default_gamma, list(SPACE)) is None


def test_a_study_that_lost_most_trials_gets_a_fresh_table() -> None:
    """Rows of trials no longer in the study are not kept for ever: when the table holds far
    more trials than the study, it is rebuilt from the trials there are, and its arrays give
    the same split as the walk."""
    from service.sampling import tpe

    sampler, study = _tables_after_a_run({})
    trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    space = dict(SPACE)
    _, table = sampler._rows(study, trials, space)
    kept = trials[:20]
    rows, rebuilt = sampler._rows(study, kept, space)
    assert rebuilt is not table
    assert set(rebuilt.rows) == {t._trial_id for t in kept}
    assert [r.trial for r in rows] == kept
    sides = tpe._split_arrays(rebuilt, tpe._slots(rows), tpe.default_gamma, list(space))
    assert sides is not None
    below, above = tpe._split(rows, tpe.default_gamma)
    for got, side in zip(sides, (below, above), strict=True):
        expected = tpe._observations(side, list(space))
        assert {k: v.tolist() for k, v in got.items()} == {
            k: v.tolist() for k, v in expected.items()
        }


def test_view_slots_are_the_walks_rows_through_a_service_like_run() -> None:
    """On a study view, the sampler follows the storage's change log instead of walking every
    trial. Through what the service does to a view (provisional trials sampled and dropped,
    trials coming back from the database as new objects with their own ids, a configuration
    enqueued early and leased late, trials failed, finished and deleted), the slots it keeps
    name the same trials, in the same order, as the walk over ``get_all_trials``."""
    from service.sampling import tpe

    storage = ViewStorage(1, "view", [StudyDirection.MINIMIZE])
    sampler = ViewTPESampler(seed=0)
    study = optuna.Study(study_name="view", storage=storage, sampler=sampler)
    history = _history(1)
    for trial_id, trial in enumerate(history, start=1):
        trial._trial_id, trial.number = trial_id, trial_id - 1
        storage.put_trial(trial)
    next_id = len(history) + 1
    rng = random.Random(5)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    compared = 0

    def from_db(trial: optuna.trial.FrozenTrial, **changes: Any) -> None:
        """The trial as a refresh reads it back: a new object."""
        fresh = copy.copy(trial)
        for name, value in changes.items():
            setattr(fresh, name, value)
        storage.put_trial(fresh)

    def compare(skip: int) -> None:
        nonlocal compared
        for space_key in {key[0] for key in sampler._tables}:  # each space sampled
            space = dict(space_key)
            slots, table = sampler._view_slots(study, storage, space, states, skip)
            walked = storage.get_all_trials(1, deepcopy=False, states=states)
            rows, _ = sampler._rows(study, walked, space, skip=skip)
            assert [r.trial for r in table.rows_at(slots)] == [r.trial for r in rows]
            assert tpe._slots(table.rows_at(slots)).tolist() == slots.tolist()
            compared += 1

    waiting = None
    gap = 0  # numbers after the enqueued configuration's are one higher
    for step in range(60):
        working = storage.create_new_trial(1)  # what StudyView.sample does
        trial = optuna.Trial(study, working)
        for name, distribution in SPACE.items():
            trial._suggest(name, distribution)
        compare(skip=working)
        sampled = storage.get_trial(working)
        storage.drop_trial(working)
        if step == 5:  # enqueued now (its number taken), read back at step 20, leased at 40
            waiting = copy.copy(sampled)
            waiting._trial_id, waiting.state = next_id, TrialState.WAITING
            waiting.params, waiting.distributions = {}, {}
            next_id += 1
            gap = 1
        if step == 20 and waiting is not None:
            storage.put_trial(waiting)  # first seen after trials with higher numbers
        if step == 30:  # the log compacted (as after many changes): every table starts over
            storage._log_start += len(storage._log)
            storage._log = []
        leased = copy.copy(sampled)
        leased._trial_id, leased.number = next_id, sampled.number + gap
        next_id += 1
        storage.put_trial(leased)
        compare(skip=-10_000)
        fate = rng.random()
        if fate < 0.6:
            done = _loss({"act": "relu", **leased.params})
            from_db(leased, state=TrialState.COMPLETE, values=[done])
        elif fate < 0.7:
            from_db(leased, state=TrialState.FAIL)
        elif fate < 0.8:
            storage.drop_trial(leased._trial_id)  # the study's trial deleted
        # else left running: the constant liar counts it
        compare(skip=leased._trial_id)  # a changed trial skipped: looked at next time
        if step == 40 and waiting is not None:
            storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING)
            compare(skip=waiting._trial_id)
            from_db(
                storage.get_trial(waiting._trial_id),
                params=dict(sampled.params),
                distributions=dict(sampled.distributions),
            )
        present = [t._trial_id for t in storage.trials()]
        compare(skip=rng.choice(present))  # any trial skipped: left out of the slots
        compare(skip=-10_000)
    assert compared > 100
