"""Decoding Optuna's rows (as aggregated by our queries) into Optuna objects.

Optuna's schema stores parameters in their internal float representation with a JSON
distribution per row, values with a separate type column for infinities, and attributes as JSON
text. These helpers turn the aggregated JSON our queries return into ``FrozenTrial`` fields.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from typing import Any

from optuna.distributions import BaseDistribution, json_to_distribution

_INF_VALUES = {"INF_POS": math.inf, "INF_NEG": -math.inf, "NAN": math.nan}


@functools.lru_cache(maxsize=4096)
def distribution_from_json(text: str) -> BaseDistribution:
    """Distributions repeat across trials: parse each distinct JSON text once."""
    return json_to_distribution(text)


def stored_float(value: float | None, value_type: str) -> float:
    """Optuna stores infinities (and NaN intermediate values) as NULL plus a type tag."""
    if value_type == "FINITE":
        assert value is not None
        return float(value)
    return _INF_VALUES[value_type]


def to_stored(value: float) -> tuple[float | None, str]:
    if math.isnan(value):
        return None, "NAN"
    if math.isinf(value):
        return None, "INF_POS" if value > 0 else "INF_NEG"
    return value, "FINITE"


def decode_params(
    rows: Iterable[list[Any]] | None,
) -> tuple[dict[str, Any], dict[str, BaseDistribution]]:
    """``[[name, internal_value, distribution_json], ...]`` → (params, distributions)."""
    params: dict[str, Any] = {}
    distributions: dict[str, BaseDistribution] = {}
    for name, internal, dist_json in rows or ():
        dist = distribution_from_json(dist_json)
        params[name] = dist.to_external_repr(internal)
        distributions[name] = dist
    return params, distributions


def decode_values(rows: Iterable[list[Any]] | None) -> list[float] | None:
    """``[[objective, value, type], ...]`` ordered by objective → values, or None if empty."""
    values = [stored_float(value, kind) for _, value, kind in sorted(rows or (), key=_first)]
    return values or None


def decode_intermediate(rows: Iterable[list[Any]] | None) -> dict[int, float]:
    return {int(step): stored_float(value, kind) for step, value, kind in rows or ()}


def decode_attrs(raw: dict[str, str] | None) -> dict[str, Any]:
    """Attribute rows keep their value as JSON text."""
    return {key: json.loads(value) for key, value in (raw or {}).items()}


def _first(row: list[Any]) -> Any:
    return row[0]
