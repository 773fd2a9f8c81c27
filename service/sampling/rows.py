"""Decoding Optuna's rows (as aggregated by our queries) into Optuna objects.

Optuna's schema stores parameters in their internal float representation with a JSON
distribution per row, values with a separate type column for infinities, and attributes as JSON
text. These helpers turn the aggregated JSON our queries return into ``FrozenTrial`` fields.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
        params[name] = dist.to_external_repr(float(internal))  # JSON gives 0.0 back as 0
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


# ---- constraints and infeasible evidence ----

# Optuna 5 keeps each constraint value in the trial system attribute "constraints:<name>" (what
# ``Trial.set_constraint`` writes); older clients wrote one list under "constraints". Samplers
# (TPE, GP, NSGA-II/III) and ``Study.best_trials`` read both through ``FrozenTrial.constraints``.
IMPORTED_FROM = "hpo:imported_from"
"""The system attribute that marks an imported trial and says where it came from."""
CONSTRAINT_PREFIX = "constraints:"
LEGACY_CONSTRAINTS_KEY = "constraints"
# The one constraint the sampler's view gives a study that declares none but learns from failures.
FAILURE_CONSTRAINT = "hpo_failure"
VIOLATED = 1.0


def is_constraint_key(key: str) -> bool:
    """Whether a trial system attribute holds constraint values (either format)."""
    return key == LEGACY_CONSTRAINTS_KEY or key.startswith(CONSTRAINT_PREFIX)


def constraint_attrs(values: Mapping[str, float]) -> dict[str, float]:
    """The trial system attributes that store ``values`` the way Optuna does."""
    return {f"{CONSTRAINT_PREFIX}{name}": float(value) for name, value in values.items()}


def constraint_values(system_attrs: Mapping[str, Any]) -> dict[str, float]:
    """A trial's constraint values from its decoded system attributes (both formats)."""
    found = {str(i): float(v) for i, v in enumerate(system_attrs.get(LEGACY_CONSTRAINTS_KEY) or ())}
    for key, value in system_attrs.items():
        if key.startswith(CONSTRAINT_PREFIX):
            found[key[len(CONSTRAINT_PREFIX) :]] = float(value)
    return found


def feasible(system_attrs: Mapping[str, Any]) -> bool | None:
    """True/False for a trial that carries constraint values (all <= 0 is feasible), else None."""
    values = constraint_values(system_attrs)
    return all(v <= 0 for v in values.values()) if values else None


@dataclass(frozen=True)
class Evidence:
    """What the sampler's view of one study makes of its trials.

    * ``constraints``: the names the study declares; a complete trial carries their values.
    * ``infeasible_failures``: a FAIL trial with one of these reasons is shown to the sampler as
      a COMPLETE trial whose every constraint is violated (``VIOLATED``), whose values are the
      worst possible (``+inf`` minimised, ``-inf`` maximised: TPE and NSGA-II rank infeasible
      trials by violation only, GP clips infinities to the worst finite value seen) and without
      intermediate values (pruners do not count it). With no declared constraints, the view adds
      one synthetic constraint, ``FAILURE_CONSTRAINT``: 0 on every complete trial, violated on
      evidence, so every trial a GP sampler sees has the same constraints.

    The view only: the database keeps the trial FAIL with its reason.
    """

    directions: tuple[str, ...]
    constraints: tuple[str, ...] = ()
    infeasible_failures: frozenset[str] = frozenset()

    def is_evidence(self, state: str, fail_reason: str | None) -> bool:
        return state == "FAIL" and fail_reason in self.infeasible_failures

    def worst_values(self) -> list[float]:
        return [math.inf if d == "minimize" else -math.inf for d in self.directions]

    def violated(self) -> dict[str, float]:
        names = self.constraints or (FAILURE_CONSTRAINT,)
        return constraint_attrs(dict.fromkeys(names, VIOLATED))

    def synthetic_feasible(self) -> dict[str, float]:
        """What a complete trial gets in the view when the study declares no constraints."""
        if self.constraints or not self.infeasible_failures:
            return {}
        return constraint_attrs({FAILURE_CONSTRAINT: 0.0})
