"""Request and response bodies of the study endpoints (field names are a public contract)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from service.documents import AttrKey, json_document
from service.ids import ResourceId
from service.spec import PrunerSpec, SamplerSpec, SchedulerSpec, SearchSpace
from service.states import StoredStudyState, StudyStateName

# Optuna's study_name column holds 512 characters: <team (at most 64)>/<name>.
MAX_STUDY_NAME_LENGTH = 512 - 65
MAX_OBJECTIVES = 16
MAX_METRIC_NAME_LENGTH = 256
MAX_TASK_NAME_LENGTH = 256  # hpo_studies.task_name
MAX_TASK_BYTES = 64 * 1024
MAX_METADATA_KEYS = 100
MAX_METADATA_BYTES = 64 * 1024
MAX_BUDGET = 10_000_000
MAX_RESOURCE_TOTAL = 2**31 - 1  # hpo_studies.max_resource_total
MAX_GPU_HOURS = 1e9
_GPU_HOURS_DESCRIPTION = (
    "GPU-hours (GPUs x wall time of every attempt, failed and paused ones included, running"
    " ones up to now) the study may use; once used, nothing more is handed out, running trials"
    " are told to stop (should_stop), and the study completes"
)
MAX_PARALLEL = 100_000
MAX_RETRIES = 100
MAX_LEASE_SECONDS = 7 * 24 * 3600
MAX_CONSTRAINTS = 16
MAX_CONSTRAINT_NAME_LENGTH = 64

# Names are shown in URLs, logs and tables: no control characters (and no '/' in a study name).
_NAME = r"^[^\x00-\x1f\x7f]+$"

Direction = Literal["minimize", "maximize"]
STUDY_NAME_PATTERN = r"^[^\x00-\x1f\x7f/]+$"
StudyName = Annotated[
    str, Field(min_length=1, max_length=MAX_STUDY_NAME_LENGTH, pattern=STUDY_NAME_PATTERN)
]
MetricName = Annotated[str, Field(min_length=1, max_length=MAX_METRIC_NAME_LENGTH, pattern=_NAME)]
# Constraint names become Optuna system attribute keys ("constraints:<name>").
ConstraintName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_CONSTRAINT_NAME_LENGTH, pattern=r"^[A-Za-z0-9_.-]+$"),
]
# Failure reasons (as the worker classifies them) that can count as infeasible evidence.
InfeasibleFailure = Literal["oom", "nan"]
TaskName = Annotated[str, Field(min_length=1, max_length=MAX_TASK_NAME_LENGTH, pattern=_NAME)]
Metadata = Annotated[
    dict[AttrKey, Any],
    Field(max_length=MAX_METADATA_KEYS, description="free JSON, at most 64 KiB"),
    json_document(MAX_METADATA_BYTES),
]
Task = Annotated[
    dict[str, Any],
    Field(description="free JSON for the workers, at most 64 KiB; 'name' is required"),
    json_document(MAX_TASK_BYTES),
]
_TASK_NAME: TypeAdapter[str] = TypeAdapter(TaskName)


def _minimize() -> list[Direction]:
    return ["minimize"]


def _oom() -> list[InfeasibleFailure]:
    return ["oom"]


def _unique(names: list[str]) -> list[str]:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"names must be unique; repeated: {', '.join(repeated)}")
    return names


ForkState = Literal["complete", "pruned", "failed"]
MAX_FORK_DEFAULTS = 1000


def _complete_only() -> list[ForkState]:
    return ["complete"]


class ForkFrom(BaseModel):
    """Start from another study's trials: those that fit the new study are imported with it."""

    model_config = ConfigDict(extra="forbid")

    study: ResourceId | StudyName = Field(
        description="the source study, by id (a number) or by name (a string); the caller must"
        " be allowed to read it"
    )
    states: list[ForkState] = Field(
        default_factory=_complete_only, min_length=1, max_length=3, description="which trials"
    )
    defaults: dict[str, Any] = Field(
        default_factory=dict,
        max_length=MAX_FORK_DEFAULTS,
        description="a value for each parameter the new space adds: source trials without it"
        " take this value (without one, such a trial is skipped)",
    )

    @field_validator("states")
    @classmethod
    def _no_repeated_states(cls, states: list[ForkState]) -> list[ForkState]:
        _unique(cast(list[str], states))
        return states


class StudyCreate(BaseModel):
    """Everything a study needs. ``task`` is free JSON for the workers (``task.name`` selects
    which workers may claim its trials)."""

    model_config = ConfigDict(extra="forbid")

    name: StudyName
    directions: list[Direction] = Field(
        default_factory=_minimize, min_length=1, max_length=MAX_OBJECTIVES
    )
    metric_names: list[MetricName] | None = Field(default=None, max_length=MAX_OBJECTIVES)
    search_space: SearchSpace
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    scheduler: SchedulerSpec | None = Field(
        default=None,
        description="population-based training ({'name': 'pbt', 'options': {...}}): the"
        " sampler makes 'population' trials; every 'interval' steps one of the bottom"
        " quantile is stopped and replaced by a child of one of the top, started from its"
        " checkpoint with the 'mutable' parameters perturbed",
    )
    task: Task | None = None
    max_trials: int | None = Field(default=None, ge=1, le=MAX_BUDGET)
    max_parallel: int | None = Field(default=None, ge=1, le=MAX_PARALLEL)
    max_resource_total: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RESOURCE_TOTAL,
        description="with the asha pruner: resource units (reported steps) summed over all"
        " trials, never exceeded",
    )
    max_gpu_hours: float | None = Field(
        default=None,
        gt=0,
        le=MAX_GPU_HOURS,
        allow_inf_nan=False,
        description=_GPU_HOURS_DESCRIPTION,
    )
    max_retries: int = Field(default=2, ge=0, le=MAX_RETRIES)
    lease_seconds: int = Field(default=120, ge=1, le=MAX_LEASE_SECONDS)
    metadata: Metadata = Field(default_factory=dict)
    constraints: list[ConstraintName] = Field(
        default_factory=list,
        max_length=MAX_CONSTRAINTS,
        description="names of constraint values every complete call must give (Optuna's"
        " convention: a value <= 0 is feasible); infeasible trials never count as best",
    )
    infeasible_failures: list[InfeasibleFailure] = Field(
        default_factory=_oom,
        description="failure reasons the sampler learns from as infeasible points ('oom',"
        " 'nan'); [] leaves failed trials out of the sampler, as plain Optuna does",
    )
    from_: ForkFrom | None = Field(
        default=None,
        alias="from",
        description="fork: import the trials of another study that fit this one (the answer's"
        " 'fork' lists those skipped, and why)",
    )

    @field_validator("constraints", "infeasible_failures")
    @classmethod
    def _no_repeats(cls, names: list[Any]) -> list[Any]:
        return _unique(names)

    @field_validator("task")
    @classmethod
    def _task_has_name(cls, task: dict[str, Any] | None) -> dict[str, Any] | None:
        if task is not None:
            try:
                _TASK_NAME.validate_python(task.get("name"), strict=True)
            except ValidationError:
                raise ValueError(
                    f"task.name must be a string of 1 to {MAX_TASK_NAME_LENGTH} characters"
                    " without control characters"
                ) from None
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

    state: StoredStudyState | None = None
    max_trials: int | None = Field(default=None, ge=1, le=MAX_BUDGET)
    max_parallel: int | None = Field(default=None, ge=1, le=MAX_PARALLEL)
    max_resource_total: int | None = Field(default=None, ge=1, le=MAX_RESOURCE_TOTAL)
    max_gpu_hours: float | None = Field(
        default=None,
        gt=0,
        le=MAX_GPU_HOURS,
        allow_inf_nan=False,
        description=_GPU_HOURS_DESCRIPTION,
    )
    metadata: Metadata | None = None


class TrialCounts(BaseModel):
    waiting: int = 0
    running: int = 0
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    paused: int = 0


class SkippedTrialOut(BaseModel):
    number: int = Field(description="its number in the source study")
    state: ForkState
    reason: str = Field(description="why it does not fit the new study")


class ForkOut(BaseModel):
    """What a fork imported from its source."""

    source_study_id: int
    source_study: str
    imported: int
    skipped: list[SkippedTrialOut]
    dropped_params: list[str] = Field(
        description="source parameters the imported trials do not hold: not in the new space,"
        " or inactive there for the trial's values"
    )


def _is_none(value: object) -> bool:
    return value is None


class StudyOut(BaseModel):
    id: int
    name: str
    team: str = Field(description="the team that owns the study")
    optuna_study_name: str = Field(
        description="the name Optuna knows it by (optuna.load_study): '<team>/<name>', or"
        " '<name>' in the default team"
    )
    state: StudyStateName
    state_reason: str | None = Field(
        default=None,
        description="why the server paused the study by itself (cleared when a user changes"
        " the state)",
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="problems that keep the study from making progress, found when it was read"
        " (for example: no worker seen lately has its task)",
    )
    directions: list[Direction]
    metric_names: list[str] | None
    search_space: dict[str, Any]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    scheduler: dict[str, Any] | None = None
    task: dict[str, Any] | None
    max_trials: int | None
    max_parallel: int | None
    max_resource_total: int | None = None
    max_gpu_hours: float | None = None
    gpu_hours_used: float = Field(
        default=0.0,
        description="GPU-hours used so far: GPUs x wall time of every attempt on a GPU device"
        " (ended ones, and running ones up to now)",
    )
    max_retries: int
    lease_seconds: int
    metadata: dict[str, Any]
    constraints: list[str] = Field(default_factory=list)
    infeasible_failures: list[str] = Field(default_factory=list)
    n_trials_started: int
    trial_counts: TrialCounts
    created_at: dt.datetime
    updated_at: dt.datetime
    fork: ForkOut | None = Field(
        default=None,
        exclude_if=_is_none,
        description="only in the answer of a create with 'from': what was imported",
    )
