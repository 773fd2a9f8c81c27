"""The Server-Sent Events wire format, and the loop that feeds one stream.

Each event is ``event: <kind>``, ``id: <xid>-<id>``, ``data: <json>``. The stream opens with a
``retry:`` hint and the id of its starting position (an id-only message sets the client's last
event id without dispatching an event), so a client that reconnects before any event arrived
still resumes exactly where it started. Comments (``: heartbeat``) keep idle connections open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from service.live.position import EventPosition
from service.live.repository import EventBatch, StoredEvent
from service.notify import EventBroadcaster

RETRY_MS = 2000
BATCH = 500


@dataclass(frozen=True)
class StreamTiming:
    heartbeat_s: float
    repoll_s: float
    blocked_retry_s: float = 0.05  # first re-read when events wait for an older transaction


def format_event(event: StoredEvent, study_id: int) -> str:
    data = {"study_id": study_id, "trial_id": event.trial_id, **event.payload}
    data["created_at"] = event.created_at.isoformat()
    body = json.dumps(data, separators=(",", ":"), allow_nan=False, default=str)
    return f"event: {event.kind}\nid: {event.position}\ndata: {body}\n\n"


def opening(start: EventPosition) -> str:
    return f"retry: {RETRY_MS}\nid: {start}\n\n"


HEARTBEAT = ": heartbeat\n\n"


async def event_stream(
    study_id: int,
    start: EventPosition,
    read: Callable[[EventPosition], Awaitable[EventBatch]],
    broadcaster: EventBroadcaster,
    timing: StreamTiming,
) -> AsyncGenerator[str, None]:
    """Events of the study after ``start``, forever, until the broadcaster closes (server
    shutdown) or the consumer stops iterating (client gone: the response cancels us).

    Woken by the study's NOTIFY; re-reads every ``repoll_s`` without one, and sooner (backing off
    from ``blocked_retry_s``) while newer events wait for an older transaction. ``read`` borrows a
    database connection only for the read itself.
    """
    loop = asyncio.get_running_loop()
    subscription = broadcaster.subscribe(study_id)
    position = start
    try:
        yield opening(start)
        last_sent = loop.time()
        retry_in = timing.blocked_retry_s
        while not broadcaster.closed:
            subscription.clear()  # before reading: a NOTIFY during the read wakes us again
            batch = await read(position)
            if batch.events:
                yield "".join(format_event(e, study_id) for e in batch.events)
                position = batch.events[-1].position
                last_sent = loop.time()
                if len(batch.events) >= BATCH:
                    continue
            if batch.blocked:
                wait, retry_in = retry_in, min(retry_in * 2, timing.repoll_s)
            else:
                wait, retry_in = timing.repoll_s, timing.blocked_retry_s
            heartbeat_at = last_sent + timing.heartbeat_s
            await _wait(subscription, min(wait, max(0.0, heartbeat_at - loop.time())))
            if loop.time() >= heartbeat_at and not broadcaster.closed:
                yield HEARTBEAT
                last_sent = loop.time()
    finally:
        broadcaster.unsubscribe(study_id, subscription)


async def _wait(subscription: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(subscription.wait(), timeout)
