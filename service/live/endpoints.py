"""HTTP for live updates: a study's events as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from service.api.deps import StudyReader
from service.api.errors import ErrorOut, error_responses
from service.api.params import StudyId
from service.live.service import LiveService

router = APIRouter(tags=["live"])


async def get_live(request: Request) -> LiveService:
    service: LiveService = request.app.state.live
    return service


LiveDep = Annotated[LiveService, Depends(get_live)]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MAX_EVENT_ID_LENGTH = 64  # an id is '<xid>-<id>', two numbers of at most 18 digits


@router.get(
    "/studies/{study_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-Sent Events: 'event: <kind>', 'id: <xid>-<id>', "
            "'data: <json payload with study_id, trial_id, created_at>'",
        },
        400: {
            "model": ErrorOut,
            "description": "the Last-Event-ID is not an id of this stream (bad_cursor)",
        },
        **error_responses(404),
    },
)
async def study_events(
    study_id: StudyId,
    live: LiveDep,
    _: StudyReader,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=MAX_EVENT_ID_LENGTH)
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(
            max_length=MAX_EVENT_ID_LENGTH,
            description="for clients that cannot send the Last-Event-ID header",
        ),
    ] = None,
) -> StreamingResponse:
    """The study's events as they happen: ``study_created``, ``study_updated``,
    ``trial_enqueued``, ``trial_started``, ``trial_reported``, ``trial_finished``,
    ``trial_requeued``.

    Reconnect with the id of the last event received (``Last-Event-ID``, as browsers do) to get
    exactly the events missed, in order; without it the stream starts with the next event.
    Comments are sent every ~15 s while nothing happens.
    """
    start = await run_in_threadpool(
        live.start_position, study_id, last_event_id_header or last_event_id
    )
    return StreamingResponse(
        live.stream(study_id, start), media_type="text/event-stream", headers=_SSE_HEADERS
    )
