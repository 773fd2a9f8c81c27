"""Typed reads of fields from free JSON (task specs and hyperparameters).

Each reader returns the value of ``data[key]`` converted to the asked type, or the ``default``
when the key is absent and a default is given. Anything else raises
:class:`~workers.tasks.base.TaskFailed` with the ``reason`` the caller names, so that a spec
error and a parameter error stay distinguishable. Booleans are never accepted as numbers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any, Final

from workers.tasks.base import TaskFailed

_MISSING: Final = object()


def _lookup(data: Mapping[str, Any], key: str, default: object, reason: str) -> object:
    if key in data:
        return data[key]
    if default is _MISSING:
        raise TaskFailed(reason, f"{key!r} is required")
    return default


def read_int(
    data: Mapping[str, Any],
    key: str,
    *,
    reason: str,
    default: int | object = _MISSING,
    minimum: int | None = None,
) -> int:
    """An integer ``>= minimum``; an integral float such as ``64.0`` is accepted."""
    value = _lookup(data, key, default, reason)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskFailed(reason, f"{key!r} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise TaskFailed(reason, f"{key!r} must be >= {minimum}, got {value}")
    return value


def read_float(
    data: Mapping[str, Any],
    key: str,
    *,
    reason: str,
    default: float | object = _MISSING,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number within ``[low, high]``; ``low_open``/``high_open`` exclude the bound."""
    value = _lookup(data, key, default, reason)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaskFailed(reason, f"{key!r} must be a finite number, got {value!r}")
    number = float(value)
    if low is not None and (number < low or (low_open and number == low)):
        bound = ">" if low_open else ">="
        raise TaskFailed(reason, f"{key!r} must be {bound} {low}, got {number}")
    if high is not None and (number > high or (high_open and number == high)):
        bound = "<" if high_open else "<="
        raise TaskFailed(reason, f"{key!r} must be {bound} {high}, got {number}")
    return number


def read_str(
    data: Mapping[str, Any],
    key: str,
    *,
    reason: str,
    default: str | object = _MISSING,
    choices: Collection[str] | None = None,
) -> str:
    """A non-empty string, one of ``choices`` if given."""
    value = _lookup(data, key, default, reason)
    if not isinstance(value, str) or not value:
        raise TaskFailed(reason, f"{key!r} must be a non-empty string, got {value!r}")
    if choices is not None and value not in choices:
        raise TaskFailed(reason, f"{key!r} must be one of {sorted(choices)}, got {value!r}")
    return value


def read_optional_str(data: Mapping[str, Any], key: str, *, reason: str) -> str | None:
    """A non-empty string, or ``None`` when the key is absent or null."""
    if data.get(key) is None:
        return None
    return read_str(data, key, reason=reason)


def reject_unknown(data: Mapping[str, Any], known: Collection[str], *, reason: str) -> None:
    """Fail on keys outside ``known``: a misspelt hyperparameter must not be silently ignored."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise TaskFailed(reason, f"unknown keys {unknown}; expected a subset of {sorted(known)}")
