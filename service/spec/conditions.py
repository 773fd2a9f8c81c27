"""Conditional search spaces: which parameters a trial holds, given the values of others.

A parameter with ``when`` exists only when every parent it names exists and has a value its
condition accepts: one of the listed values for a categorical parent, a value in the range
(``min``/``max``, both included) for an int or float parent. A parameter whose parent is absent
is absent too. A trial holds exactly its active parameters, so samplers, Optuna's tables and
exports see only those.

:func:`parse_search_space` refuses, each with a detail located at
``["search_space", name, "when", parent]`` (or ``[..., "when"]``), a parameter that names an
unknown parent or itself, conditions that form a cycle, a condition of the wrong form for its
parent (a list for an int or float parent, a range for a categorical one), values that are not
among a categorical parent's choices, a range that holds no value of its parent, and conditions
that can never hold together (its own and its ancestors' conditions exclude each other).

:class:`ActiveSpace` is a validated space in sampling order (parents first, otherwise the
space's own order, so an unconditional space is suggested exactly in the order it was written):
it suggests a trial's parameters and tells which ones a set of values makes active.
:func:`check_params` checks a configuration a user gives (an enqueued trial). Pure and
thread-safe; an :class:`ActiveSpace` is immutable once built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from service.spec.details import Detail, Loc, detail, raise_details
from service.spec.search_space import (
    STEP_TOLERANCE,
    CategoricalParam,
    Condition,
    FloatParam,
    IntParam,
    InvalidValue,
    ParamSpec,
    RangeCondition,
    check_values,
    choice_index,
    show_json,
    to_distribution,
    validate_params,
)

Space = Mapping[str, ParamSpec]


def parse_search_space(raw: object, loc: Loc = ("search_space",)) -> dict[str, ParamSpec]:
    """Validate decoded JSON (or a dict of param models) into a search space.

    Each parameter is checked first (:func:`~service.spec.search_space.validate_params`), then
    the conditions between them (see the module docstring). Raises
    :class:`~service.errors.SpecError` with one detail per problem, each located under ``loc``.
    Cheap on an already validated space.
    """
    space = validate_params(raw, loc)
    raise_details(condition_details(space, loc))
    return space


def is_conditional(space: Space) -> bool:
    """Whether some parameter of ``space`` has a ``when``."""
    return any(spec.when for spec in space.values())


# ---- checking a space's conditions ----


def condition_details(space: Space, loc: Loc = ("search_space",)) -> list[Detail]:
    """Every problem of the space's conditions (empty when they are sound)."""
    details = [
        problem
        for name, spec in space.items()
        for parent, condition in (spec.when or {}).items()
        for problem in _form_problems(space, name, parent, condition, [*loc, name, "when", parent])
    ]
    if details:
        return details
    order = _sampling_order(space)
    if isinstance(order, _Cycle):
        cycle = " -> ".join(repr(name) for name in order.names)
        message = f"conditions form a cycle (each depends on the next): {cycle}"
        return [detail([*loc, order.names[0], "when", order.names[1]], message)]
    return _never_active(space, order, loc)


def _form_problems(
    space: Space, name: str, parent: str, condition: Condition, loc: list[str | int]
) -> list[Detail]:
    """What is wrong with one condition taken alone."""
    if parent == name:
        return [detail(loc, "a parameter cannot depend on itself")]
    spec = space.get(parent)
    if spec is None:
        return [
            detail(loc, f"unknown parameter {parent!r}: conditions name parameters of the space")
        ]
    if isinstance(spec, CategoricalParam):
        if isinstance(condition, RangeCondition):
            return [detail(loc, f"{parent!r} is categorical: list the values it must have")]
        return _choice_problems(spec, parent, condition, loc)
    if not isinstance(condition, RangeCondition):
        return [detail(loc, f'{parent!r} is a numeric parameter: give a range {{"min", "max"}}')]
    if not _has_value(spec, _bounds(condition)):
        shown = _show_range(parent, condition)
        return [detail(loc, f"no value of {parent!r} ({_show_domain(spec)}) satisfies {shown}")]
    return []


def _choice_problems(
    spec: CategoricalParam, parent: str, values: list[Any], loc: list[str | int]
) -> list[Detail]:
    details: list[Detail] = []
    for index, value in enumerate(values):
        try:
            choice_index(spec, value)
        except InvalidValue:
            message = f"{show_json(value)} is not one of the choices of {parent!r}"
            details.append(detail([*loc, index], f"{message} {show_json(spec.choices)}"))
    return details


def _show_range(parent: str, condition: RangeCondition) -> str:
    low = "" if condition.min is None else f"{condition.min} <= "
    high = "" if condition.max is None else f" <= {condition.max}"
    return f"{low}{parent}{high}"


def _show_domain(spec: FloatParam | IntParam) -> str:
    step = f", step {spec.step}" if spec.step not in (None, 1) else ""
    return f"{spec.low} to {spec.high}{step}"


Interval = tuple[float, float]
Allowed = frozenset[int] | Interval
"""What a condition leaves of a parent: choice indices (categorical) or an interval."""


def _bounds(condition: RangeCondition) -> Interval:
    low = -math.inf if condition.min is None else float(condition.min)
    high = math.inf if condition.max is None else float(condition.max)
    return low, high


def _has_value(spec: FloatParam | IntParam, interval: Interval) -> bool:
    """Whether some value of the parameter lies in ``interval``."""
    low, high = max(interval[0], spec.low), min(interval[1], spec.high)
    if low > high:
        return False
    if spec.step is None:
        return True
    steps = math.ceil((low - spec.low) / spec.step - STEP_TOLERANCE)
    return spec.low + steps * spec.step <= high + STEP_TOLERANCE * spec.step


def _allowed(spec: ParamSpec, condition: Condition) -> Allowed:
    if isinstance(spec, CategoricalParam):
        assert isinstance(condition, list)
        return frozenset(choice_index(spec, value) for value in condition)
    assert isinstance(condition, RangeCondition)
    return _bounds(condition)


def _intersect(a: Allowed, b: Allowed) -> Allowed:
    if isinstance(a, frozenset):
        assert isinstance(b, frozenset)
        return a & b
    assert isinstance(b, tuple)
    return max(a[0], b[0]), min(a[1], b[1])


def _never_active(space: Space, order: Sequence[str], loc: Loc) -> list[Detail]:
    """A detail for each parameter whose conditions, with its ancestors', cannot all hold.

    Conditions constrain one parent each, so they hold together exactly when, for every
    parameter they constrain, the constraints on it leave it some value.
    """
    needs: dict[str, dict[str, Allowed]] = {}
    never: set[str] = set()
    details: list[Detail] = []
    for name in order:
        when = space[name].when or {}
        if any(parent in never for parent in when):  # reported at the ancestor
            never.add(name)
            continue
        merged: dict[str, Allowed] = {}
        requirements = [item for parent in when for item in needs[parent].items()]
        requirements += [(p, _allowed(space[p], condition)) for p, condition in when.items()]
        for parent, allowed in requirements:
            merged[parent] = _intersect(merged[parent], allowed) if parent in merged else allowed
        needs[name] = merged
        empty = [p for p, allowed in merged.items() if not _possible(space[p], allowed)]
        if empty:
            never.add(name)
            message = (
                f"{name!r} can never exist: its conditions and those of the parameters it "
                f"depends on exclude each other for {empty[0]!r}"
            )
            details.append(detail([*loc, name, "when"], message))
    return details


def _possible(spec: ParamSpec, allowed: Allowed) -> bool:
    if isinstance(spec, CategoricalParam):
        return bool(allowed)
    assert isinstance(allowed, tuple)
    return _has_value(spec, allowed)


@dataclass(frozen=True)
class _Cycle:
    names: list[str]
    """The parameters around the cycle, each conditioned on the next; the first one again at
    the end."""


def _sampling_order(space: Space) -> list[str] | _Cycle:
    """Parents before children, otherwise the space's order; or a cycle of conditions."""
    placed: list[str] = []
    done: set[str] = set()
    pending = list(space)
    while pending:
        waiting: list[str] = []
        for name in pending:
            if all(parent in done for parent in space[name].when or {}):
                placed.append(name)
                done.add(name)
            else:
                waiting.append(name)
        if len(waiting) == len(pending):
            return _cycle_among(space, waiting)
        pending = waiting
    return placed


def _cycle_among(space: Space, waiting: list[str]) -> _Cycle:
    """Each waiting parameter waits for a waiting parent: follow parents until one repeats."""
    left = set(waiting)
    path = [waiting[0]]
    while True:
        parent = next(p for p in space[path[-1]].when or {} if p in left)
        if parent in path:
            start = path.index(parent)
            return _Cycle([*path[start:], parent])
        path.append(parent)


# ---- which parameters a trial holds ----


@dataclass(frozen=True)
class _Test:
    parent: str
    spec: ParamSpec
    allowed: Allowed

    def holds(self, values: Mapping[str, Any]) -> bool:
        if self.parent not in values:
            return False
        value = values[self.parent]
        if isinstance(self.spec, CategoricalParam):
            assert isinstance(self.allowed, frozenset)
            try:
                return choice_index(self.spec, value) in self.allowed
            except InvalidValue:
                return False
        assert isinstance(self.allowed, tuple)
        low, high = self.allowed
        return isinstance(value, int | float) and low <= value <= high


class ActiveSpace:
    """A validated search space in sampling order, and which of its parameters exist.

    ``space`` must have passed :func:`parse_search_space`. ``order`` lists every parameter,
    parents before children; ``distributions`` are Optuna's, keyed in that order.
    """

    def __init__(self, space: Space) -> None:
        order = _sampling_order(space)
        if isinstance(order, _Cycle):
            raise ValueError("the space's conditions form a cycle (parse it first)")
        self.order: list[str] = order
        self.distributions: dict[str, BaseDistribution] = {
            name: to_distribution(space[name]) for name in order
        }
        self.conditional = is_conditional(space)
        self._tests = {
            name: [
                _Test(parent, space[parent], _allowed(space[parent], condition))
                for parent, condition in (space[name].when or {}).items()
            ]
            for name in order
        }

    def exists(self, name: str, values: Mapping[str, Any]) -> bool:
        """Whether ``name`` exists when its parents have ``values`` (an absent parent: no)."""
        return all(test.holds(values) for test in self._tests[name])

    def active(self, values: Mapping[str, Any]) -> list[str]:
        """The parameters a trial holds when it takes ``values`` (inactive ones are ignored;
        a missing active parameter makes its own children inactive), in sampling order."""
        seen: dict[str, Any] = {}
        names: list[str] = []
        for name in self.order:
            if self.exists(name, seen):
                names.append(name)
                if name in values:
                    seen[name] = values[name]
        return names

    def incomplete(self, params: Mapping[str, Any]) -> bool:
        """Whether some parameter that ``params`` make active is missing from them."""
        return any(name not in params for name in self.active(params))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest the trial's active parameters, parents first; fixed or already suggested
        values are kept (Optuna's ``suggest_*`` returns them)."""
        values: dict[str, Any] = {}
        for name in self.order:
            if self.exists(name, values):
                values[name] = _suggest(trial, name, self.distributions[name])
        return values


def _suggest(trial: optuna.Trial, name: str, distribution: BaseDistribution) -> Any:
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    raise TypeError(f"unsupported distribution {distribution!r}")  # pragma: no cover


# ---- configurations given by users ----


def check_params(space: Space, params: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validate user-supplied values (e.g. a configuration to enqueue) against ``space``.

    Refuses unknown names and every value
    :func:`~service.spec.search_space.normalize_value` refuses; a conditional parameter given
    without its parents, or with a parent whose value makes it absent. Unless ``partial``,
    every parameter the given values make active must be given. Raises
    :class:`~service.errors.SpecError` listing every problem (``loc`` is ``["params", name]``);
    otherwise returns the normalized values. Missing active parameters of a partial
    configuration are left to the sampler.
    """
    values = check_values(space, params)
    details = [
        problem
        for name in values
        for parent, condition in (space[name].when or {}).items()
        for problem in _given_problems(space, values, name, parent, condition)
    ]
    if not partial and not details:
        missing = [n for n in ActiveSpace(space).active(values) if n not in values]
        details = [detail(["params", n], "a value is required") for n in missing]
    raise_details(details)
    return values


def _given_problems(
    space: Space, values: Mapping[str, Any], name: str, parent: str, condition: Condition
) -> list[Detail]:
    needed = _show_condition(parent, condition)
    if parent not in values:
        return [detail(["params", name], f"{name!r} exists only when {needed}: give {parent!r}")]
    if not _Test(parent, space[parent], _allowed(space[parent], condition)).holds(values):
        given = f"{parent}={show_json(values[parent])}"
        message = f"{name!r} does not exist when {given}: it exists only when {needed}"
        return [detail(["params", name], message)]
    return []


def _show_condition(parent: str, condition: Condition) -> str:
    if isinstance(condition, RangeCondition):
        return _show_range(parent, condition)
    return f"{parent} is one of {show_json(condition)}"
