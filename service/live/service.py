"""The rules of live streams: where a stream starts, and what it reads."""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator

import anyio.to_thread

from service.db.unit_of_work import UnitOfWork
from service.errors import NotFound
from service.live import repository as repo
from service.live.position import EventPosition
from service.live.stream import BATCH, StreamTiming, event_stream
from service.notify import EventBroadcaster
from service.trials.repository import study_directions


class LiveService:
    def __init__(
        self, uow: UnitOfWork, broadcaster: EventBroadcaster, timing: StreamTiming
    ) -> None:
        self._uow = uow
        self._broadcaster = broadcaster
        self._timing = timing

    def start_position(self, study_id: int, last_event_id: str | None) -> EventPosition:
        """Just after ``last_event_id`` (BadCursor if it is not one of ours), or, without one,
        before every event not yet deliverable now: the stream then starts with what happens
        next. NotFound if the study does not exist."""
        start = None if last_event_id is None else EventPosition.parse(last_event_id)
        with self._uow.read() as conn:
            if not study_directions(conn, study_id):
                raise NotFound(f"study {study_id} does not exist")
            if start is None:
                start = EventPosition.before_transaction(repo.read_horizon(conn))
        return start

    def stream(self, study_id: int, start: EventPosition) -> AsyncGenerator[str, None]:
        read = functools.partial(self._read, study_id)
        return event_stream(study_id, start, read, self._broadcaster, self._timing)

    async def _read(self, study_id: int, after: EventPosition) -> repo.EventBatch:
        return await anyio.to_thread.run_sync(self._read_sync, study_id, after)

    def _read_sync(self, study_id: int, after: EventPosition) -> repo.EventBatch:
        with self._uow.read() as conn:
            return repo.read_events(conn, study_id, after, BATCH)
