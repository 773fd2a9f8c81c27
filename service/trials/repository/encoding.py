"""Python values as the arrays our statements ``unnest`` (many rows, one round trip)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution, distribution_to_json


def params_arrays(
    params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution]
) -> dict[str, list[Any]]:
    names = list(params)
    return {
        "p_names": names,
        "p_values": [distributions[n].to_internal_repr(params[n]) for n in names],
        "p_dists": [distribution_to_json(distributions[n]) for n in names],
    }


def attr_arrays(attrs: Mapping[str, Any], prefix: str) -> dict[str, list[str]]:
    return {
        f"{prefix}_keys": list(attrs),
        f"{prefix}_values": [json.dumps(v) for v in attrs.values()],
    }
