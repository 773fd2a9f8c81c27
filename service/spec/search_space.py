"""A study's search space: what clients send, what Optuna gets, what may be enqueued.

JSON shapes (clients depend on these names)::

    {"type": "float", "low": 1e-5, "high": 0.1, "log": true, "step": null}
    {"type": "int", "low": 1, "high": 6, "log": false, "step": 1}
    {"type": "categorical", "choices": [16, 32, "a", true, 0.5]}
    {"type": "float", "low": 0.0, "high": 0.99, "when": {"optimizer": ["sgd"]}}
    {"type": "int", "low": 16, "high": 1024, "when": {"n_layers": {"min": 3}}}

Any parameter may carry ``when``: the values of other parameters under which it exists (see
:mod:`service.spec.conditions`, which checks conditions across the space and decides which
parameters a trial holds). This module owns one parameter at a time.

Contract: every space these models accept is accepted by Optuna's distributions without a
warning or an adjustment, so what the user wrote is exactly what is sampled. In particular we
refuse, where Optuna would silently lower ``high``, a range that is not a whole number of
steps, and choices that Optuna cannot tell apart (``1``, ``1.0`` and ``true`` are equal in
Python, so Optuna would map them to the same index).

Validation of each parameter happens in pydantic (FastAPI validates a model typed
:data:`SearchSpace` parameter by parameter); :func:`validate_params` does the same for raw
data and raises :class:`~service.errors.SpecError` with one detail per problem. What spans
parameters (``when``) is checked by :func:`service.spec.conditions.parse_search_space`.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Annotated, Any, Literal, Self

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.spec.details import (
    Detail,
    Loc,
    detail,
    raise_details,
    rule_error,
    spec_error,
    validation_details,
)

MAX_PARAMS = 1000
MAX_NAME_LENGTH = 512  # Optuna's param_name column
MAX_CHOICES = 1000
MAX_CHOICE_LENGTH = 512
# Optuna stores every parameter value as a float; beyond 2**53 integers are no longer exact.
MAX_ABS_INT = 2**53
# Nor can a float parameter's grid points be told apart beyond 2**53 steps.
MAX_FLOAT_STEPS = 2**53
PARAM_TYPES = ("float", "int", "categorical")
# A stepped float value is on its grid when within this many steps of low + k * step (Optuna's
# FrozenTrial accepts the same values, so whatever is accepted here Optuna takes as is).
STEP_TOLERANCE = 1e-8

FiniteFloat = Annotated[float, Strict(), Field(allow_inf_nan=False)]
ExactInt = Annotated[int, Strict(), Field(ge=-MAX_ABS_INT, le=MAX_ABS_INT)]


def _one_choice(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Report a bad choice once, instead of once per member of the union."""
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "choice_type", "a choice must be a string, a finite number or a boolean"
        ) from None


Choice = Annotated[
    Annotated[bool, Strict()]
    | Annotated[int, Strict()]
    | Annotated[float, Strict(), Field(allow_inf_nan=False)]
    | Annotated[str, Strict()],
    WrapValidator(_one_choice),
]
"""A categorical choice. The strict members keep JSON types exactly: ``true`` stays a bool,
``1`` an int and ``1.0`` a float."""


def _one_bound(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError("bound_type", "a bound must be a finite number") from None


Bound = Annotated[ExactInt | FiniteFloat, WrapValidator(_one_bound)]
"""A range's bound: a JSON number (not a boolean), kept as sent (``3`` stays an int)."""


def _is_none(value: object) -> bool:
    return value is None


class RangeCondition(BaseModel):
    """A numeric parent's values, ``min <= value <= max`` (either bound may be left out)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: Bound | None = Field(default=None, exclude_if=_is_none)
    max: Bound | None = Field(default=None, exclude_if=_is_none)

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        if self.min is None and self.max is None:
            raise rule_error("min", "a range needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise rule_error("min", f"min ({self.min}) must be <= max ({self.max})")
        return self


def _condition_form(value: Any) -> str | None:
    if isinstance(value, list):
        return "values"
    if isinstance(value, dict | RangeCondition):
        return "range"
    return None


Condition = Annotated[
    Annotated[Annotated[list[Choice], Field(min_length=1, max_length=MAX_CHOICES)], Tag("values")]
    | Annotated[RangeCondition, Tag("range")],
    Discriminator(
        _condition_form,
        custom_error_type="condition_type",
        custom_error_message="a condition is a list of values (categorical parent) or a range "
        '{"min": ..., "max": ...} (int or float parent)',
    ),
]
"""What a parent must be for a conditional parameter to exist: one of the listed values (a
categorical parent) or within a range (an int or float parent)."""

CONDITION_FORMS = ("values", "range")

When = Annotated[dict[str, Condition], Field(min_length=1, max_length=MAX_PARAMS)]
"""Parent name -> condition; every condition must hold (several keys mean all of them)."""


class _Param(BaseModel):
    """A parameter; ``when`` is left out of dumps when absent, so an unconditional space reads
    back exactly as before."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Param):
    """A float in ``[low, high]``; ``log`` samples on a log scale, ``step`` discretizes."""

    type: Literal["float"] = "float"
    low: FiniteFloat
    high: FiniteFloat
    log: Annotated[bool, Strict()] = False
    step: FiniteFloat | None = None
    when: When | None = Field(default=None, exclude_if=_is_none)

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _raise_first(_float_problems(self))
        return self


class IntParam(_Param):
    """An integer in ``[low, high]`` on a grid of ``step``; ``log`` requires ``step == 1``."""

    type: Literal["int"] = "int"
    low: ExactInt
    high: ExactInt
    log: Annotated[bool, Strict()] = False
    step: ExactInt = 1
    when: When | None = Field(default=None, exclude_if=_is_none)

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _raise_first(_int_problems(self))
        return self


class CategoricalParam(_Param):
    """One of ``choices`` (str, int, float or bool, kept exactly as sent; all distinct; at most
    1000, strings of at most 512 characters)."""

    type: Literal["categorical"] = "categorical"
    choices: list[Choice] = Field(max_length=MAX_CHOICES)
    when: When | None = Field(default=None, exclude_if=_is_none)

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        _raise_first(_choice_problems(self.choices))
        return self


def _check_name(name: str) -> str:
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in name):
        raise PydanticCustomError(
            "param_name", "parameter names must not contain control characters"
        )
    return name


ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]
ParamName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(_check_name),
]
SearchSpace = Annotated[dict[ParamName, ParamSpec], Field(max_length=MAX_PARAMS)]
"""Parameter name -> spec; 0 to 1000 parameters, names 1-512 chars without control chars. An
empty (or partly declared) space is open: the trials' other parameters are suggested by the
objective at run time (define-by-run, :mod:`service.trials.suggest`)."""

_SPACE_ADAPTER: TypeAdapter[dict[str, ParamSpec]] = TypeAdapter(SearchSpace)

Problem = tuple[str, str]
"""``(field, message)``: one broken rule of one parameter."""


def _raise_first(problems: list[Problem]) -> None:
    if problems:
        raise rule_error(*problems[0])


def _float_problems(p: FloatParam) -> list[Problem]:
    problems: list[Problem] = []
    if p.step is not None and p.step <= 0:
        problems.append(("step", f"step must be > 0, got {p.step}"))
    if p.log and p.step is not None:
        problems.append(("step", "step cannot be combined with log=true for a float parameter"))
    if p.low > p.high:
        problems.append(("low", f"low ({p.low}) must be <= high ({p.high})"))
    elif not math.isfinite(p.high - p.low):
        problems.append(("high", "high - low must be a finite number"))
    if p.log and p.low <= 0:
        problems.append(("low", f"low must be > 0 when log is true, got {p.low}"))
    if not problems and p.step is not None:
        low, high, step = (Decimal(str(x)) for x in (p.low, p.high, p.step))
        if (high - low) / step > MAX_FLOAT_STEPS:
            problems.append(("step", "step is too small: the range holds more than 2**53 steps"))
        else:
            problems += _step_fit(low, high, step, float)
    return problems


def _int_problems(p: IntParam) -> list[Problem]:
    problems: list[Problem] = []
    if p.step <= 0:
        problems.append(("step", f"step must be > 0, got {p.step}"))
    elif p.log and p.step != 1:
        problems.append(("step", f"step must be 1 when log is true, got {p.step}"))
    if p.low > p.high:
        problems.append(("low", f"low ({p.low}) must be <= high ({p.high})"))
    if p.log and p.low < 1:
        problems.append(("low", f"low must be >= 1 when log is true, got {p.low}"))
    if not problems:
        problems += _step_fit(Decimal(p.low), Decimal(p.high), Decimal(p.step), int)
    return problems


def _step_fit(
    low: Decimal, high: Decimal, step: Decimal, show: Callable[[Decimal], float | int]
) -> list[Problem]:
    """Refuse a range that is not a whole number of steps (Optuna would lower ``high``)."""
    if (high - low) % step == 0:
        return []
    fitted = show(low + (high - low) // step * step)
    return [("high", f"high - low must be a multiple of step ({show(step)}); use high={fitted}")]


def _choice_problems(choices: list[Any]) -> list[Problem]:
    if not choices:
        return [("choices", "at least one choice is required")]
    for index, choice in enumerate(choices):
        if isinstance(choice, str) and (problem := _text_problem(choice)):
            return [("choices", f"choice {index}: {problem}")]
    seen: dict[Any, Any] = {}
    for choice in choices:
        if choice in seen:
            first = seen[choice]
            message = (
                f"choices must be distinct: {show_json(first)} and {show_json(choice)} are equal"
            )
            return [("choices", message)]
        seen[choice] = choice
    return []


def _text_problem(text: str) -> str | None:
    """Why a string choice cannot be stored and shown back as it is, if it cannot."""
    if len(text) > MAX_CHOICE_LENGTH:
        return f"a choice may have at most {MAX_CHOICE_LENGTH} characters"
    if "\x00" in text:
        return "a choice must not contain NUL characters"
    if any(unicodedata.category(char) == "Cs" for char in text):
        return "a choice must be valid Unicode (a lone surrogate is not)"
    return None


def validate_params(raw: object, loc: Loc = ("search_space",)) -> dict[str, ParamSpec]:
    """Validate decoded JSON (or a dict of param models) parameter by parameter.

    Raises :class:`~service.errors.SpecError` with one detail per problem, each located under
    ``loc`` (for example ``["search_space", "lr", "low"]``). Already-built param models are
    accepted as they are, so calling this on a validated space is cheap. Conditions between
    parameters are not checked here (see :func:`service.spec.conditions.parse_search_space`).
    """
    try:
        return _SPACE_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        details = [_without_union_tag(item, len(loc)) for item in validation_details(exc, loc)]
        raise spec_error(details) from exc


def _without_union_tag(item: Detail, depth: int) -> Detail:
    """Drop the steps pydantic adds for a union's member: ``"float"``/``"int"``/
    ``"categorical"`` after the name, ``"values"``/``"range"`` after a condition's parent."""
    loc = list(item["loc"])
    if len(loc) > depth + 1 and loc[depth + 1] in PARAM_TYPES:
        del loc[depth + 1]
    if len(loc) > depth + 3 and loc[depth + 1] == "when" and loc[depth + 3] in CONDITION_FORMS:
        del loc[depth + 3]
    return detail(loc, item["msg"])


def to_distribution(spec: ParamSpec) -> BaseDistribution:
    """The Optuna distribution for one parameter (never adjusted, never warns)."""
    if isinstance(spec, FloatParam):
        return FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    if isinstance(spec, IntParam):
        return IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return CategoricalDistribution(spec.choices)


def param_spec_json(distribution: BaseDistribution) -> dict[str, Any]:
    """An Optuna distribution as a search-space entry (the API's JSON), the inverse of
    :func:`to_distribution`."""
    if isinstance(distribution, CategoricalDistribution):
        return {"type": "categorical", "choices": list(distribution.choices)}
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    spec: dict[str, Any] = {
        "type": "float" if isinstance(distribution, FloatDistribution) else "int",
        "low": distribution.low,
        "high": distribution.high,
        "log": distribution.log,
    }
    if distribution.step is not None:
        spec["step"] = distribution.step
    return spec


def to_distributions(space: Mapping[str, ParamSpec]) -> dict[str, BaseDistribution]:
    """The Optuna distributions of a validated space, keyed by parameter name."""
    return {name: to_distribution(spec) for name, spec in space.items()}


def check_values(space: Mapping[str, ParamSpec], params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate user-supplied values one by one (unknown names, :func:`normalize_value`).

    Returns the normalized values, or raises :class:`~service.errors.SpecError` listing every
    problem (``loc`` is ``["params", name]``). Which parameters must or may be given is
    :func:`service.spec.conditions.check_params`'s business.
    """
    details: list[Detail] = []
    normalized: dict[str, Any] = {}
    for name, value in params.items():
        spec = space.get(name)
        if spec is None:
            details.append(detail(["params", name], _unknown_name(space)))
            continue
        try:
            normalized[name] = normalize_value(spec, value)
        except InvalidValue as exc:
            details.append(detail(["params", name], str(exc)))
    raise_details(details)
    return normalized


def _unknown_name(space: Mapping[str, ParamSpec]) -> str:
    names = sorted(space)
    shown = ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20 else "")
    return f"unknown parameter; the search space has {shown}"


class InvalidValue(ValueError):
    """A parameter value that is not part of its parameter's distribution."""


def normalize_value(spec: ParamSpec, value: Any) -> Any:
    """Check one value against one parameter; return it normalized.

    Floats accept JSON numbers (not booleans) and return ``float``; ints accept JSON
    integers only and return ``int``; both must lie in ``[low, high]`` on the step grid.
    A categorical value must equal one of the choices with the same kind (``true`` does not
    match ``1``); the matching choice itself is returned. Raises :class:`InvalidValue`.
    """
    if isinstance(spec, FloatParam):
        return _normalize_float(spec, value)
    if isinstance(spec, IntParam):
        return _normalize_int(spec, value)
    return _normalize_choice(spec, value)


def _normalize_float(spec: FloatParam, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"expected a number, got {_json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise InvalidValue(f"{value} is outside [{spec.low}, {spec.high}]") from None
    if not math.isfinite(number):
        raise InvalidValue("expected a finite number")
    if not spec.low <= number <= spec.high:
        raise InvalidValue(f"{number} is outside [{spec.low}, {spec.high}]")
    if not _on_grid(spec, number):
        raise InvalidValue(f"{number} is not low + k * step (low={spec.low}, step={spec.step})")
    return number


def _on_grid(spec: FloatParam, number: float) -> bool:
    if spec.step is None:
        return True
    k = (number - spec.low) / spec.step
    return abs(k - round(k)) < STEP_TOLERANCE


def _normalize_int(spec: IntParam, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"expected an integer, got {_json_type(value)}")
    if not spec.low <= value <= spec.high:
        raise InvalidValue(f"{value} is outside [{spec.low}, {spec.high}]")
    if (value - spec.low) % spec.step:
        raise InvalidValue(f"{value} is not low + k * step (low={spec.low}, step={spec.step})")
    return value


def _normalize_choice(spec: CategoricalParam, value: Any) -> Any:
    return spec.choices[choice_index(spec, value)]


def choice_index(spec: CategoricalParam, value: Any) -> int:
    """The index of the choice ``value`` is (same kind: ``true`` is not ``1``), or
    :class:`InvalidValue`."""
    for index, choice in enumerate(spec.choices):
        if isinstance(choice, bool) == isinstance(value, bool) and _same_choice(choice, value):
            return index
    raise InvalidValue(f"{show_json(value)} is not one of the choices {show_json(spec.choices)}")


def _same_choice(choice: Any, value: Any) -> bool:
    if isinstance(choice, str) or isinstance(value, str):
        return type(choice) is type(value) and bool(choice == value)
    return isinstance(value, int | float) and bool(choice == value)


def show_json(value: Any) -> str:
    """``value`` as the client wrote it (JSON), e.g. ``true`` rather than ``True``."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    names = {bool: "a boolean", str: "a string", type(None): "null", list: "an array"}
    return names.get(type(value), type(value).__name__)


def grid_count(spec: ParamSpec) -> int | None:
    """How many values the parameter can take, or ``None`` for a continuous float."""
    if isinstance(spec, CategoricalParam):
        return len(spec.choices)
    if isinstance(spec, IntParam):
        return (spec.high - spec.low) // spec.step + 1
    if spec.step is None:
        return None
    return int((Decimal(str(spec.high)) - Decimal(str(spec.low))) / Decimal(str(spec.step))) + 1


def grid_size(space: Mapping[str, ParamSpec]) -> int | None:
    """Number of points of the full grid; ``None`` when some float has no ``step``.

    Computed arithmetically: a huge grid is counted, never enumerated.
    """
    counts = [grid_count(spec) for spec in space.values()]
    if any(count is None for count in counts):
        return None
    return math.prod(count for count in counts if count is not None)


def grid_values(spec: ParamSpec) -> list[Any]:
    """Every value of a finite parameter, in order (choices as sent; step points exact).

    Raises :class:`ValueError` for a float without ``step`` (callers check
    :func:`grid_count` first).
    """
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    if isinstance(spec, IntParam):
        return list(range(spec.low, spec.high + 1, spec.step))
    if spec.step is None:
        raise ValueError("a float parameter without step has no grid")
    low, step = Decimal(str(spec.low)), Decimal(str(spec.step))
    count = grid_count(spec) or 0
    return [float(low + k * step) for k in range(count)]
