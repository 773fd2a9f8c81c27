"""Conditional search spaces in the spec: validation, activity, sampling order, samplers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.samplers import TPESampler

from service.errors import SpecError
from service.spec import (
    ActiveSpace,
    SamplerSpec,
    build_sampler,
    check_params,
    check_study,
    grid_point_count,
    parse_search_space,
)
from service.spec.pruners import PrunerSpec

EXAMPLE: dict[str, Any] = {
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    "momentum": {"type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": ["sgd"]}},
    "n_layers": {"type": "int", "low": 1, "high": 4},
    "width_l3": {
        "type": "int",
        "low": 16,
        "high": 1024,
        "log": True,
        "when": {"n_layers": {"min": 3}},
    },
}


def details_of(call: Callable[..., object], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    with pytest.raises(SpecError) as caught:
        call(*args, **kwargs)
    return list(caught.value.details)


def with_when(name: str, when: object, **extra: Any) -> dict[str, Any]:
    return {**EXAMPLE, **extra, name: {**EXAMPLE[name], "when": when}}


@pytest.mark.parametrize(
    ("raw", "loc", "words"),
    [
        (with_when("momentum", {"momentum": ["sgd"]}), ["momentum", "when", "momentum"], "itself"),
        (with_when("momentum", {"opt": ["sgd"]}), ["momentum", "when", "opt"], "unknown"),
        (
            with_when("momentum", {"optimizer": ["sgd", "rmsprop"]}),
            ["momentum", "when", "optimizer", 1],
            '"rmsprop" is not one of the choices',
        ),
        (
            with_when("width_l3", {"n_layers": {"min": 5}}),
            ["width_l3", "when", "n_layers"],
            "no value of 'n_layers' (1 to 4)",
        ),
        (
            with_when("width_l3", {"n_layers": {"min": 2.2, "max": 2.8}}),
            ["width_l3", "when", "n_layers"],
            "no value",
        ),
        (
            with_when("width_l3", {"momentum": [0.5]}),
            ["width_l3", "when", "momentum"],
            "give a range",
        ),
        (
            with_when("width_l3", {"optimizer": {"min": 1}}),
            ["width_l3", "when", "optimizer"],
            "list the values",
        ),
        (
            with_when("width_l3", {"n_layers": {"min": 3, "max": 2}}),
            ["width_l3", "when", "n_layers", "min"],
            "min (3) must be <= max (2)",
        ),
        (with_when("width_l3", {"n_layers": 3}), ["width_l3", "when", "n_layers"], "a condition"),
        (
            with_when(
                "momentum",
                {"width_l3": {"min": 16}},
                width_l3={**EXAMPLE["width_l3"], "when": {"momentum": {"max": 0.5}}},
            ),
            ["momentum", "when", "width_l3"],
            "cycle (each depends on the next): 'momentum' -> 'width_l3' -> 'momentum'",
        ),
        (
            {
                **EXAMPLE,
                "nesterov": {
                    "type": "categorical",
                    "choices": [True, False],
                    "when": {"optimizer": ["adam"], "momentum": {"min": 0.5}},
                },
            },
            ["nesterov", "when"],
            "'nesterov' can never exist",
        ),
    ],
)
def test_unsound_conditions_are_refused_naming_the_parameter(
    raw: dict[str, Any], loc: list[str | int], words: str
) -> None:
    details = details_of(parse_search_space, raw)
    assert [d["loc"] for d in details] == [["search_space", *loc]]
    assert words in details[0]["msg"]


def test_a_space_round_trips_and_only_conditional_parameters_dump_when() -> None:
    space = parse_search_space(EXAMPLE)
    dumped = {name: spec.model_dump(mode="json") for name, spec in space.items()}
    assert "when" not in dumped["optimizer"] and "when" not in dumped["n_layers"]
    assert dumped["momentum"]["when"] == {"optimizer": ["sgd"]}
    assert dumped["width_l3"]["when"] == {"n_layers": {"min": 3}}  # an int bound stays an int
    assert parse_search_space(dumped) == space


def test_parents_are_suggested_first_and_otherwise_in_the_space_order() -> None:
    space = parse_search_space(
        {
            "child": {"type": "float", "low": 0, "high": 1, "when": {"parent": ["on"]}},
            "a": {"type": "int", "low": 0, "high": 1},
            "parent": {"type": "categorical", "choices": ["on", "off"]},
        }
    )
    assert ActiveSpace(space).order == ["a", "parent", "child"]
    assert ActiveSpace(parse_search_space(EXAMPLE)).order == list(EXAMPLE)


def test_which_parameters_are_active() -> None:
    active = ActiveSpace(parse_search_space(EXAMPLE))
    assert active.active({"optimizer": "sgd", "n_layers": 3}) == list(EXAMPLE)
    assert active.active({"optimizer": "adam", "n_layers": 2}) == ["optimizer", "n_layers"]
    assert active.incomplete({})  # a trial enqueued with nothing fixed
    assert active.incomplete({"optimizer": "sgd", "n_layers": 1})  # momentum is missing
    assert not active.incomplete({"optimizer": "adam", "n_layers": 2})
    assert not active.incomplete(
        {"optimizer": "sgd", "momentum": 0.5, "n_layers": 4, "width_l3": 64}
    )


def test_enqueued_configurations_hold_exactly_active_parameters() -> None:
    space = parse_search_space(EXAMPLE)
    assert check_params(space, {"optimizer": "sgd", "momentum": 0.5}, partial=True) == {
        "optimizer": "sgd",
        "momentum": 0.5,
    }
    inactive = details_of(check_params, space, {"optimizer": "adam", "momentum": 0.5}, partial=True)
    assert inactive[0]["loc"] == ["params", "momentum"]
    assert 'does not exist when optimizer="adam"' in inactive[0]["msg"]
    orphan = details_of(check_params, space, {"width_l3": 64}, partial=True)
    assert orphan[0]["loc"] == ["params", "width_l3"] and "give 'n_layers'" in orphan[0]["msg"]
    whole = details_of(check_params, space, {"optimizer": "sgd", "n_layers": 3}, partial=False)
    assert [d["loc"] for d in whole] == [["params", "momentum"], ["params", "width_l3"]]
    full = {"optimizer": "adam", "n_layers": 1}
    assert check_params(space, full, partial=False) == full


def test_tpe_on_a_conditional_space_is_grouped_multivariate_by_default() -> None:
    # No warning filter here: pyproject's filterwarnings must let Optuna's ExperimentalWarning
    # for multivariate and group through when service.spec builds the sampler.
    conditional = parse_search_space(EXAMPLE)
    plain = parse_search_space({"n_layers": EXAMPLE["n_layers"]})
    assert _modes(conditional) == (True, True)
    assert _modes(conditional, multivariate=False) == (False, False)
    assert _modes(conditional, group=False) == (True, False)
    assert _modes(conditional, multivariate=True) == (True, True)
    # Unconditional: Optuna 5's own defaults (multivariate for one objective, no groups).
    assert _modes(plain) == (True, False)


def _modes(space: dict[str, Any], **options: Any) -> tuple[bool, bool]:
    """(multivariate, group) as the built sampler behaves, read through Optuna's public API:
    after an ``sgd`` and an ``adam`` trial, an independent TPE has no relative search space, a
    multivariate one the parameters both trials share, a grouped one every parameter seen."""
    sampler = build_sampler(SamplerSpec(name="tpe", options=options), space, ["minimize"])
    assert isinstance(sampler, TPESampler)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"optimizer": "sgd", "momentum": 0.5, "n_layers": 3, "width_l3": 64})
    study.enqueue_trial({"optimizer": "adam", "n_layers": 1})
    active = ActiveSpace(space)
    for _ in range(2):
        trial = study.ask()
        active.suggest(trial)
        study.tell(trial, 1.0)
    study.ask()
    relative = sampler.infer_relative_search_space(study, study.trials[-1])
    return bool(relative), "momentum" in relative


@pytest.mark.parametrize("name", ["cmaes", "grid"])
def test_samplers_that_need_a_fixed_space_refuse_a_conditional_one(name: str) -> None:
    finite = {**EXAMPLE, "momentum": {**EXAMPLE["momentum"], "step": 0.33}}  # a finite grid
    space = parse_search_space(finite)
    details = details_of(
        check_study, SamplerSpec(name=name), PrunerSpec(), space, ["minimize"], None
    )
    if name == "grid":
        assert details[0]["loc"] == ["search_space", "momentum", "when"]
        assert details_of(grid_point_count, SamplerSpec(name="grid"), space)[0] == details[0]
    else:
        assert details[0]["loc"] == ["sampler", "name"]
    assert "`when`" in details[0]["msg"]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("tpe", {"n_startup_trials": 3}),
        ("random", {}),
        ("gp", {"n_startup_trials": 3}),
        ("qmc", {"seed": 0}),
        ("nsga2", {"population_size": 4}),
    ],
)
def test_the_other_samplers_suggest_only_active_parameters(
    name: str, options: dict[str, Any]
) -> None:
    spec, space = SamplerSpec(name=name, options=options), parse_search_space(EXAMPLE)
    check_study(spec, PrunerSpec(), space, ["minimize"], 10)
    study = optuna.create_study(sampler=build_sampler(spec, space, ["minimize"]))
    active = ActiveSpace(space)
    for _ in range(10):  # past the startup trials: the samplers' own models run
        trial = study.ask()
        params = active.suggest(trial)
        study.tell(trial, params["n_layers"] + params.get("momentum", 0.5))
    for frozen in study.trials:
        assert list(frozen.params) == active.active(frozen.params)
        assert ("momentum" in frozen.params) == (frozen.params["optimizer"] == "sgd")
        assert ("width_l3" in frozen.params) == (frozen.params["n_layers"] >= 3)


def test_tpe_on_an_open_space_is_grouped_multivariate_by_default() -> None:
    """An open space ({}: the objective suggests everything) gets the conditional defaults."""
    sampler = build_sampler(SamplerSpec(name="tpe", options={}), {}, ["minimize"])
    assert isinstance(sampler, TPESampler)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({"optimizer": "sgd", "momentum": 0.5})
    study.enqueue_trial({"optimizer": "adam"})
    for _ in range(2):
        trial = study.ask()
        if trial.suggest_categorical("optimizer", ["sgd", "adam"]) == "sgd":
            trial.suggest_float("momentum", 0.0, 0.99)
        study.tell(trial, 1.0)
    study.ask()
    relative = sampler.infer_relative_search_space(study, study.trials[-1])
    assert "momentum" in relative  # grouped: a parameter of one branch is modelled too
