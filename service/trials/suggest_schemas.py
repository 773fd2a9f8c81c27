"""Request and response bodies of ``POST /trials/{trial_id}/suggest`` (a public contract)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.spec import ParamSpec
from service.spec.search_space import ParamName
from service.trials.schemas import Token


class SuggestIn(BaseModel):
    """One parameter the study does not declare, with its distribution in the search space's
    JSON shape (without ``when``)."""

    model_config = ConfigDict(extra="forbid")

    lease_token: Token
    name: ParamName
    distribution: ParamSpec = Field(
        description='e.g. {"type": "float", "low": 1e-5, "high": 0.1, "log": true}'
    )


class SuggestOut(BaseModel):
    name: str
    value: Any = Field(description="the trial's value of the parameter (the same on a repeat)")
