"""Options of an Optuna sampler or pruner, checked against its constructor before building.

A client sends options as JSON (``{"n_startup_trials": 20, "seed": 1}``). Before anything is
built, :func:`check_options` refuses

* a name the constructor does not take (the message lists the ones it does),
* an option that needs a Python object (a callable, another sampler, trials...): those
  cannot travel over the API,
* a value of the wrong type, judged strictly against the constructor's annotation
  (``"abc"`` is not an ``int``, ``true`` is not a ``float``), and any non-finite number,

so a bad value is reported at creation time instead of blowing up at sampling time.
:func:`construct` then builds the object and turns Optuna's own ``ValueError``/``TypeError``
into :class:`~service.errors.SpecError`.

Annotations are read from the constructor (Optuna uses postponed annotations, resolved here
against the constructor's module) once per class and cached; all functions are pure and
thread-safe.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from service.documents import json_document
from service.spec.details import Detail, Loc, detail, fail, raise_details

PYTHON_OBJECT = "cannot be set over the API: it takes a Python object"
MAX_OPTIONS = 64
MAX_OPTIONS_BYTES = 256 * 1024

Options = Annotated[
    dict[str, Any],
    Field(max_length=MAX_OPTIONS, description="constructor options, at most 256 KiB as JSON"),
    json_document(MAX_OPTIONS_BYTES),
]
"""A sampler's or pruner's options as sent: checked for size and storable JSON here, against
the constructor by :func:`check_options`."""

# Stricter types for options Optuna checks only lazily (at sampling time) or not at all.
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""NumPy's seed range; every sampler's ``seed`` option is checked against it."""
_COMMON_HINTS: dict[str, Any] = {"seed": Seed | None}
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True)
class OptionRules:
    """How the options of one registry entry are checked.

    ``target`` is the Optuna class whose ``__init__`` defines the options. ``refused`` maps an
    option to why it cannot be set over the API. ``hints`` replaces the annotation of an
    option whose JSON form differs from its Python form (a crossover given by name) or that
    Optuna checks too late (``n_ei_candidates`` must be at least 1, or sampling fails).
    """

    kind: Literal["sampler", "pruner"]
    name: str
    target: Callable[..., Any]
    refused: Mapping[str, str] = field(default_factory=dict)
    hints: Mapping[str, Any] = field(default_factory=dict)


def settable_options(rules: OptionRules) -> list[str]:
    """The option names a client may set, in constructor order."""
    return [name for name in _parameters(rules.target) if name not in rules.refused]


def check_options(rules: OptionRules, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``options``; return them converted to their annotated types.

    Raises :class:`~service.errors.SpecError` listing every problem, each located at
    ``[kind, "options", name]``.
    """
    details: list[Detail] = []
    checked: dict[str, Any] = {}
    for name, value in options.items():
        problems, converted = _check_option(rules, name, value)
        details += problems
        if not problems:
            checked[name] = converted
    raise_details(details)
    return checked


def _check_option(rules: OptionRules, name: str, value: Any) -> tuple[list[Detail], Any]:
    loc = [rules.kind, "options", name]
    if name in rules.refused:
        return [detail(loc, f"option {name!r} {rules.refused[name]}")], None
    if name not in _parameters(rules.target):
        return [detail(loc, _unknown_option(rules, name))], None
    hint = option_type(rules, name)
    adapter = _adapter(hint)
    if adapter is None:
        return [detail(loc, f"option {name!r} {PYTHON_OBJECT}")], None
    try:
        converted = adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        return _value_details(loc, exc, merge=_is_union(hint)), None
    if not _all_finite(converted):
        return [detail(loc, "numbers must be finite")], None
    return [], converted


def option_type(rules: OptionRules, name: str) -> Any | None:
    """The type option ``name`` is validated against; ``None`` when it cannot be resolved.

    In order: ``rules.hints[name]``, a common hint (``seed``), the constructor's annotation.
    """
    if name in rules.hints:
        return rules.hints[name]
    return _COMMON_HINTS.get(name) or _annotations(rules.target).get(name)


def option_adapter(rules: OptionRules, name: str) -> TypeAdapter[Any] | None:
    """The validator for option ``name``; ``None`` when JSON data cannot express its type."""
    return _adapter(option_type(rules, name))


def _value_details(loc: Loc, exc: ValidationError, *, merge: bool) -> list[Detail]:
    """With ``merge`` (a union type), pydantic reports one error per member, located under
    the member's name (``constrained-int``, ``literal['auto']``): merge them at ``loc``."""
    errors = exc.errors()
    if merge:
        return [detail(loc, "; or ".join(dict.fromkeys(error["msg"] for error in errors)))]
    return [detail([*loc, *error["loc"]], error["msg"]) for error in errors]


def _is_union(hint: Any) -> bool:
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return False
    return len([arg for arg in typing.get_args(hint) if arg is not type(None)]) > 1


def _unknown_option(rules: OptionRules, name: str) -> str:
    allowed = settable_options(rules)
    if not allowed:
        return f"unknown option {name!r}: {rules.kind} {rules.name!r} takes no options"
    listed = ", ".join(allowed)
    return f"unknown option {name!r} for {rules.kind} {rules.name!r}; allowed options: {listed}"


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_all_finite(item) for item in value)
    return True


def check_required(rules: OptionRules, kwargs: Mapping[str, Any]) -> None:
    """Refuse when a constructor argument without a default is missing from ``kwargs``."""
    missing = [name for name, p in _parameters(rules.target).items() if p.default is p.empty]
    raise_details(
        [
            detail([rules.kind, "options", name], f"option {name!r} is required")
            for name in missing
            if name not in kwargs
        ]
    )


def construct(rules: OptionRules, kwargs: Mapping[str, Any]) -> Any:
    """Build ``rules.target(**kwargs)``; Optuna's ``ValueError``/``TypeError`` -> SpecError."""
    check_required(rules, kwargs)
    try:
        return rules.target(**kwargs)
    except (ValueError, TypeError) as exc:
        loc = [rules.kind, "options"]
        raise fail(loc, f"Optuna refused the {rules.kind} options: {exc}") from exc


@functools.cache
def _parameters(target: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword-passable constructor parameters of ``target`` (``self`` excluded)."""
    parameters = inspect.signature(target).parameters
    return {name: p for name, p in parameters.items() if p.kind not in _VARIADIC}


@functools.cache
def _annotations(target: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``target``'s constructor; unresolvable ones are left out.

    Annotations that name types Optuna imports only for type checking (``Callable``,
    ``FrozenTrial``...) cannot be resolved: those options need Python objects anyway.
    """
    init = getattr(target, "__init__", target)
    namespace = getattr(init, "__globals__", {})
    resolved: dict[str, Any] = {}
    for name, parameter in _parameters(target).items():
        hint = _resolve(parameter.annotation, namespace)
        if hint is not None:
            resolved[name] = hint
    return resolved


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any | None:
    if annotation is inspect.Parameter.empty:
        return None
    holder = types.SimpleNamespace(__annotations__={"value": annotation})
    try:
        return typing.get_type_hints(holder, globalns=namespace)["value"]
    except NameError:
        return None


@functools.cache
def _adapter(hint: Any) -> TypeAdapter[Any] | None:
    """A validator for ``hint``, or ``None`` when JSON data cannot express it."""
    if hint is None:
        return None
    try:
        return TypeAdapter(hint)
    except (TypeError, ValueError):
        return None
