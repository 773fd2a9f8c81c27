"""HTTP for team usage (admin role)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from service.api.deps import TeamAdmin
from service.api.errors import error_responses
from service.usage.schemas import UsageOut
from service.usage.service import UsageService

router = APIRouter(tags=["usage"])


async def get_usage(request: Request) -> UsageService:
    service: UsageService = request.app.state.usage
    return service


@router.get("/teams/usage", responses=error_responses(403, 422))
def team_usage(
    usage: Annotated[UsageService, Depends(get_usage)],
    admin: TeamAdmin,
    since: Annotated[
        dt.datetime | None, Query(description="start (ISO 8601; UTC if no zone)")
    ] = None,
    until: Annotated[dt.datetime | None, Query(description="end, exclusive (default: now)")] = None,
) -> UsageOut:
    """GPU-hours, trials started and studies per team over ``[since, until)`` (default: the
    last 30 days), for the whole period. An admin sees its own team; with auth off, every
    team. Usage of deleted studies is gone with them."""
    return usage.usage(since, until, team_id=admin.team_id)
