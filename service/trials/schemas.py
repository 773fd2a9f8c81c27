"""Request and response bodies of the trial endpoints (field names are a public contract)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.documents import AttrKey, json_document
from service.ids import ResourceId
from service.spec import MAX_PARAMS
from service.states import TrialStateName
from service.studies.schemas import MAX_CONSTRAINTS, MAX_OBJECTIVES, ConstraintName, TaskName
from service.trials.results import check_result

MAX_WORKER_ID_LENGTH = 256  # hpo_trials.worker_id, hpo_workers.worker_id
MAX_TOKEN_LENGTH = 64  # hpo_trials.lease_token
MAX_CLAIM_STUDIES = 1000
MAX_CLAIM_TASKS = 100
MAX_WAIT_SECONDS = 60
MAX_USER_ATTRS = 100
MAX_USER_ATTRS_BYTES = 64 * 1024
MAX_REASON_LENGTH = 2000
MAX_STEP = 2**31 - 1  # trial_intermediate_values.step
MAX_DEVICE_LENGTH = 64  # hpo_trial_attempts.device
MAX_GPUS = 64

WorkerId = Annotated[
    str, Field(min_length=1, max_length=MAX_WORKER_ID_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$")
]
Token = Annotated[
    str, Field(min_length=1, max_length=MAX_TOKEN_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$")
]
UserAttrs = Annotated[
    dict[AttrKey, Any],
    Field(max_length=MAX_USER_ATTRS, description="free JSON values, at most 64 KiB in all"),
    json_document(MAX_USER_ATTRS_BYTES),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


DeviceName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_DEVICE_LENGTH,
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]*(:[0-9]+)?$",
        description="the device the trial will run on, as PyTorch names it ('cuda:0', 'cpu');"
        " a 'cuda' device counts one GPU against the study's max_gpu_hours unless 'gpus' says"
        " otherwise; nothing said: no GPU time is counted",
    ),
]
GpuCount = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_GPUS,
        description="the GPUs the trial holds (default: 1 for a 'cuda' device, else 0)",
    ),
]


class _OnDevice(_In):
    """A hand-out request that may say what the trial will run on."""

    device: DeviceName | None = None
    gpus: GpuCount | None = None

    @model_validator(mode="after")
    def _gpus_need_a_device(self) -> _OnDevice:
        if self.gpus and self.device is None:
            raise ValueError("'gpus' needs 'device' (the device that holds them)")
        if self.gpus and self.device is not None and self.device.split(":")[0] == "cpu":
            raise ValueError("a 'cpu' device holds no GPUs: drop 'gpus' or name the GPU device")
        return self


MAX_BATCH = 64
_COUNT_DESCRIPTION = (
    "lease up to this many trials in one request (each with its own lease); the answer is then"
    " always 200 with 'trials' (possibly fewer, or none: 'no_trial_reason' says why)"
)


BatchCount = Annotated[int, Field(strict=True, ge=1, le=MAX_BATCH, description=_COUNT_DESCRIPTION)]


class NextIn(_OnDevice):
    worker_id: WorkerId


class AskIn(NextIn):
    count: BatchCount | None = None


class ClaimIn(_OnDevice):
    worker_id: WorkerId
    count: BatchCount | None = None
    study_ids: list[ResourceId] | None = Field(default=None, max_length=MAX_CLAIM_STUDIES)
    tasks: list[TaskName] | None = Field(default=None, max_length=MAX_CLAIM_TASKS)
    wait_seconds: float = Field(
        default=0.0, ge=0, le=MAX_WAIT_SECONDS, description="long poll, at most 60 s"
    )


class EnqueueIn(_In):
    params: dict[str, Any] = Field(
        max_length=MAX_PARAMS, description="values of some or all parameters"
    )
    user_attrs: UserAttrs = Field(default_factory=dict)


class LeaseIn(_In):
    lease_token: Token


class ReportIn(LeaseIn):
    step: int = Field(ge=0, le=MAX_STEP)
    value: float


class AttrsIn(LeaseIn):
    user_attrs: UserAttrs = Field(min_length=1)


class CompleteIn(LeaseIn):
    """``{"values": [...]}`` completes, ``{"state": "pruned"}`` prunes,
    ``{"state": "failed", "reason": "..."}`` fails."""

    state: Literal["complete", "pruned", "failed"] = "complete"
    values: list[float] | None = Field(default=None, min_length=1, max_length=MAX_OBJECTIVES)
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH, pattern=r"^[^\x00]*$")
    constraints: dict[ConstraintName, float] | None = Field(
        default=None,
        max_length=MAX_CONSTRAINTS,
        description="a complete trial of a study that declares constraints gives each one's"
        " value here (<= 0 is feasible; NaN refused)",
    )
    user_attrs: UserAttrs = Field(default_factory=dict)
    next: NextIn | None = Field(
        default=None,
        description="also ask the same study for the next trial for this worker (saves a round"
        " trip); the answer is in 'next_trial', or 'no_trial_reason' says why there is none",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CompleteIn:
        check_result(self.state, self.values, self.reason, self.constraints, verb="complete")
        return self


class LeaseOut(BaseModel):
    token: str
    expires_at: dt.datetime
    heartbeat_seconds: int
    lease_seconds: int = Field(description="how long the lease lasts after each heartbeat")


class LeasedTrialOut(BaseModel):
    """A trial handed out under a lease by ask or claim."""

    id: int
    study_id: int
    number: int
    state: Literal["running"] = "running"
    attempt: int
    params: dict[str, Any]
    task: dict[str, Any] | None
    lease: LeaseOut
    resume_from_step: int | None = Field(
        default=None,
        description="a paused trial promoted by the asha pruner, or a pbt child's first"
        " attempt: the first step to run (its checkpoint holds the step before); None for"
        " every other hand-out",
    )
    parent_trial_id: int | None = Field(
        default=None,
        description="a pbt child: the trial whose checkpoint it starts from (every attempt)",
    )
    started_from_step: int | None = Field(
        default=None,
        description="a pbt child: its first step; the task counts its best value from there",
    )


class LeasedTrialsOut(BaseModel):
    """A batch hand-out (ask or claim with ``count``): the trials leased, each under its own
    lease, and why there are fewer than asked for (None when the batch is full)."""

    trials: list[LeasedTrialOut]
    no_trial_reason: str | None = None


class HeartbeatOut(BaseModel):
    expires_at: dt.datetime
    should_stop: bool


class ReportOut(BaseModel):
    should_prune: bool
    should_pause: bool = Field(
        default=False,
        description="the asha pruner paused the trial at this rung: checkpoint this step and"
        " hand the lease back (release); it may be promoted and resumed later",
    )
    should_stop: bool = False


class IntermediateValue(BaseModel):
    step: int
    value: float | None


class TrialOut(BaseModel):
    id: int
    study_id: int
    number: int
    state: TrialStateName
    attempt: int
    params: dict[str, Any]
    values: list[float | None] | None
    value: float | None = Field(description="the first objective's value")
    user_attrs: dict[str, Any]
    fail_reason: str | None
    worker_id: str | None
    datetime_start: dt.datetime | None
    datetime_complete: dt.datetime | None
    duration_s: float | None
    lease_expires_at: dt.datetime | None
    intermediate_values: list[IntermediateValue] | None = None
    constraints: dict[str, float] | None = Field(
        default=None, description="the constraint values given on complete, if any"
    )
    feasible: bool | None = Field(
        default=None,
        description="for a trial with constraint values: whether all are <= 0 (an infeasible"
        " trial never counts as best)",
    )
    imported_from: dict[str, Any] | None = Field(
        default=None,
        description="for an imported trial (warm start, fork): where it came from",
    )
    parent_trial_id: int | None = Field(
        default=None,
        description="a child of population-based training: the trial whose checkpoint it"
        " started from (None for trials the sampler made)",
    )
    started_from_step: int | None = Field(
        default=None,
        description="a pbt child: the first step it ran (its parent's checkpoint step + 1)",
    )
    replaced_trial_id: int | None = Field(
        default=None, description="a pbt child: the trial of the bottom quantile it replaced"
    )


class CompleteOut(TrialOut):
    """The finished trial, plus the next trial when the request asked for one."""

    next_trial: LeasedTrialOut | None = None
    no_trial_reason: str | None = None


class BestOut(BaseModel):
    """Single objective: ``best`` is the best complete trial. Several: ``pareto_front``."""

    best: TrialOut | None = None
    pareto_front: list[TrialOut] | None = None
