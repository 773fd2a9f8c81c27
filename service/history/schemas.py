"""Response bodies of the history endpoints (field names are a public contract).

Non-finite numbers (infinite objective values, NaN intermediate values) are ``null`` in JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from service.states import StudyStateName, TrialStateName
from service.studies.schemas import Direction, TrialCounts
from service.trials.schemas import TrialOut

FinishedState = Literal["complete", "pruned", "failed"]
ImportanceStatus = Literal["fresh", "stale", "pending"]


class StudySummaryOut(BaseModel):
    """One line of the studies overview."""

    id: int
    name: str
    state: StudyStateName
    directions: list[Direction]
    metric_names: list[str] | None
    trial_counts: TrialCounts
    max_trials: int | None
    max_gpu_hours: float | None = None
    gpu_hours_used: float = Field(
        default=0.0, description="GPU-hours used (attempts on GPU devices, running ones to now)"
    )
    best_value: float | None = Field(
        description="single objective: the best complete trial's value (null when none)"
    )
    best_trial_number: int | None
    pareto_front_size: int | None = Field(
        description="several objectives: how many complete trials are on the Pareto front"
    )
    last_activity_at: dt.datetime = Field(
        description="latest trial start or completion, or study change"
    )
    running_workers: list[str] = Field(description="distinct workers holding a live lease")
    created_at: dt.datetime


class HistoryPointOut(BaseModel):
    """A finished trial in the optimization history."""

    number: int
    id: int
    state: FinishedState
    values: list[float | None] | None = Field(description="per objective; complete trials only")
    best_values: list[float | None] | None = Field(
        description="per objective, the best value of the complete trials numbered up to this"
        " one (each objective on its own); null before the first complete trial"
    )
    feasible: bool = Field(
        default=True,
        description="false for a trial with a constraint value above 0 (never the best)",
    )
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    duration_s: float | None


class ChangesOut(BaseModel):
    """Trials changed since a cursor. Poll again with ``cursor``; while ``more`` is true the
    next call returns the rest of this batch at once."""

    items: list[TrialOut]
    cursor: str
    more: bool


class CurveOut(BaseModel):
    """A trial's intermediate values (``steps[i]`` → ``values[i]``), possibly down-sampled."""

    number: int
    id: int
    state: TrialStateName
    steps: list[int]
    values: list[float | None]
    n_points: int = Field(description="how many intermediate values the trial has in all")


class ObjectiveImportanceOut(BaseModel):
    objective: int
    direction: Direction
    importances: dict[str, float] = Field(description="parameter → importance, largest first")


class ImportanceOut(BaseModel):
    """Hyperparameter importances of the complete trials, one entry per objective.

    ``status``: ``fresh`` (computed on every complete trial there is now), ``stale`` (computed on
    ``n_trials`` complete trials while more exist; a recomputation is running) or ``pending``
    (nothing computed yet; ask again shortly). Fewer than two complete trials: no objectives.
    """

    study_id: int
    evaluator: str
    status: ImportanceStatus
    n_trials: int = Field(description="complete trials the importances were computed on")
    computed_at: dt.datetime | None
    objectives: list[ObjectiveImportanceOut]
