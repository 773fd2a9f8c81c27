"""What a grid sampler visits: the values of every parameter, from the space or the client.

Optuna's :class:`~optuna.samplers.GridSampler` materializes the cartesian product of all
values when it is built, so grids are capped at :data:`MAX_GRID_POINTS` (counted before
anything is enumerated). Pure functions; thread-safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from service.spec.details import Detail, detail, fail, raise_details
from service.spec.search_space import (
    InvalidValue,
    ParamSpec,
    grid_count,
    grid_size,
    grid_values,
    normalize_value,
)

MAX_GRID_POINTS = 100_000
"""The largest grid the grid sampler accepts."""

Space = Mapping[str, ParamSpec]


def grid_points(given: Mapping[str, Any] | None, space: Space) -> dict[str, list[Any]]:
    """The values the grid sampler visits per parameter.

    ``given`` (the ``search_space`` option, already type-checked) must list distinct, valid
    values for exactly the parameters of ``space``; when it is ``None`` every parameter
    contributes all its values, which needs a finite space. Raises SpecError, also when the
    grid has more than :data:`MAX_GRID_POINTS` points, and for a conditional space (Optuna's
    grid sampler visits a fixed grid: every parameter in every trial).
    """
    raise_details(
        [
            detail(
                ["search_space", name, "when"],
                "the grid sampler needs every parameter in every trial (Optuna's GridSampler "
                "visits a fixed grid); drop `when`, or use 'tpe' or 'random'",
            )
            for name, spec in space.items()
            if spec.when
        ]
    )
    if given is None:
        return _default_grid(space)
    points = _given_grid(given, space)
    size = math.prod(len(values) for values in points.values())
    _check_grid_size(size, ["sampler", "options", "search_space"])
    return points


def _check_grid_size(size: int, loc: list[str | int]) -> None:
    if size > MAX_GRID_POINTS:
        message = f"the grid has {size} points; the grid sampler supports at most {MAX_GRID_POINTS}"
        raise fail(loc, message)


def _default_grid(space: Space) -> dict[str, list[Any]]:
    raise_details(
        [
            detail(
                ["search_space", name, "step"],
                f"grid sampler needs a finite space: give float param {name!r} a step",
            )
            for name, spec in space.items()
            if grid_count(spec) is None
        ]
    )
    _check_grid_size(grid_size(space) or 0, ["search_space"])
    return {name: grid_values(spec) for name, spec in space.items()}


def _given_grid(given: Mapping[str, Any], space: Space) -> dict[str, list[Any]]:
    loc = ["sampler", "options", "search_space"]
    details = [
        detail([*loc, n], "the grid must list values for it") for n in space if n not in given
    ]
    points: dict[str, list[Any]] = {}
    for name, values in given.items():
        if name not in space:
            details.append(detail([*loc, name], "unknown parameter"))
            continue
        problems, points[name] = _grid_axis(space[name], values, [*loc, name])
        details += problems
    raise_details(details)
    return points


def _grid_axis(
    spec: ParamSpec, values: list[Any], loc: list[str | int]
) -> tuple[list[Detail], list[Any]]:
    if not values:
        return [detail(loc, "at least one value is required")], []
    details: list[Detail] = []
    axis: list[Any] = []
    seen: set[tuple[type, Any]] = set()
    for index, value in enumerate(values):
        try:
            normalized = normalize_value(spec, value)
        except InvalidValue as exc:
            details.append(detail([*loc, index], str(exc)))
            continue
        key = (type(normalized), normalized)
        if key in seen:
            details.append(detail([*loc, index], "values must be distinct"))
        seen.add(key)
        axis.append(normalized)
    return details, axis
