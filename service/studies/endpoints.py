"""HTTP for studies. Parses input, calls one service function, returns a schema."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status

from service.api.deps import (
    IdempotencyHeader,
    StudiesDep,
    StudyManager,
    StudyReader,
    TeamManager,
    TeamReader,
    idempotency_key,
)
from service.api.errors import error_responses
from service.api.params import Cursor, StudyId
from service.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from service.studies.schemas import (
    MAX_STUDY_NAME_LENGTH,
    STUDY_NAME_PATTERN,
    StudyCreate,
    StudyOut,
    StudyPatch,
)

router = APIRouter(prefix="/studies", tags=["studies"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
StudyNamePath = Annotated[
    str, Path(min_length=1, max_length=MAX_STUDY_NAME_LENGTH, pattern=STUDY_NAME_PATTERN)
]


@router.post("", status_code=status.HTTP_201_CREATED, responses=error_responses(400, 409))
def create_study(
    body: StudyCreate,
    studies: StudiesDep,
    caller: TeamManager,
    request: Request,
    key: IdempotencyHeader = None,
) -> StudyOut:
    """Create a study of the caller's team. 409 on a duplicate name, 422 with details for any
    invalid field."""
    idem = idempotency_key(request, caller, key, body.model_dump(mode="json"))
    return studies.create(body, idem, team_id=caller.team_id)


@router.get("", responses=error_responses(400))
def list_studies(
    studies: StudiesDep,
    caller: TeamReader,
    state: Literal["running", "paused", "stopped", "completed"] | None = None,
    cursor: Cursor = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[StudyOut]:
    """The caller's team's studies."""
    return studies.list(state=state, cursor=cursor, limit=limit, team_id=caller.team_id)


@router.get("/by-name/{name}", responses=error_responses(404))
def get_study_by_name(name: StudyNamePath, studies: StudiesDep, caller: TeamReader) -> StudyOut:
    return studies.get_by_name(name, team_id=caller.team_id)


@router.get("/{study_id}", responses=error_responses(404))
def get_study(study_id: StudyId, studies: StudiesDep, _: StudyReader) -> StudyOut:
    return studies.get(study_id)


@router.patch("/{study_id}", responses=error_responses(400, 404))
def update_study(
    study_id: StudyId, body: StudyPatch, studies: StudiesDep, _: StudyManager
) -> StudyOut:
    """``{"state": "paused" | "running" | "stopped"}``, budgets, or metadata."""
    return studies.update(study_id, body)


@router.delete(
    "/{study_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404)
)
def delete_study(study_id: StudyId, studies: StudiesDep, _: StudyManager) -> Response:
    studies.delete(study_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
