"""HTTP for trials: ask, claim (long poll), enqueue, lease calls, reads."""

from __future__ import annotations

import asyncio
import functools
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from service.api.deps import (
    HandoutDep,
    IdempotencyHeader,
    LeasesDep,
    SettingsDep,
    StudyManager,
    StudyReader,
    StudyRunner,
    TeamRunner,
    TrialQueriesDep,
    TrialReader,
    TrialRunner,
    WorkSignalDep,
    idempotency_key,
)
from service.api.errors import error_responses
from service.api.lean import LeanRoute
from service.api.params import Cursor, StudyId, TrialId
from service.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from service.trials.handout import HandOut
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
    LeaseIn,
    ReportIn,
    ReportOut,
    TrialOut,
    TrialStateName,
)

# The hot lease calls take the lean handler (service.api.lean); the rest keep FastAPI's.
router = APIRouter(tags=["trials"], route_class=LeanRoute)

NO_TRIAL_HEADER = "HPO-No-Trial-Reason"
_HANDOUT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"model": LeasedTrialOut, "description": "a trial under a lease"},
    204: {"description": f"no trial now; the {NO_TRIAL_HEADER} header says why when known"},
}
# A lease call: an unknown trial, or a token that holds no lease on it (or a finished trial).
_LEASE_ERRORS = error_responses(400, 404, 409)


def _handout_response(result: HandOut) -> Response:
    if result.trial is not None:
        return _json(result.trial)
    headers = {NO_TRIAL_HEADER: result.reason} if result.reason else None
    return Response(status_code=status.HTTP_204_NO_CONTENT, headers=headers)


@router.post(
    "/studies/{study_id}/trials",
    responses={**_HANDOUT_RESPONSES, **error_responses(400, 404, 409)},
)
def ask(
    study_id: StudyId,
    body: AskIn,
    handout: HandoutDep,
    caller: StudyRunner,
    request: Request,
    key: IdempotencyHeader = None,
) -> Response:
    """Ask for the study's next trial (a queued one first, else a new sample)."""
    idem = idempotency_key(request, caller, key, body.model_dump(mode="json"))
    return _handout_response(handout.ask(study_id, body.worker_id, idem))


@router.post("/trials/claim", responses={**_HANDOUT_RESPONSES, **error_responses(400, 409)})
async def claim(
    body: ClaimIn,
    handout: HandoutDep,
    signal: WorkSignalDep,
    settings: SettingsDep,
    caller: TeamRunner,
    request: Request,
    key: IdempotencyHeader = None,
) -> Response:
    """Lease one trial from any running study this worker may take, fairly across studies.

    With ``wait_seconds`` the request waits (long poll) until a trial is available; a trial
    finishing, a study created or resumed anywhere wakes it at once.
    """
    idem = idempotency_key(request, caller, key, body.model_dump(mode="json"))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(body.wait_seconds, settings.claim_max_wait_s)
    first = True
    while True:
        woken = signal.waiter()  # subscribe before trying, so no notification is missed
        try:
            result = await run_in_threadpool(
                functools.partial(
                    handout.claim,
                    body.worker_id,
                    body.study_ids,
                    body.tasks,
                    idem,
                    maybe_replay=first,
                    team_id=caller.team_id,
                )
            )
            first = False
            remaining = deadline - loop.time()
            if result.trial is not None or remaining <= 0 or await request.is_disconnected():
                return _handout_response(result)
            await signal.wait(woken, min(remaining, settings.claim_repoll_s))
        finally:
            signal.forget(woken)


@router.post(
    "/studies/{study_id}/trials/enqueue",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 404, 409),
)
def enqueue(study_id: StudyId, body: EnqueueIn, handout: HandoutDep, _: StudyManager) -> TrialOut:
    """Queue a configuration (some or all parameters) to run before new samples."""
    return handout.enqueue(study_id, body.params, body.user_attrs)


def _json(model: BaseModel) -> Response:
    """Hot-path answers: serialised once by pydantic-core, not re-validated by FastAPI (the
    route's ``response_model`` still documents the shape)."""
    return Response(model.model_dump_json(), media_type="application/json")


@router.post("/trials/{trial_id}/heartbeat", response_model=HeartbeatOut, responses=_LEASE_ERRORS)
def heartbeat(trial_id: TrialId, body: LeaseIn, leases: LeasesDep, _: TrialRunner) -> Response:
    expires_at, should_stop = leases.heartbeat(trial_id, body.lease_token)
    return _json(HeartbeatOut(expires_at=expires_at, should_stop=should_stop))


@router.post("/trials/{trial_id}/report", response_model=ReportOut, responses=_LEASE_ERRORS)
def report(trial_id: TrialId, body: ReportIn, leases: LeasesDep, _: TrialRunner) -> Response:
    """An intermediate value at ``step``; the study's pruner answers ``should_prune``."""
    prune, stop = leases.report(trial_id, body.lease_token, body.step, body.value)
    return _json(ReportOut(should_prune=prune, should_stop=stop))


@router.post(
    "/trials/{trial_id}/attrs", status_code=status.HTTP_204_NO_CONTENT, responses=_LEASE_ERRORS
)
def set_attrs(trial_id: TrialId, body: AttrsIn, leases: LeasesDep, _: TrialRunner) -> Response:
    """Set user attributes of a running trial (they are also accepted by complete)."""
    leases.set_attrs(trial_id, body.lease_token, body.user_attrs)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/trials/{trial_id}/complete", response_model=CompleteOut, responses=_LEASE_ERRORS)
def complete(trial_id: TrialId, body: CompleteIn, leases: LeasesDep, _: TrialRunner) -> Response:
    """Finish the trial: complete with values, pruned, or failed with a reason.

    Repeating the call with the same token returns the same result. With ``next``, the answer
    also carries the study's next trial for that worker (or why there is none).
    """
    finish = Finish(body.state, body.values, body.reason, body.user_attrs)
    if body.next is None:
        finished, _replayed = leases.complete(trial_id, body.lease_token, finish)
        return _json(CompleteOut.model_construct(**dict(finished)))  # validated: no second pass
    finished, following = leases.complete_and_ask(
        trial_id, body.lease_token, finish, body.next.worker_id
    )
    out = CompleteOut.model_construct(**dict(finished))
    out.next_trial, out.no_trial_reason = following.trial, following.reason
    return _json(out)


@router.post(
    "/trials/{trial_id}/release", status_code=status.HTTP_204_NO_CONTENT, responses=_LEASE_ERRORS
)
def release(trial_id: TrialId, body: LeaseIn, leases: LeasesDep, _: TrialRunner) -> Response:
    """Give the lease back (worker shutting down): the trial is queued again as it is."""
    leases.release(trial_id, body.lease_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
