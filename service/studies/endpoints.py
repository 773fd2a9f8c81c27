"""HTTP for studies. Parses input, calls one service function, returns a schema."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response, status

from service.api.deps import IdempotencyHeader, StudiesDep, idempotency_key
from service.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from service.studies.schemas import StudyCreate, StudyOut, StudyPatch

router = APIRouter(prefix="/studies", tags=["studies"])

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_study(
    body: StudyCreate, studies: StudiesDep, request: Request, key: IdempotencyHeader = None
) -> StudyOut:
    """Create a study. 409 on a duplicate name, 422 with details for any invalid field."""
    idem = idempotency_key(request, key, body.model_dump(mode="json"))
    return studies.create(body, idem)


@router.get("")
def list_studies(
    studies: StudiesDep,
    state: Literal["running", "paused", "stopped", "completed"] | None = None,
    cursor: str | None = None,
    limit: Limit = DEFAULT_LIMIT,
) -> Page[StudyOut]:
    return studies.list(state=state, cursor=cursor, limit=limit)


@router.get("/by-name/{name}")
def get_study_by_name(name: str, studies: StudiesDep) -> StudyOut:
    return studies.get_by_name(name)


@router.get("/{study_id}")
def get_study(study_id: int, studies: StudiesDep) -> StudyOut:
    return studies.get(study_id)


@router.patch("/{study_id}")
def update_study(study_id: int, body: StudyPatch, studies: StudiesDep) -> StudyOut:
    """``{"state": "paused" | "running" | "stopped"}``, budgets, or metadata."""
    return studies.update(study_id, body)


@router.delete("/{study_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_study(study_id: int, studies: StudiesDep) -> Response:
    studies.delete(study_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
