"""HTTP for trials: ask, claim (long poll), enqueue, lease calls, reads."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status

from service.api.deps import (
    IdempotencyHeader,
    StudyManager,
    StudyReader,
    StudyRunner,
    TeamRunner,
    TrialQueriesDep,
    TrialReader,
    TrialRunner,
    TrialsDep,
    idempotency_key,
)
from service.api.errors import error_responses
from service.api.params import Cursor, StudyId, TrialId
from service.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from service.states import TrialStateName
from service.trials.handout import NO_DEVICE, Batch, Device, HandOut
from service.trials.leases import Finish
from service.trials.schemas import (
    AskIn,
    AttrsIn,
    BestOut,
    ClaimIn,
    CompleteIn,
    CompleteOut,
    EnqueueIn,
    HeartbeatOut,
    LeasedTrialOut,
    LeasedTrialsOut,
    LeaseIn,
    ReportIn,
    ReportOut,
    TrialOut,
)
from service.trials.service import Claim

router = APIRouter(tags=["trials"])

NO_TRIAL_HEADER = "HPO-No-Trial-Reason"
_HANDOUT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "a trial under a lease"},
    204: {"description": f"no trial now; the {NO_TRIAL_HEADER} header says why when known"},
}
# A lease call: an unknown trial, or a token that holds no lease on it (or a finished trial).
_LEASE_ERRORS = error_responses(400, 404, 409)


def _handout_response(result: HandOut | Batch) -> LeasedTrialOut | LeasedTrialsOut | Response:
    """200 with the leased trial, or 204 (no body) with the reason in a header; a batch is
    always 200 with its trials (maybe none) and the reason."""
    if isinstance(result, Batch):
        return result.body()
    if result.trial is not None:
        return result.trial
    headers = {NO_TRIAL_HEADER: result.reason} if result.reason else None
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=headers)


@router.post(
    "/studies/{study_id}/trials",
    response_model=LeasedTrialOut | LeasedTrialsOut,
    responses={**_HANDOUT_RESPONSES, **error_responses(400, 404, 409)},
)
def ask(
    study_id: StudyId,
    body: AskIn,
    trials: TrialsDep,
    caller: StudyRunner,
    request: Request,
    key: IdempotencyHeader = None,
) -> LeasedTrialOut | LeasedTrialsOut | Response:
    """Ask for the study's next trial (a queued one first, else a new sample).

    With ``count``, up to that many trials in one answer, each under its own lease: atomic
    against ``max_parallel`` and the budget, idempotent as a whole.
    """
    idem = idempotency_key(request, caller, key, body.model_dump(mode="json"))
    device = Device.of(body.device, body.gpus)
    if body.count is not None:
        batch = trials.ask_many(study_id, body.worker_id, body.count, idem, device)
        return _handout_response(batch)
    return _handout_response(trials.ask(study_id, body.worker_id, idem, device))


@router.post(
    "/trials/claim",
    response_model=LeasedTrialOut | LeasedTrialsOut,
    responses={**_HANDOUT_RESPONSES, **error_responses(400, 409)},
)
async def claim(
    body: ClaimIn,
    trials: TrialsDep,
    caller: TeamRunner,
    request: Request,
    key: IdempotencyHeader = None,
) -> LeasedTrialOut | LeasedTrialsOut | Response:
    """Lease one trial from any running study this worker may take, fairly across studies.

    With ``wait_seconds`` the request waits (long poll) until a trial is available; a trial
    finishing, a study created or resumed anywhere wakes it at once. With ``count``, up to
    that many trials in one answer (spread across the eligible studies), as soon as there is
    at least one.
    """
    idem = idempotency_key(request, caller, key, body.model_dump(mode="json"))
    wanted = Claim(
        body.worker_id,
        body.study_ids,
        body.tasks,
        body.wait_seconds,
        body.count,
        Device.of(body.device, body.gpus),
    )
    result = await trials.claim(wanted, idem, team_id=caller.team_id, gone=request.is_disconnected)
    return _handout_response(result)


@router.post(
    "/studies/{study_id}/trials/enqueue",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 404, 409),
)
def enqueue(study_id: StudyId, body: EnqueueIn, trials: TrialsDep, _: StudyManager) -> TrialOut:
    """Queue a configuration (some or all parameters) to run before new samples."""
    return trials.enqueue(study_id, body.params, body.user_attrs)


@router.post("/trials/{trial_id}/heartbeat", responses=_LEASE_ERRORS)
def heartbeat(trial_id: TrialId, body: LeaseIn, trials: TrialsDep, _: TrialRunner) -> HeartbeatOut:
    renewal = trials.heartbeat(trial_id, body.lease_token)
    return HeartbeatOut(expires_at=renewal.expires_at, should_stop=renewal.should_stop)


@router.post("/trials/{trial_id}/report", responses=_LEASE_ERRORS)
def report(trial_id: TrialId, body: ReportIn, trials: TrialsDep, _: TrialRunner) -> ReportOut:
    """An intermediate value at ``step``; the study's pruner answers ``should_prune`` (or, for
    ``asha``, ``should_pause``)."""
    decision = trials.report(trial_id, body.lease_token, body.step, body.value)
    return ReportOut(
        should_prune=decision.should_prune,
        should_pause=decision.should_pause,
        should_stop=decision.should_stop,
    )


@router.post(
    "/trials/{trial_id}/attrs", status_code=status.HTTP_204_NO_CONTENT, responses=_LEASE_ERRORS
)
def set_attrs(trial_id: TrialId, body: AttrsIn, trials: TrialsDep, _: TrialRunner) -> None:
    """Set user attributes of a running trial (they are also accepted by complete)."""
    trials.set_attrs(trial_id, body.lease_token, body.user_attrs)


@router.post("/trials/{trial_id}/complete", responses=_LEASE_ERRORS)
def complete(trial_id: TrialId, body: CompleteIn, trials: TrialsDep, _: TrialRunner) -> CompleteOut:
    """Finish the trial: complete with values, pruned, or failed with a reason.

    Repeating the call with the same token returns the same result. With ``next``, the answer
    also carries the study's next trial for that worker (or why there is none).
    """
    finish = Finish(body.state, body.values, body.reason, body.user_attrs, body.constraints)
    next_for = None if body.next is None else body.next.worker_id
    device = NO_DEVICE if body.next is None else Device.of(body.next.device, body.next.gpus)
    done = trials.complete(trial_id, body.lease_token, finish, next_for, device)
    out = CompleteOut(**done.trial.model_dump())
    if done.following is not None:
        out.next_trial, out.no_trial_reason = done.following.trial, done.following.reason
    return out


@router.post(
    "/trials/{trial_id}/release", status_code=status.HTTP_204_NO_CONTENT, responses=_LEASE_ERRORS
)
def release(trial_id: TrialId, body: LeaseIn, trials: TrialsDep, _: TrialRunner) -> None:
    """Give the lease back (worker shutting down): the trial is queued again as it is; a trial
    the asha pruner told to pause becomes ``paused`` instead."""
    trials.release(trial_id, body.lease_token)


@router.get("/trials/{trial_id}", responses=error_responses(404))
def get_trial(trial_id: TrialId, trials: TrialQueriesDep, _: TrialReader) -> TrialOut:
    return trials.get(trial_id)


@router.get("/studies/{study_id}/trials", responses=error_responses(400, 404))
def list_trials(
    study_id: StudyId,
    trials: TrialQueriesDep,
    _: StudyReader,
    state: Annotated[list[TrialStateName] | None, Query()] = None,
    sort: Literal["number", "-number", "value", "-value"] = "number",
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    include_intermediate: bool = False,
) -> Page[TrialOut]:
    """Trials of a study, filtered by state, sorted by number or first objective value."""
    return trials.list(
        study_id,
        states=state,
        sort=sort,
        cursor=cursor,
        limit=limit,
        intermediate=include_intermediate,
    )


@router.get("/studies/{study_id}/best", responses=error_responses(404))
def best(study_id: StudyId, trials: TrialQueriesDep, _: StudyReader) -> BestOut:
    """The best complete trial, or the Pareto front of a multi-objective study."""
    return trials.best(study_id)
