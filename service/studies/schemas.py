"""Request and response bodies of the study endpoints (field names are a public contract)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.spec import PrunerSpec, SamplerSpec, SearchSpace

Direction = Literal["minimize", "maximize"]
StoredState = Literal["running", "paused", "stopped"]
StudyStateName = Literal["running", "paused", "stopped", "completed"]
StudyName = Annotated[str, Field(min_length=1, max_length=512, pattern=r"^[^\x00-\x1f\x7f/]+$")]


def _minimize() -> list[Direction]:
    return ["minimize"]


class StudyCreate(BaseModel):
    """Everything a study needs. ``task`` is free JSON for the workers (``task.name`` selects
    which workers may claim its trials)."""

    model_config = ConfigDict(extra="forbid")

    name: StudyName
    directions: list[Direction] = Field(default_factory=_minimize, min_length=1, max_length=16)
    metric_names: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = None
    search_space: SearchSpace
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    task: dict[str, Any] | None = None
    max_trials: int | None = Field(default=None, ge=1, le=10_000_000)
    max_parallel: int | None = Field(default=None, ge=1, le=100_000)
    max_retries: int = Field(default=2, ge=0, le=100)
    lease_seconds: int = Field(default=120, ge=1, le=7 * 24 * 3600)
    metadata: dict[str, Any] = Field(default_factory=dict, max_length=100)

    @field_validator("task")
    @classmethod
    def _task_has_name(cls, task: dict[str, Any] | None) -> dict[str, Any] | None:
        if task is not None:
            name = task.get("name")
            if not isinstance(name, str) or not 1 <= len(name) <= 256:
                raise ValueError("task.name must be a string of 1 to 256 characters")
        return task

    @model_validator(mode="after")
    def _metric_names_match(self) -> StudyCreate:
        if self.metric_names is not None and len(self.metric_names) != len(self.directions):
            raise ValueError(
                f"metric_names has {len(self.metric_names)} names for "
                f"{len(self.directions)} directions"
            )
        return self


class StudyPatch(BaseModel):
    """Change a study's state (pause, resume, stop), budgets or metadata."""

    model_config = ConfigDict(extra="forbid")

    state: StoredState | None = None
    max_trials: int | None = Field(default=None, ge=1, le=10_000_000)
    max_parallel: int | None = Field(default=None, ge=1, le=100_000)
    metadata: dict[str, Any] | None = Field(default=None, max_length=100)


class TrialCounts(BaseModel):
    waiting: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0


class StudyOut(BaseModel):
    id: int
    name: str
    state: StudyStateName
    directions: list[Direction]
    metric_names: list[str] | None
    search_space: dict[str, Any]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    task: dict[str, Any] | None
    max_trials: int | None
    max_parallel: int | None
    max_retries: int
    lease_seconds: int
    metadata: dict[str, Any]
    n_trials_started: int
    trial_counts: TrialCounts
    created_at: dt.datetime
    updated_at: dt.datetime
