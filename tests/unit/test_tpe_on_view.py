"""A ``tpe`` study suggests exactly what Optuna's ``TPESampler`` suggests on the same trials.

The service samples on a study view: ``StudyView.sample`` runs the sampler built from the
study's spec on a ``ViewStorage`` that is fed trials as the database's rows
(``tests.view_rows``), the way every refresh feeds it. Each case builds the same history twice,
once in such a view and once in an in-memory ``optuna.create_study`` with
``TPESampler(seed=...)`` and the same options, then asks several times in a row. Every
suggestion must be identical. Each new trial enters both studies (running, as the service
persists it, then finished or left running for the next asks). A view that serves another
history than Optuna's (which trials are pruned, failed or running, their intermediate values),
or a sampler that is not the stock one with these options, changes the suggestions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from service.sampling.view import PROVISIONAL, StudyDefinition, StudyView
from service.spec import Direction, PrunerSpec, SamplerSpec, parse_search_space, to_distributions
from tests.view_rows import change_row

optuna.logging.set_verbosity(optuna.logging.ERROR)

SEED = 7
SPACE = parse_search_space(  # every kind of parameter the service accepts
    {
        "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
        "momentum": {"type": "float", "low": 0.0, "high": 1.0},
        "layers": {"type": "int", "low": 1, "high": 6},
        "width": {"type": "int", "low": 16, "high": 1024, "log": True},
        "warmup": {"type": "int", "low": 0, "high": 1000, "step": 50},
        "batch": {"type": "categorical", "choices": [16, 32, 64, 128]},
        "act": {"type": "categorical", "choices": ["relu", "gelu", "tanh"]},
    }
)
DISTRIBUTIONS = to_distributions(SPACE)


def _loss(params: dict[str, Any]) -> float:
    loss: float = (
        (math.log10(params["lr"]) + 3) ** 2
        + params.get("dropout", 0.2)
        + abs(params.get("momentum", 0.5) - 0.9)
        + 0.1 * params["layers"]
        + abs(math.log2(params["width"]) - 7)
        + params.get("warmup", 500) / 1000
        + params["batch"] / 256
        + (0.0 if params.get("act") == "gelu" else 0.3)
    )
    return loss


def _values(params: dict[str, Any], n_objectives: int) -> list[float]:
    loss = _loss(params)
    return [loss, -loss * params.get("momentum", 0.5)][:n_objectives]


def _curve(rng: random.Random, params: dict[str, Any]) -> list[float]:
    """Reports that improve, of a random length; some end in NaN (a diverged run)."""
    loss = _loss(params)
    curve = [loss * (2 - step / 10) for step in range(rng.randint(1, 8))]
    if rng.random() < 0.1:
        curve.append(math.nan)
    return curve


_STATES = {"pruned": TrialState.PRUNED, "fail": TrialState.FAIL, "running": TrialState.RUNNING}


def _history_trial(rng: random.Random, kind: str, n_objectives: int) -> FrozenTrial:
    """A past trial of ``kind`` (a pruned one of a single-objective study has reports)."""
    params = {
        "lr": 10 ** rng.uniform(-5, -1),
        "dropout": rng.randrange(11) * 0.05,
        "momentum": rng.random(),
        "layers": rng.randint(1, 6),
        "width": rng.randint(16, 1024),
        "warmup": rng.randrange(21) * 50,
        "batch": rng.choice([16, 32, 64, 128]),
        "act": rng.choice(["relu", "gelu", "tanh"]),
    }
    if kind == "partial":  # written by a define-by-run client: part of the space only
        for name in rng.sample(["dropout", "momentum", "warmup", "act"], 2):
            del params[name]
    distributions = {name: DISTRIBUTIONS[name] for name in params}
    curve = _curve(rng, params) if kind == "pruned" and n_objectives == 1 else []
    state = _STATES.get(kind, TrialState.COMPLETE)
    values = _values(params, n_objectives) if state == TrialState.COMPLETE else None
    # Complete but infeasible: a positive constraint value (TPE ranks these after the others).
    constraints = [rng.uniform(0.1, 1)] if kind == "infeasible" else []
    trial = optuna.trial.create_trial(
        state=state,
        values=values,
        params=params,
        distributions=distributions,
        system_attrs={"constraints": constraints} if constraints else None,
        intermediate_values=dict(enumerate(curve)),
    )
    return trial


@dataclass(frozen=True)
class _Asked:
    view_id: int
    trial: optuna.Trial


class _Twins:
    """One study twice: the service's view of it, and Optuna's in-memory study."""

    def __init__(self, options: dict[str, Any], directions: list[Direction]) -> None:
        definition = StudyDefinition(
            study_id=1,
            name="twins",
            directions=list(directions),
            search_space=SPACE,
            sampler=SamplerSpec(name="tpe", options={"seed": SEED, **options}),
            pruner=PrunerSpec(),
            task=None,
        )
        self.view = StudyView(definition)
        # The service defaults constant_liar to True; Optuna's class is given it explicitly.
        stock = optuna.samplers.TPESampler(seed=SEED, **{"constant_liar": True, **options})
        self.study = optuna.create_study(sampler=stock, directions=directions)
        self.n_objectives = len(directions)
        self._last_id = 100  # the view's trial ids are the database's, not Optuna's
        self.suggested: list[dict[str, Any]] = []
        self.expected: list[dict[str, Any]] = []

    def add(self, trial: FrozenTrial) -> None:
        """A trial of the history, in both (the view reads back what Optuna stored)."""
        self.study.add_trial(trial)
        stored = self.study.trials[-1]
        self._refresh(self._new_id(), stored, leased=stored.state == TrialState.RUNNING)

    def ask(self) -> _Asked:
        """The next trial in both, each side's suggestion recorded."""
        sampled = self.view.sample()
        trial = self.study.ask(DISTRIBUTIONS)
        assert sampled.number == trial.number
        self.suggested.append(sampled.params)
        self.expected.append(trial.params)
        # As the service inserts it: running, leased, with what the sampler wrote to it.
        running = optuna.trial.create_trial(
            state=TrialState.RUNNING,
            params=sampled.params,
            distributions=sampled.distributions,
            system_attrs=sampled.journal.trial_system_attrs.pop(PROVISIONAL, {}),
        )
        running.number = sampled.number
        asked = _Asked(self._new_id(), trial)
        self._refresh(asked.view_id, running, leased=True)
        return asked

    def finish(self, asked: _Asked, state: TrialState, curve: Sequence[float] = ()) -> None:
        """Finish an asked trial in both: its reports, then its state, read back by the view."""
        for step, value in enumerate(curve):
            asked.trial.report(value, step)
        if state == TrialState.COMPLETE:
            self.study.tell(asked.trial, _values(asked.trial.params, self.n_objectives))
        else:
            self.study.tell(asked.trial, state=state)
        self._refresh(asked.view_id, self.study.trials[asked.trial.number], leased=False)

    def _refresh(self, trial_id: int, trial: FrozenTrial, *, leased: bool) -> None:
        self.view.apply_changes([change_row(trial_id, trial, leased=leased)], horizon=0)

    def _new_id(self) -> int:
        self._last_id += 1
        return self._last_id


def _run(
    options: dict[str, Any],
    directions: list[Direction],
    weights: dict[str, float],
    *,
    n_history: int = 60,
    n_asks: int = 12,
) -> _Twins:
    """A history drawn with ``weights`` per kind, then ``n_asks`` asks in a row; up to two
    asked trials stay running at a time, the others finish as the history's kinds do."""
    rng = random.Random(sum(map(ord, repr((options, directions, weights)))))
    twins = _Twins(options, directions)
    single = len(directions) == 1
    kinds = rng.choices(list(weights), list(weights.values()), k=n_history)
    for kind in kinds:
        twins.add(_history_trial(rng, kind, len(directions)))
    finished = twins.study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) >= 10  # past TPE's startup trials: every ask is a TPE sample
    running: list[_Asked] = []
    for _ in range(n_asks):
        running.append(twins.ask())
        if len(running) <= 2 and rng.random() < 0.5:
            continue
        asked = running.pop(0)
        kind = rng.choices(list(weights), list(weights.values()))[0]
        if kind == "pruned":
            curve = _curve(rng, asked.trial.params) if single else []
            twins.finish(asked, TrialState.PRUNED, curve)
        elif kind == "fail":
            twins.finish(asked, TrialState.FAIL)
        else:
            twins.finish(asked, TrialState.COMPLETE)
    return twins


CASES = {
    # Fewer complete trials than TPE's "below" set: pruned ones are ranked by their reports.
    "mostly pruned, with reports": ({}, ["minimize"], {"pruned": 18, "complete": 1, "fail": 1}),
    "mostly failed": ({}, ["maximize"], {"fail": 7, "complete": 2, "infeasible": 1}),
    "running, constant liar": ({}, ["minimize"], {"running": 3, "complete": 5, "pruned": 2}),
    "running, no constant liar": (
        {"constant_liar": False},
        ["minimize"],
        {"running": 3, "complete": 5, "pruned": 2},
    ),
    "multi-objective": (
        {},
        ["minimize", "maximize"],
        {"complete": 5, "pruned": 2, "fail": 2, "running": 1},
    ),
    "multivariate, grouped": (
        {"multivariate": True, "group": True},
        ["minimize"],
        {"complete": 4, "partial": 3, "pruned": 2, "running": 1},
    ),
    "independent, options": (
        {"multivariate": False, "n_ei_candidates": 7, "n_startup_trials": 5},
        ["minimize"],
        {"complete": 6, "partial": 2, "pruned": 2},
    ),
}


@pytest.mark.parametrize(("options", "directions", "weights"), CASES.values(), ids=CASES)
def test_suggestions_are_optunas_tpe_on_the_same_trials(
    options: dict[str, Any], directions: list[Direction], weights: dict[str, float]
) -> None:
    twins = _run(options, directions, weights)
    assert twins.suggested == twins.expected
    assert len({tuple(sorted(p.items())) for p in twins.suggested}) == len(twins.suggested)
