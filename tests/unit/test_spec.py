"""Unit tests for ``service.spec``: search spaces, sampler/pruner registries, study checks."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial
from pydantic import BaseModel, ValidationError

from service.errors import SpecError
from service.spec import (
    MAX_GRID_POINTS,
    PRUNER_NAMES,
    SAMPLER_NAMES,
    CategoricalParam,
    Direction,
    FloatParam,
    IntParam,
    InvalidValue,
    ParamSpec,
    PrunerSpec,
    SamplerSpec,
    SearchSpace,
    build_pruner,
    build_sampler,
    check_params,
    check_study,
    grid_point_count,
    grid_points,
    grid_size,
    normalize_value,
    parse_search_space,
    study_check,
    to_distribution,
    to_distributions,
)
from service.spec.options import option_adapter, settable_options
from service.spec.pruners import pruner_rules
from service.spec.samplers import sampler_rules

MIN: list[Direction] = ["minimize"]
TWO: list[Direction] = ["minimize", "maximize"]


@pytest.fixture
def space() -> dict[str, ParamSpec]:
    return parse_search_space(
        {
            "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
            "layers": {"type": "int", "low": 1, "high": 6},
            "width": {"type": "categorical", "choices": [16, 32, "wide", True, 0.5]},
        }
    )


@pytest.fixture
def finite_space() -> dict[str, ParamSpec]:
    return parse_search_space(
        {
            "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
            "layers": {"type": "int", "low": 1, "high": 7, "step": 3},
            "act": {"type": "categorical", "choices": ["relu", "tanh"]},
        }
    )


def spec_error(call: Any, *args: Any, **kwargs: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        call(*args, **kwargs)
    return info.value


def locs(error: SpecError) -> list[list[str | int]]:
    return [item["loc"] for item in error.details]


def only_detail(error: SpecError) -> tuple[list[str | int], str]:
    assert len(error.details) == 1, error.details
    return error.details[0]["loc"], error.details[0]["msg"]


# --- search space: accepted shapes ------------------------------------------------------


def test_json_shapes_round_trip_with_the_documented_field_names() -> None:
    raw = {
        "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True, "step": None},
        "layers": {"type": "int", "low": 1, "high": 6, "log": False, "step": 1},
        "batch": {"type": "categorical", "choices": [16, 32, "a", True, 0.5]},
    }
    space = parse_search_space(raw)
    assert isinstance(space["lr"], FloatParam)
    assert isinstance(space["layers"], IntParam)
    assert isinstance(space["batch"], CategoricalParam)
    assert {name: spec.model_dump(mode="json") for name, spec in space.items()} == raw


def test_defaults_of_float_and_int_params() -> None:
    space = parse_search_space(
        {
            "x": {"type": "float", "low": 0, "high": 1},
            "n": {"type": "int", "low": 0, "high": 3},
        }
    )
    assert space["x"] == FloatParam(low=0.0, high=1.0, log=False, step=None)
    assert space["n"] == IntParam(low=0, high=3, log=False, step=1)


def test_categorical_choices_keep_their_json_types_exactly() -> None:
    text = '{"c": {"type": "categorical", "choices": [16, 32, "a", true, 0.5, 2.0, false]}}'
    space = parse_search_space(json.loads(text))
    choices = space["c"].choices  # type: ignore[union-attr]
    assert [type(c) for c in choices] == [int, int, str, bool, float, float, bool]
    assert json.dumps(space["c"].model_dump(mode="json")["choices"]) == (
        '[16, 32, "a", true, 0.5, 2.0, false]'
    )
    distribution = to_distributions(space)["c"]
    assert isinstance(distribution, CategoricalDistribution)
    assert [type(c) for c in distribution.choices] == [int, int, str, bool, float, float, bool]


def test_a_search_space_field_validates_inside_any_pydantic_model() -> None:
    class Body(BaseModel):
        search_space: SearchSpace

    assert Body.model_validate({"search_space": {"x": {"type": "int", "low": 0, "high": 2}}})
    with pytest.raises(ValidationError) as info:
        Body.model_validate({"search_space": {"x": {"type": "int", "low": 3, "high": 2}}})
    assert "low (3) must be <= high (2)" in str(info.value)


def test_limits_on_names_and_counts_accept_their_bounds() -> None:
    param = {"type": "int", "low": 0, "high": 1}
    assert len(parse_search_space({f"p{i}": param for i in range(1000)})) == 1000
    assert parse_search_space({"n" * 512: param, "ünïcode name/ok": param})


# --- search space: refusals ---------------------------------------------------------------


FLOAT = {"type": "float", "low": 0.0, "high": 1.0}
INT = {"type": "int", "low": 0, "high": 10}

PARAM_REFUSALS = [
    # (param, field the detail points at, text the message contains)
    ({**FLOAT, "low": 2.0}, "low", "low (2.0) must be <= high (1.0)"),
    ({**FLOAT, "log": True}, "low", "low must be > 0 when log is true"),
    ({**FLOAT, "low": -1.0, "log": True}, "low", "low must be > 0 when log is true"),
    ({**FLOAT, "step": 0.0}, "step", "step must be > 0"),
    ({**FLOAT, "step": -0.1}, "step", "step must be > 0"),
    ({**FLOAT, "low": 0.1, "log": True, "step": 0.1}, "step", "cannot be combined with log"),
    ({**FLOAT, "step": 0.3}, "high", "multiple of step (0.3); use high=0.9"),
    ({**FLOAT, "low": float("nan")}, "low", "finite number"),
    ({**FLOAT, "high": float("inf")}, "high", "finite number"),
    ({**FLOAT, "step": float("inf")}, "step", "finite number"),
    ({**FLOAT, "low": -1e308, "high": 1e308}, "high", "high - low must be a finite number"),
    ({**FLOAT, "low": True}, "low", "valid number"),
    ({**FLOAT, "low": "0"}, "low", "valid number"),
    ({**FLOAT, "log": "yes"}, "log", "valid boolean"),
    ({**FLOAT, "q": 0.1}, "q", "Extra inputs are not permitted"),
    ({**INT, "low": 1.5}, "low", "valid integer"),
    ({**INT, "low": 1.0}, "low", "valid integer"),
    ({**INT, "high": True}, "high", "valid integer"),
    ({**INT, "high": 2**53 + 1}, "high", "less than or equal to 9007199254740992"),
    ({**INT, "low": 11}, "low", "low (11) must be <= high (10)"),
    ({**INT, "step": 0}, "step", "step must be > 0"),
    ({**INT, "step": 3}, "high", "multiple of step (3); use high=9"),
    ({**INT, "low": 1, "log": True, "step": 3}, "step", "step must be 1 when log is true"),
    ({**INT, "log": True}, "low", "low must be >= 1 when log is true"),
    ({"type": "categorical", "choices": []}, "choices", "at least one choice"),
    ({"type": "categorical", "choices": "ab"}, "choices", "valid list"),
    ({"type": "categorical", "choices": [1, True]}, "choices", "1 and true are equal"),
    ({"type": "categorical", "choices": [0, 0.0]}, "choices", "0 and 0.0 are equal"),
    ({"type": "categorical", "choices": ["a", "b", "a"]}, "choices", '"a" and "a" are equal'),
    ({"type": "categorical", "choices": [1, None]}, "choices.1", "string, a finite number"),
    ({"type": "categorical", "choices": [[1]]}, "choices.0", "string, a finite number"),
    ({"type": "categorical", "choices": [float("nan")]}, "choices.0", "finite number"),
    ({"type": "normal", "low": 0}, None, "does not match any of the expected tags"),
    ({"low": 0, "high": 1}, None, "Unable to extract tag using discriminator 'type'"),
]


@pytest.mark.parametrize(("param", "field", "text"), PARAM_REFUSALS)
def test_invalid_params_are_refused_at_the_offending_field(
    param: dict[str, Any], field: str | None, text: str
) -> None:
    error = spec_error(parse_search_space, {"p": param})
    loc, msg = error.details[0]["loc"], error.details[0]["msg"]
    expected = ["search_space", "p"] + ([] if field is None else field.split("."))
    assert [str(part) for part in loc] == expected
    assert text in msg
    assert text in error.message and "search_space.p" in error.message


def test_every_problem_is_reported_not_only_the_first() -> None:
    error = spec_error(
        parse_search_space,
        {"a": {**FLOAT, "low": 5.0}, "b": {**INT, "low": 0.5}, "c": {"type": "categorical"}},
    )
    assert locs(error) == [
        ["search_space", "a", "low"],
        ["search_space", "b", "low"],
        ["search_space", "c", "choices"],
    ]
    assert "(and 2 more problems)" in error.message


@pytest.mark.parametrize(
    ("raw", "loc", "text"),
    [
        ({f"p{i}": INT for i in range(1001)}, ["search_space"], "at most 1000 items"),
        ({"": INT}, ["search_space", "", "[key]"], "at least 1 character"),
        ({"n" * 513: INT}, ["search_space", "n" * 513, "[key]"], "at most 512 characters"),
        ({"a\nb": INT}, ["search_space", "a\nb", "[key]"], "control characters"),
        ({"a\x00": INT}, ["search_space", "a\x00", "[key]"], "control characters"),
        ([INT], ["search_space"], "valid dictionary"),
    ],
)
def test_space_level_refusals(raw: Any, loc: list[str], text: str) -> None:
    error = spec_error(parse_search_space, raw)
    assert error.details[0]["loc"] == loc
    assert text in error.details[0]["msg"]


def test_an_empty_space_is_open() -> None:
    """Define-by-run: the objective suggests every parameter (service.trials.suggest)."""
    assert parse_search_space({}) == {}


def test_parse_accepts_already_built_models() -> None:
    space = {"x": FloatParam(low=0.0, high=1.0), "n": IntParam(low=1, high=3)}
    assert parse_search_space(space) == space
    with pytest.raises(ValidationError):
        FloatParam(low=1.0, high=0.0)


def _candidate_params() -> Iterator[dict[str, Any]]:
    numbers = [-1.0, 0.0, 0.25, 1.0, 3.0]
    for low, high, log, step in itertools.product(numbers, numbers, [False, True], [None, 0.5]):
        yield {"type": "float", "low": low, "high": high, "log": log, "step": step}
    ints = [-2, 0, 1, 3, 4]
    for low, high, log, step in itertools.product(ints, ints, [False, True], [-1, 1, 2]):
        yield {"type": "int", "low": low, "high": high, "log": log, "step": step}


def test_whatever_we_accept_optuna_accepts_unchanged_and_silently() -> None:
    accepted = 0
    for raw in _candidate_params():
        try:
            spec = parse_search_space({"p": raw})["p"]
        except SpecError:
            continue
        accepted += 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            distribution = to_distributions({"p": spec})["p"]
        assert isinstance(distribution, FloatDistribution | IntDistribution)
        assert (distribution.low, distribution.high) == (raw["low"], raw["high"]), raw
    assert accepted > 50


def test_whatever_optuna_refuses_we_refuse() -> None:
    for raw in _candidate_params():
        cls = FloatDistribution if raw["type"] == "float" else IntDistribution
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(raw["low"], raw["high"], log=raw["log"], step=raw["step"])
        except ValueError:
            with pytest.raises(SpecError):
                parse_search_space({"p": raw})


def test_to_distributions_maps_each_type(space: dict[str, ParamSpec]) -> None:
    distributions = to_distributions(space)
    assert distributions["lr"] == FloatDistribution(1e-5, 0.1, log=True)
    assert distributions["dropout"] == FloatDistribution(0.0, 0.5, step=0.1)
    assert distributions["layers"] == IntDistribution(1, 6)
    assert distributions["width"] == CategoricalDistribution([16, 32, "wide", True, 0.5])


# --- check_params (enqueue) --------------------------------------------------------------


def test_check_params_normalizes_valid_values(space: dict[str, ParamSpec]) -> None:
    values = check_params(
        space, {"lr": 0.1, "dropout": 0, "layers": 6, "width": True}, partial=False
    )
    assert values == {"lr": 0.1, "dropout": 0.0, "layers": 6, "width": True}
    assert type(values["dropout"]) is float and type(values["layers"]) is int
    assert type(values["width"]) is bool
    bounds = check_params(space, {"lr": 1e-5, "layers": 1, "width": 0.5}, partial=True)
    assert bounds == {"lr": 1e-5, "layers": 1, "width": 0.5}


def test_check_params_returns_the_choice_itself(space: dict[str, ParamSpec]) -> None:
    mixed = parse_search_space({"c": {"type": "categorical", "choices": [2.0, "2", False]}})
    assert type(check_params(mixed, {"c": 2}, partial=False)["c"]) is float
    assert check_params(mixed, {"c": "2"}, partial=False) == {"c": "2"}
    assert check_params(mixed, {"c": False}, partial=False)["c"] is False
    assert check_params(space, {"width": 16}, partial=True) == {"width": 16}


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("lr", 0.5, "0.5 is outside [1e-05, 0.1]"),
        ("lr", 0.0, "0.0 is outside"),
        ("lr", "0.01", "expected a number, got a string"),
        ("lr", True, "expected a number, got a boolean"),
        ("lr", None, "expected a number, got null"),
        ("lr", float("nan"), "expected a finite number"),
        ("lr", 10**400, "is outside"),
        ("dropout", 0.25, "0.25 is not low + k * step"),
        ("dropout", -0.1, "is outside [0.0, 0.5]"),
        ("layers", 7, "7 is outside [1, 6]"),
        ("layers", 2.0, "expected an integer, got float"),
        ("layers", 2.5, "expected an integer, got float"),
        ("layers", False, "expected an integer, got a boolean"),
        ("layers", [1], "expected an integer, got an array"),
        ("width", 64, '64 is not one of the choices [16, 32, "wide", true, 0.5]'),
        ("width", 1, "1 is not one of the choices"),
        ("width", "16", '"16" is not one of the choices'),
        ("width", {"a": 1}, "is not one of the choices"),
    ],
)
def test_check_params_refuses_bad_values(
    space: dict[str, ParamSpec], name: str, value: Any, text: str
) -> None:
    loc, msg = only_detail(spec_error(check_params, space, {name: value}, partial=True))
    assert loc == ["params", name]
    assert text in msg


@pytest.mark.parametrize(
    "value", [0.1, 0.3, 0.30000000000000004, 0.3 + 1e-10, 0.3 + 1e-7, 0.25, 0.5, 0.0, 1e-12]
)
def test_a_stepped_float_is_accepted_exactly_when_optuna_accepts_it(value: float) -> None:
    """The service's grid check and the one Optuna's ``FrozenTrial`` applies (through its
    public ``create_trial``) agree, near the grid's points and at its ends."""
    spec = FloatParam(low=0.0, high=0.5, step=0.1)
    try:
        normalize_value(spec, value)
        ours = True
    except InvalidValue:
        ours = False
    try:
        optuna.trial.create_trial(
            params={"x": value}, distributions={"x": to_distribution(spec)}, value=0.0
        )
        optunas = True
    except ValueError:
        optunas = False
    assert ours == optunas


def test_check_params_on_a_stepped_int() -> None:
    space = parse_search_space({"n": {"type": "int", "low": 2, "high": 8, "step": 3}})
    assert check_params(space, {"n": 5}, partial=False) == {"n": 5}
    _, msg = only_detail(spec_error(check_params, space, {"n": 6}, partial=False))
    assert "6 is not low + k * step (low=2, step=3)" in msg


def test_check_params_refuses_unknown_names_and_lists_the_known(
    space: dict[str, ParamSpec],
) -> None:
    loc, msg = only_detail(spec_error(check_params, space, {"momentum": 0.9}, partial=True))
    assert loc == ["params", "momentum"]
    assert "unknown parameter; the search space has 'dropout', 'layers', 'lr', 'width'" in msg


def test_check_params_requires_every_name_unless_partial(space: dict[str, ParamSpec]) -> None:
    error = spec_error(check_params, space, {"lr": 0.01}, partial=False)
    assert locs(error) == [["params", "dropout"], ["params", "layers"], ["params", "width"]]
    assert {item["msg"] for item in error.details} == {"a value is required"}
    assert check_params(space, {"lr": 0.01}, partial=True) == {"lr": 0.01}
    assert check_params(space, {}, partial=True) == {}


def test_check_params_reports_all_problems_at_once(space: dict[str, ParamSpec]) -> None:
    error = spec_error(check_params, space, {"lr": 1.0, "layers": "3", "x": 1}, partial=True)
    assert locs(error) == [["params", "lr"], ["params", "layers"], ["params", "x"]]


def test_values_accepted_by_check_params_are_accepted_by_optuna(
    space: dict[str, ParamSpec],
) -> None:
    values = check_params(
        space, {"lr": 0.001, "dropout": 0.4, "layers": 3, "width": "wide"}, partial=False
    )
    study = optuna.create_study()
    study.enqueue_trial(values)
    trial = study.ask(fixed_distributions=to_distributions(space))
    assert trial.params == values


# --- grid size and grid points -----------------------------------------------------------


def test_grid_size_counts_every_finite_param(finite_space: dict[str, ParamSpec]) -> None:
    assert grid_size(finite_space) == 3 * 3 * 2


def test_grid_size_is_none_with_a_continuous_float(space: dict[str, ParamSpec]) -> None:
    assert grid_size(space) is None


def test_grid_size_counts_huge_grids_without_enumerating_them() -> None:
    big = parse_search_space(
        {
            "a": {"type": "int", "low": 0, "high": 10**9},
            "b": {"type": "float", "low": 0, "high": 1000, "step": 0.001},
            "c": {"type": "int", "low": 1, "high": 10**6, "log": True},
        }
    )
    started = time.perf_counter()
    assert grid_size(big) == (10**9 + 1) * 1_000_001 * 10**6
    assert time.perf_counter() - started < 0.1


def test_default_grid_lists_every_value(finite_space: dict[str, ParamSpec]) -> None:
    assert grid_points(None, finite_space) == {
        "dropout": [0.0, 0.25, 0.5],
        "layers": [1, 4, 7],
        "act": ["relu", "tanh"],
    }


def test_default_grid_float_points_are_exact_decimal_steps() -> None:
    space = parse_search_space({"x": {"type": "float", "low": 0.1, "high": 0.7, "step": 0.1}})
    assert grid_points(None, space) == {"x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}
    assert grid_size(space) == 7


def test_the_built_grid_sampler_visits_exactly_the_grid(
    finite_space: dict[str, ParamSpec],
) -> None:
    sampler = build_sampler(SamplerSpec(name="grid"), finite_space, MIN)
    study = optuna.create_study(sampler=sampler)
    seen = []
    for _ in range(18):
        trial = study.ask(fixed_distributions=to_distributions(finite_space))
        seen.append((trial.params["dropout"], trial.params["layers"], trial.params["act"]))
        if len(seen) < 18:  # Optuna stops the study (outside optimize: raises) after the last
            study.tell(trial, 0.0)
    expected = itertools.product([0.0, 0.25, 0.5], [1, 4, 7], ["relu", "tanh"])
    assert sorted(seen, key=repr) == sorted(expected, key=repr)


def test_grid_needs_a_finite_space_and_names_each_continuous_param() -> None:
    space = parse_search_space(
        {
            "x": FLOAT,
            "n": INT,
            "y": {**FLOAT, "low": 0.1, "log": True},
        }
    )
    error = spec_error(build_sampler, SamplerSpec(name="grid"), space, MIN)
    assert locs(error) == [["search_space", "x", "step"], ["search_space", "y", "step"]]
    assert (
        error.details[0]["msg"] == "grid sampler needs a finite space: give float param 'x' a step"
    )


def test_grid_larger_than_the_cap_is_refused() -> None:
    space = parse_search_space({"a": {"type": "int", "low": 0, "high": MAX_GRID_POINTS}})
    loc, msg = only_detail(spec_error(build_sampler, SamplerSpec(name="grid"), space, MIN))
    assert loc == ["search_space"]
    assert f"the grid has {MAX_GRID_POINTS + 1} points" in msg


def test_a_given_grid_is_checked_against_the_space(space: dict[str, ParamSpec]) -> None:
    grid = {"lr": [0.01, 0.001], "dropout": [0.1], "layers": [1, 6], "width": [True, "wide"]}
    sampler = build_sampler(SamplerSpec(name="grid", options={"search_space": grid}), space, MIN)
    assert grid_point_count(SamplerSpec(name="grid", options={"search_space": grid}), space) == 8
    study = optuna.create_study(sampler=sampler)
    trial = study.ask(fixed_distributions=to_distributions(space))
    assert trial.params["lr"] in (0.01, 0.001) and trial.params["width"] in (True, "wide")


@pytest.mark.parametrize(
    ("grid", "loc", "text"),
    [
        ({"lr": [0.01], "dropout": [0.1], "layers": [1]}, ["width"], "must list values for it"),
        (
            {"lr": [0.01], "dropout": [0.1], "layers": [1], "width": [16], "zz": [1]},
            ["zz"],
            "unknown parameter",
        ),
        ({"lr": [0.5], "dropout": [0.1], "layers": [1], "width": [16]}, ["lr", 0], "outside"),
        ({"lr": [0.01], "dropout": [], "layers": [1], "width": [16]}, ["dropout"], "at least one"),
        (
            {"lr": [0.01], "dropout": [0.1], "layers": [1, 1], "width": [16]},
            ["layers", 1],
            "distinct",
        ),
        ({"lr": [0.01], "dropout": [0.1], "layers": [1], "width": [17]}, ["width", 0], "choices"),
        ({"lr": 0.01}, ["lr"], "valid list"),
    ],
)
def test_invalid_given_grids_are_refused(
    space: dict[str, ParamSpec], grid: dict[str, Any], loc: list[Any], text: str
) -> None:
    error = spec_error(
        build_sampler, SamplerSpec(name="grid", options={"search_space": grid}), space, MIN
    )
    assert ["sampler", "options", "search_space", *loc] in locs(error)
    assert any(text in item["msg"] for item in error.details)


# --- samplers -----------------------------------------------------------------------------


SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,  # the class itself (tests/unit/test_tpe_on_view.py)
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
}


def test_sampler_names_are_the_documented_ones() -> None:
    assert set(SAMPLER_NAMES) == set(SAMPLER_CLASSES)
    assert SamplerSpec().name == "tpe" and SamplerSpec().options == {}


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_each_sampler_name_builds_its_optuna_class(
    name: str, finite_space: dict[str, ParamSpec]
) -> None:
    spec = SamplerSpec.model_validate({"name": name, "options": {"seed": 3}})
    sampler = build_sampler(spec, finite_space, MIN)
    assert type(sampler) is SAMPLER_CLASSES[name]


def test_unknown_sampler_name_lists_the_allowed_names() -> None:
    with pytest.raises(ValidationError) as info:
        SamplerSpec.model_validate({"name": "bohb"})
    message = info.value.errors()[0]["msg"]
    for name in SAMPLER_NAMES:
        assert repr(name) in message
    with pytest.raises(ValidationError):
        SamplerSpec.model_validate({"name": "tpe", "option": {}})


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"seed": 1}, {"constant_liar": True, "seed": 1}),
        ({"constant_liar": False}, {"constant_liar": False}),
    ],
)
def test_tpe_passes_constant_liar_true_by_default_and_honours_an_explicit_false(
    space: dict[str, ParamSpec],
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    """Passed explicitly: Optuna 5.0 happens to default to True too; we must not depend on it."""
    received: dict[str, Any] = {}
    original = optuna.samplers.TPESampler.__init__

    @functools.wraps(original)
    def spy(self: optuna.samplers.TPESampler, **kwargs: Any) -> None:
        received.update(kwargs)
        original(self, **kwargs)

    monkeypatch.setattr(optuna.samplers.TPESampler, "__init__", spy)
    build_sampler(SamplerSpec(options=options), space, MIN)
    assert received == expected


def _suggestions(sampler: BaseSampler, space: Mapping[str, ParamSpec], n: int) -> list[Any]:
    study = optuna.create_study(sampler=sampler)
    out = []
    for i in range(n):
        trial = study.ask(fixed_distributions=to_distributions(space))
        out.append(trial.params)
        study.tell(trial, float(i % 3))
    return out


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "qmc", "nsga2", "grid"])
def test_same_spec_with_a_seed_gives_the_same_suggestions(
    name: str, finite_space: dict[str, ParamSpec]
) -> None:
    spec = SamplerSpec.model_validate({"name": name, "options": {"seed": 42}})
    first = _suggestions(build_sampler(spec, finite_space, MIN), finite_space, 12)
    second = _suggestions(build_sampler(spec, finite_space, MIN), finite_space, 12)
    assert first == second


def test_the_seed_is_passed_through(space: dict[str, ParamSpec]) -> None:
    one = SamplerSpec(name="random", options={"seed": 1})
    two = SamplerSpec(name="random", options={"seed": 2})
    assert _suggestions(build_sampler(one, space, MIN), space, 3) != _suggestions(
        build_sampler(two, space, MIN), space, 3
    )


def test_unknown_option_names_the_allowed_options(space: dict[str, ParamSpec]) -> None:
    spec = SamplerSpec(name="random", options={"sed": 1})
    loc, msg = only_detail(spec_error(build_sampler, spec, space, MIN))
    assert loc == ["sampler", "options", "sed"]
    assert msg == "unknown option 'sed' for sampler 'random'; allowed options: seed"


def test_allowed_options_omit_the_ones_that_need_python_objects() -> None:
    listed = settable_options(sampler_rules("tpe"))
    assert "n_startup_trials" in listed and "seed" in listed
    assert "gamma" not in listed and "constraints_func" not in listed


@pytest.mark.parametrize(
    ("name", "option"),
    [
        ("tpe", "gamma"),
        ("tpe", "weights"),
        ("tpe", "constraints_func"),
        ("gp", "independent_sampler"),
        ("gp", "constraints_func"),
        ("cmaes", "independent_sampler"),
        ("cmaes", "source_trials"),
        ("qmc", "independent_sampler"),
        ("nsga2", "mutation"),
        ("nsga2", "constraints_func"),
        ("nsga2", "elite_population_selection_strategy"),
        ("nsga2", "child_generation_strategy"),
        ("nsga2", "after_trial_strategy"),
    ],
)
def test_options_that_need_python_objects_cannot_be_set(
    name: str, option: str, space: dict[str, ParamSpec]
) -> None:
    spec = SamplerSpec.model_validate({"name": name, "options": {option: "lambda n: n"}})
    loc, msg = only_detail(spec_error(build_sampler, spec, space, MIN))
    assert loc == ["sampler", "options", option]
    assert msg == f"option {option!r} cannot be set over the API: it takes a Python object"


def test_options_optuna_ignores_are_refused(space: dict[str, ParamSpec]) -> None:
    spec = SamplerSpec(name="cmaes", options={"restart_strategy": "ipop", "inc_popsize": 2})
    error = spec_error(build_sampler, spec, space, MIN)
    assert locs(error) == [
        ["sampler", "options", "restart_strategy"],
        ["sampler", "options", "inc_popsize"],
    ]
    assert "Optuna ignores it" in error.details[0]["msg"]


@pytest.mark.parametrize(
    ("name", "options", "loc", "text"),
    [
        ("tpe", {"n_startup_trials": "abc"}, ["n_startup_trials"], "valid integer"),
        ("tpe", {"n_startup_trials": 5.0}, ["n_startup_trials"], "valid integer"),
        ("tpe", {"n_startup_trials": True}, ["n_startup_trials"], "valid integer"),
        ("tpe", {"n_startup_trials": -1}, ["n_startup_trials"], "greater than or equal to 0"),
        ("tpe", {"n_ei_candidates": 0}, ["n_ei_candidates"], "greater than or equal to 1"),
        ("tpe", {"prior_weight": True}, ["prior_weight"], "valid number"),
        ("tpe", {"prior_weight": -1.0}, ["prior_weight"], "greater than or equal to 0"),
        ("tpe", {"multivariate": "yes"}, ["multivariate"], "valid boolean"),
        ("random", {"seed": -1}, ["seed"], "greater than or equal to 0"),
        ("random", {"seed": 2**32}, ["seed"], "less than or equal to 4294967295"),
        ("random", {"seed": "1"}, ["seed"], "valid integer"),
        ("gp", {"deterministic_objective": 1}, ["deterministic_objective"], "valid boolean"),
        ("cmaes", {"sigma0": 0.0}, ["sigma0"], "greater than 0"),
        ("cmaes", {"popsize": 0}, ["popsize"], "greater than or equal to 1"),
        ("qmc", {"qmc_type": "lhs"}, ["qmc_type"], "'sobol' or 'halton'"),
        ("nsga2", {"population_size": 1}, ["population_size"], "greater than or equal to 2"),
        ("nsga2", {"crossover": "blend"}, ["crossover"], "'uniform', 'blxalpha', 'sbx'"),
    ],
)
def test_option_values_are_type_checked_before_building(
    name: str, options: dict[str, Any], loc: list[str], text: str, space: dict[str, ParamSpec]
) -> None:
    spec = SamplerSpec.model_validate({"name": name, "options": options})
    error = spec_error(build_sampler, spec, space, MIN)
    assert error.details[0]["loc"] == ["sampler", "options", *loc]
    assert text in error.details[0]["msg"]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("tpe", {"prior_weight": float("nan")}),
        ("nsga2", {"swapping_prob": float("nan")}),
        ("nsga2", {"crossover_prob": float("inf")}),
    ],
)
def test_non_finite_option_values_are_refused_with_the_spec(
    name: str, options: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError, match="numbers must be finite") as raised:
        SamplerSpec.model_validate({"name": name, "options": options})
    assert raised.value.errors()[0]["loc"] == ("options",)


@pytest.mark.parametrize(
    ("name", "options", "text"),
    [
        ("tpe", {"group": True, "multivariate": False}, "``group`` option can only be enabled"),
        ("cmaes", {"use_separable_cma": True, "lr_adapt": True}, "It is prohibited"),
        ("nsga2", {"crossover": "undx", "population_size": 2}, "greater than or equal to 3"),
        ("nsga2", {"mutation_prob": 1.5}, "`mutation_prob` must be None or a float"),
    ],
)
def test_optuna_constructor_refusals_become_spec_errors(
    name: str, options: dict[str, Any], text: str, space: dict[str, ParamSpec]
) -> None:
    spec = SamplerSpec.model_validate({"name": name, "options": options})
    loc, msg = only_detail(spec_error(build_sampler, spec, space, MIN))
    assert loc == ["sampler", "options"]
    assert msg.startswith("Optuna refused the sampler options: ") and text in msg


def _built_with(monkeypatch: pytest.MonkeyPatch, cls: type[BaseSampler]) -> dict[str, Any]:
    """The keyword arguments ``cls`` is built with from now on (a spy on its constructor)."""
    received: dict[str, Any] = {}
    original = cls.__init__

    @functools.wraps(original)
    def spy(self: BaseSampler, **kwargs: Any) -> None:
        received.update(kwargs)
        original(self, **kwargs)

    monkeypatch.setattr(cls, "__init__", spy)
    return received


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("uniform", optuna.samplers.nsgaii.UniformCrossover),
        ("blxalpha", optuna.samplers.nsgaii.BLXAlphaCrossover),
        ("sbx", optuna.samplers.nsgaii.SBXCrossover),
        ("vsbx", optuna.samplers.nsgaii.VSBXCrossover),
        ("undx", optuna.samplers.nsgaii.UNDXCrossover),
        ("spx", optuna.samplers.nsgaii.SPXCrossover),
    ],
)
def test_nsga2_crossover_is_given_by_name(
    name: str, cls: type, space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    received = _built_with(monkeypatch, optuna.samplers.NSGAIISampler)
    spec = SamplerSpec(name="nsga2", options={"crossover": name, "population_size": 4})
    build_sampler(spec, space, TWO)
    assert type(received["crossover"]) is cls


def test_nsga2_uniform_crossover_uses_the_swapping_prob(
    space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    received = _built_with(monkeypatch, optuna.samplers.NSGAIISampler)
    spec = SamplerSpec(name="nsga2", options={"crossover": "uniform", "swapping_prob": 0.2})
    build_sampler(spec, space, TWO)
    crossover = received["crossover"]
    assert isinstance(crossover, optuna.samplers.nsgaii.UniformCrossover)
    # The swapping probability shows in what the crossover does: with 0.2, about a fifth of
    # the genes come from the first parent and the rest from the second.
    rng = np.random.RandomState(0)
    parents = np.array([[0.0] * 1000, [1.0] * 1000])
    bounds = np.array([[0.0, 1.0]] * 1000)
    child = crossover.crossover(parents, rng, optuna.create_study(directions=TWO), bounds)
    assert 0.75 < child.mean() < 0.85
    bad = SamplerSpec(name="nsga2", options={"crossover": "uniform", "swapping_prob": 2.0})
    loc, msg = only_detail(spec_error(build_sampler, bad, space, TWO))
    assert loc == ["sampler", "options", "crossover"] and "swapping_prob" in msg


def test_cmaes_refuses_several_objectives(space: dict[str, ParamSpec]) -> None:
    loc, msg = only_detail(spec_error(build_sampler, SamplerSpec(name="cmaes"), space, TWO))
    assert loc == ["sampler", "name"]
    assert "'cmaes' sampler supports single-objective studies only" in msg


@pytest.mark.filterwarnings("ignore:`x0` has been deprecated:FutureWarning")
def test_cmaes_x0_needs_a_valid_start_for_every_numeric_param(
    space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    received = _built_with(monkeypatch, optuna.samplers.CmaEsSampler)
    good = {"lr": 0.01, "dropout": 0.2, "layers": 3}
    build_sampler(SamplerSpec(name="cmaes", options={"x0": good}), space, MIN)
    assert received["x0"] == good
    bad = {"lr": 0.5, "layers": 3.5, "width": 16}
    error = spec_error(build_sampler, SamplerSpec(name="cmaes", options={"x0": bad}), space, MIN)
    assert sorted(map(str, locs(error))) == sorted(
        str(["sampler", "options", "x0", name]) for name in ("dropout", "lr", "layers", "width")
    )


def test_gp_needs_torch_in_the_server(
    space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    loc, msg = only_detail(spec_error(build_sampler, SamplerSpec(name="gp"), space, MIN))
    assert loc == ["sampler", "name"]
    assert "install the server's `gp` extra" in msg


def test_every_constructor_option_is_either_settable_or_refused() -> None:
    """Guards against Optuna upgrades: a new option must be classified, never half-checked."""
    for name in SAMPLER_NAMES:
        rules = sampler_rules(name)
        for option in settable_options(rules):
            assert option_adapter(rules, option) is not None, (name, option)
    for pruner in PRUNER_NAMES:
        rules = pruner_rules(pruner)
        for option in settable_options(rules):
            assert option_adapter(rules, option) is not None, (pruner, option)


# --- pruners ------------------------------------------------------------------------------


VALID_PRUNERS = [
    ("none", {}, optuna.pruners.NopPruner),
    ("median", {"n_startup_trials": 3, "n_warmup_steps": 2}, optuna.pruners.MedianPruner),
    ("percentile", {"percentile": 25.0}, optuna.pruners.PercentilePruner),
    ("successive_halving", {"min_resource": 2}, optuna.pruners.SuccessiveHalvingPruner),
    ("hyperband", {"max_resource": 27}, optuna.pruners.HyperbandPruner),
    ("threshold", {"lower": 0.0}, optuna.pruners.ThresholdPruner),
    ("wilcoxon", {"p_threshold": 0.05}, optuna.pruners.WilcoxonPruner),
    ("asha", {"max_resource": 9, "reduction_factor": 3}, optuna.pruners.NopPruner),  # our own
]


def test_pruner_names_are_the_documented_ones() -> None:
    assert set(PRUNER_NAMES) == {name for name, _, _ in VALID_PRUNERS}
    assert PrunerSpec().name == "none"
    with pytest.raises(ValidationError) as info:
        PrunerSpec.model_validate({"name": "bohb"})
    assert "'successive_halving'" in info.value.errors()[0]["msg"]


@pytest.mark.parametrize(("name", "options", "cls"), VALID_PRUNERS)
def test_each_pruner_name_builds_its_optuna_class(
    name: str, options: dict[str, Any], cls: type
) -> None:
    pruner = build_pruner(PrunerSpec.model_validate({"name": name, "options": options}), MIN)
    assert type(pruner) is cls


@pytest.mark.parametrize(
    ("name", "options", "loc", "text"),
    [
        ("none", {"x": 1}, ["options", "x"], "pruner 'none' takes no options"),
        ("median", {"n_startup": 1}, ["options", "n_startup"], "allowed options: n_startup"),
        ("percentile", {}, ["options", "percentile"], "option 'percentile' is required"),
        ("percentile", {"percentile": 150}, ["options"], "Percentile must be between 0 and 100"),
        ("threshold", {}, ["options"], "Either lower or upper must be specified"),
        ("threshold", {"lower": 1, "upper": 0}, ["options"], "lower should be smaller"),
        ("median", {"n_startup_trials": -1}, ["options"], "cannot be negative"),
        ("hyperband", {"min_resource": 0}, ["options", "min_resource"], "greater than or equal"),
        ("hyperband", {"reduction_factor": 1}, ["options", "reduction_factor"], "or equal to 2"),
        (
            "hyperband",
            {"max_resource": "max"},
            ["options", "max_resource"],
            "Input should be a valid integer; or Input should be 'auto'",
        ),
        (
            "hyperband",
            {"min_resource": 5, "max_resource": 2},
            ["options", "max_resource"],
            "max_resource (2) must be >= min_resource (5)",
        ),
        ("successive_halving", {"min_resource": 1.5}, ["options", "min_resource"], "; or "),
        ("successive_halving", {"min_resource": "x"}, ["options"], "must be either"),
        ("wilcoxon", {"p_threshold": "low"}, ["options", "p_threshold"], "valid number"),
    ],
)
def test_pruner_refusals(name: str, options: dict[str, Any], loc: list[str], text: str) -> None:
    spec = PrunerSpec.model_validate({"name": name, "options": options})
    error = spec_error(build_pruner, spec, MIN)
    assert error.details[0]["loc"] == ["pruner", *loc]
    assert text in error.details[0]["msg"]


@pytest.mark.parametrize(("name", "options", "cls"), VALID_PRUNERS[1:])
def test_pruners_other_than_none_refuse_several_objectives(
    name: str, options: dict[str, Any], cls: type
) -> None:
    spec = PrunerSpec.model_validate({"name": name, "options": options})
    loc, msg = only_detail(spec_error(build_pruner, spec, TWO))
    assert loc == ["pruner", "name"]
    assert "cannot report intermediate values for multi-objective studies" in msg


def test_the_none_pruner_accepts_several_objectives() -> None:
    assert isinstance(build_pruner(PrunerSpec(), TWO), optuna.pruners.NopPruner)


# --- check_study --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_check_study_accepts_every_sampler_single_objective(
    name: str, space: dict[str, ParamSpec], finite_space: dict[str, ParamSpec]
) -> None:
    used = finite_space if name == "grid" else space
    check_study(SamplerSpec.model_validate({"name": name}), PrunerSpec(), used, MIN, 10)


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "gp", "qmc", "grid"])
def test_check_study_accepts_multi_objective_samplers(
    name: str, space: dict[str, ParamSpec], finite_space: dict[str, ParamSpec]
) -> None:
    used = finite_space if name == "grid" else space
    check_study(SamplerSpec.model_validate({"name": name}), PrunerSpec(), used, TWO, None)


def test_check_study_accepts_tpe_multi_objective_with_options(
    space: dict[str, ParamSpec],
) -> None:
    spec = SamplerSpec(name="tpe", options={"multivariate": True, "n_startup_trials": 1})
    check_study(spec, PrunerSpec(), space, ["maximize", "maximize", "minimize"], 100)


@pytest.mark.parametrize(("name", "options", "cls"), VALID_PRUNERS)
def test_check_study_accepts_every_pruner(
    name: str, options: dict[str, Any], cls: type, space: dict[str, ParamSpec]
) -> None:
    spec = PrunerSpec.model_validate({"name": name, "options": options})
    check_study(SamplerSpec(), spec, space, ["maximize"], None)


def test_check_study_refuses_cmaes_and_pruners_with_several_objectives(
    space: dict[str, ParamSpec],
) -> None:
    cmaes = spec_error(check_study, SamplerSpec(name="cmaes"), PrunerSpec(), space, TWO, None)
    assert locs(cmaes) == [["sampler", "name"]]
    pruned = spec_error(check_study, SamplerSpec(), PrunerSpec(name="median"), space, TWO, None)
    assert locs(pruned) == [["pruner", "name"]]


def test_check_study_refuses_a_grid_on_a_continuous_space(space: dict[str, ParamSpec]) -> None:
    error = spec_error(check_study, SamplerSpec(name="grid"), PrunerSpec(), space, MIN, None)
    assert "give float param 'lr' a step" in error.message


def test_check_study_refuses_more_trials_than_grid_points(
    finite_space: dict[str, ParamSpec],
) -> None:
    check_study(SamplerSpec(name="grid"), PrunerSpec(), finite_space, MIN, 18)
    loc, msg = only_detail(
        spec_error(check_study, SamplerSpec(name="grid"), PrunerSpec(), finite_space, MIN, 19)
    )
    assert loc == ["max_trials"]
    assert msg.startswith("max_trials (19) is larger than the grid (18 points)")


def test_check_study_counts_a_given_grid_for_the_budget(space: dict[str, ParamSpec]) -> None:
    grid = {"lr": [0.01], "dropout": [0.1, 0.2], "layers": [1], "width": [16]}
    spec = SamplerSpec(name="grid", options={"search_space": grid})
    check_study(spec, PrunerSpec(), space, MIN, 2)
    with pytest.raises(SpecError, match="larger than the grid"):
        check_study(spec, PrunerSpec(), space, MIN, 3)


def test_check_study_accepts_a_single_point_grid() -> None:
    space = parse_search_space({"n": {"type": "int", "low": 4, "high": 4}})
    check_study(SamplerSpec(name="grid"), PrunerSpec(), space, MIN, 1)


@pytest.mark.parametrize(
    ("directions", "max_trials", "loc", "text"),
    [
        ([], None, ["directions"], "at least one direction"),
        (["minimise"], None, ["directions", 0], "'minimize' or 'maximize'"),
        (MIN, 0, ["max_trials"], "positive integer"),
        (MIN, True, ["max_trials"], "positive integer"),
    ],
)
def test_check_study_refuses_bad_directions_and_budgets(
    directions: list[Any], max_trials: Any, loc: list[Any], text: str, space: dict[str, ParamSpec]
) -> None:
    error = spec_error(check_study, SamplerSpec(), PrunerSpec(), space, directions, max_trials)
    assert error.details[0]["loc"] == loc and text in error.details[0]["msg"]


def test_check_study_validates_the_space_itself() -> None:
    inverted = {"x": {"type": "float", "low": 2.0, "high": 1.0}}
    error = spec_error(check_study, SamplerSpec(), PrunerSpec(), inverted, MIN, None)
    assert [loc[:2] for loc in locs(error)] == [["search_space", "x"]]


class _RefusingSampler(optuna.samplers.RandomSampler):
    def sample_independent(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("this sampler refuses categorical parameters")


class _BrokenSampler(optuna.samplers.RandomSampler):
    def sample_independent(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")


def test_dry_run_turns_optuna_refusals_into_spec_errors(
    space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study_check, "build_sampler", lambda *a: _RefusingSampler())
    loc, msg = only_detail(spec_error(check_study, SamplerSpec(), PrunerSpec(), space, MIN, 5))
    assert loc == ["sampler"]
    assert msg == (
        "Optuna cannot run this study with this sampler: "
        "this sampler refuses categorical parameters"
    )


def test_dry_run_lets_bugs_propagate(
    space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study_check, "build_sampler", lambda *a: _BrokenSampler())
    with pytest.raises(KeyError):
        check_study(SamplerSpec(), PrunerSpec(), space, MIN, 5)


def test_dry_run_turns_pruner_refusals_into_spec_errors(
    space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Refusing(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
            raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(study_check, "build_pruner", lambda *a: Refusing())
    loc, msg = only_detail(spec_error(check_study, SamplerSpec(), PrunerSpec(), space, MIN, 5))
    assert loc == ["pruner"]
    assert msg == "Optuna cannot run this study with this pruner: division by zero"


def test_dry_run_asks_the_pruner_about_a_reported_value(
    space: dict[str, ParamSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[FrozenTrial] = []

    class Recording(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
            seen.append(trial)
            return False

    monkeypatch.setattr(study_check, "build_pruner", lambda *a: Recording())
    check_study(SamplerSpec(), PrunerSpec(), space, MIN, None)
    assert len(seen) == 1 and seen[0].intermediate_values == {0: 1.0}


def test_dry_run_is_silent(space: dict[str, ParamSpec], caplog: pytest.LogCaptureFixture) -> None:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level(logging.DEBUG, logger="optuna"):
            optuna.create_study()  # control: Optuna does log here ...
            assert any(r.name.startswith("optuna") for r in caplog.records)
            caplog.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check_study(SamplerSpec(name="qmc"), PrunerSpec(), space, MIN, None)
                check_study(SamplerSpec(name="cmaes"), PrunerSpec(), space, MIN, None)
            assert [r for r in caplog.records if r.name.startswith("optuna")] == []
            assert [w for w in caught if issubclass(w.category, ExperimentalWarning)] == []
            with warnings.catch_warnings(record=True) as control:
                warnings.simplefilter("always")
                build_sampler(SamplerSpec(name="qmc"), space, MIN)  # ... and warns here.
            assert any(issubclass(w.category, ExperimentalWarning) for w in control)
    finally:
        optuna.logging.disable_propagation()
        optuna.logging.set_verbosity(verbosity)


def test_spec_error_is_a_422() -> None:
    error = spec_error(parse_search_space, {"x": {"type": "int", "low": 3, "high": 1}})
    assert error.status_code == 422 and error.code == "invalid_spec"
