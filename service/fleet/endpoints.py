"""HTTP for the workers list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from service.api.deps import TeamReader
from service.api.errors import error_responses
from service.api.params import Cursor
from service.fleet.schemas import WorkerOut
from service.fleet.service import FleetService
from service.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page

router = APIRouter(tags=["workers"])


async def get_fleet(request: Request) -> FleetService:
    service: FleetService = request.app.state.fleet
    return service


@router.get("/workers", responses=error_responses(400))
def list_workers(
    fleet: Annotated[FleetService, Depends(get_fleet)],
    caller: TeamReader,
    seen_within_s: Annotated[int, Query(ge=1, le=30 * 24 * 3600)] = 3600,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[WorkerOut]:
    """Workers that asked for trials within ``seen_within_s`` seconds or hold a live lease,
    with the trials they hold. (A worker busy training is seen through its leases.)"""
    return fleet.list(
        seen_within_s=seen_within_s, cursor=cursor, limit=limit, team_id=caller.team_id
    )
