"""``GET /metrics``: Prometheus exposition, outside ``/api/v1``.

Open like ``/healthz`` unless ``HPO_METRICS_TOKEN`` is set; then the scraper sends
``Authorization: Bearer <token>`` (Prometheus: ``authorization: {credentials: <token>}``).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.deps import SettingsDep
from service.db.unit_of_work import UnitOfWork
from service.errors import Unauthorized
from service.observability.exposition import render

router = APIRouter(tags=["observability"])


_SCRAPER = HTTPBearer(
    auto_error=False,
    scheme_name="metrics token",
    description="HPO_METRICS_TOKEN, when the server sets one",
)


async def require_metrics_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_SCRAPER)],
) -> None:
    """When ``HPO_METRICS_TOKEN`` is set, the scrape carries it as a bearer token."""
    expected = settings.metrics_token
    if expected is None:
        return
    if credentials is None or not secrets.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("GET /metrics needs 'Authorization: Bearer <HPO_METRICS_TOKEN>'")


@router.get(
    "/metrics",
    dependencies=[Depends(require_metrics_token)],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        401: {"description": "HPO_METRICS_TOKEN is set and the request does not carry it"},
    },
)
def metrics(request: Request) -> Response:
    """The process's counters and histograms, and per-study gauges read from the database.
    OpenMetrics when ``Accept`` asks for it, else Prometheus text format 0.0.4."""
    uow: UnitOfWork = request.app.state.uow
    body, content_type = render(uow, request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})
