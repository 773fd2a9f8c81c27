"""Study schedulers: population-based training (``pbt``), the one scheduler so far.

A scheduler decides, like a pruner, at a trial's reports; unlike one, it also creates trials:
PBT stops a trial of the bottom quantile and starts a *child* from the checkpoint of a trial of
the top quantile, with the parent's parameters, the ``mutable`` ones perturbed or resampled
(``service.sampling.pbt`` holds the rules). :func:`check_scheduler` refuses a specification
PBT cannot run; it is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from service.spec.details import Detail, detail, raise_details
from service.spec.pruners import PrunerSpec
from service.spec.search_space import CategoricalParam, ParamSpec

MAX_POPULATION = 1000


class PbtOptions(BaseModel):
    """The options of ``pbt`` (defaults as in Ray Tune's ``PopulationBasedTraining``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    population: int = Field(
        default=8,
        ge=2,
        le=MAX_POPULATION,
        description="trials sampled by the study's sampler; every other trial is a child",
    )
    interval: int = Field(
        default=4,
        ge=1,
        le=1_000_000,
        description="the decision is taken on the report of every step s with (s + 1) a"
        " multiple of interval (steps count from 0, so after every interval epochs)",
    )
    quantile: float = Field(
        default=0.25,
        gt=0,
        le=0.5,
        description="the fraction of the trials at a step that is its bottom (stopped and"
        " replaced) and its top (the parents)",
    )
    mutable: list[str] = Field(
        min_length=1,
        max_length=64,
        description="parameters a child may change; the others it copies from its parent",
    )
    perturb: list[float] = Field(
        default_factory=lambda: [0.8, 1.2],
        min_length=1,
        max_length=16,
        description="factors a numeric mutable parameter is multiplied by (one drawn at"
        " random), then clipped to its range",
    )
    resample_probability: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="the chance that a mutable parameter is drawn afresh from its range"
        " instead (categorical ones: always drawn afresh, or kept)",
    )
    seed: int | None = Field(default=None, description="seeds the choices of parents and moves")

    @field_validator("mutable")
    @classmethod
    def _unique_names(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("mutable names a parameter more than once")
        return names

    @field_validator("perturb")
    @classmethod
    def _positive_factors(cls, factors: list[float]) -> list[float]:
        if any(not (0 < f < 1e6) for f in factors):
            raise ValueError("perturb factors must be positive and finite")
        return factors


class SchedulerSpec(BaseModel):
    """``{"name": "pbt", "options": {...}}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["pbt"]
    options: PbtOptions


def check_scheduler(
    scheduler: SchedulerSpec | None,
    *,
    space: Mapping[str, ParamSpec],
    pruner: PrunerSpec,
    directions: Sequence[str],
) -> None:
    """Refuse (SpecError) a scheduler the study cannot run: a pruner beside it, several
    objectives, a mutable parameter the space does not declare, or a categorical one with a
    single choice."""
    if scheduler is None:
        return
    details: list[Detail] = []
    if pruner.name != "none":
        details.append(detail(["pruner"], "a study with a scheduler takes no pruner (use 'none')"))
    if len(directions) > 1:
        details.append(detail(["directions"], "pbt ranks trials on one objective"))
    for i, name in enumerate(scheduler.options.mutable):
        loc: list[str | int] = ["scheduler", "options", "mutable", i]
        param = space.get(name)
        if param is None:
            details.append(detail(loc, f"{name!r} is not in the search space"))
        elif isinstance(param, CategoricalParam) and len(param.choices) < 2:
            details.append(detail(loc, f"{name!r} has a single choice"))
    raise_details(details)
