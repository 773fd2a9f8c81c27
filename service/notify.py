"""PostgreSQL LISTEN/NOTIFY, so that every server process hears about work and events.

Statements that make work available (a trial finished or requeued, a study created or resumed)
run ``pg_notify('hpo_work', '<study id>')`` in their transaction; PostgreSQL delivers it at
commit to every listening process, each of which wakes its long-polling claims. One thread per
process holds the LISTEN connection and reconnects with backoff if it drops.

The same thread listens on ``hpo_events`` (a trigger NOTIFYs it with the study id whenever events
are written) and wakes this process's event streams of that study (:class:`EventBroadcaster`).
"""

from __future__ import annotations

import asyncio
import logging
import select
import threading
from collections import deque
from collections.abc import Callable

import psycopg2
import psycopg2.extensions

WORK_CHANNEL = "hpo_work"
EVENTS_CHANNEL = "hpo_events"

logger = logging.getLogger(__name__)

Handler = Callable[[str, str], None]


class Listener:
    """A daemon thread that LISTENs on ``channels`` and calls ``handler(channel, payload)``."""

    def __init__(self, dsn: str, channels: list[str], handler: Handler) -> None:
        self._dsn = dsn
        self._channels = channels
        self._handler = handler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)
        self.connected = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = 0.5
            except psycopg2.Error as exc:
                self.connected.clear()
                logger.warning("notification listener lost its connection: %s", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _listen(self) -> None:
        conn = psycopg2.connect(self._dsn, application_name="hpo-service-listener")
        try:
            conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            with conn.cursor() as cur:
                for channel in self._channels:
                    cur.execute(f'LISTEN "{channel}"')
            self.connected.set()
            while not self._stop.is_set():
                if select.select([conn], [], [], 1.0) == ([], [], []):
                    continue
                conn.poll()
                while conn.notifies:
                    note = conn.notifies.pop(0)
                    self._handler(note.channel, note.payload)
        finally:
            conn.close()


class WorkSignal:
    """Wakes long-polling claims in this process when work may have become available.

    Lives on the event loop; ``notify_threadsafe`` may be called from the listener thread.
    Every waiter is woken: each re-runs one cheap claim attempt.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        # The loop of the waiters; without one, the loop of the first waiter.
        self._loop = loop
        self._waiters: deque[asyncio.Future[None]] = deque()

    def notify_threadsafe(self) -> None:
        if self._loop is not None:  # no loop yet: nobody waits
            self._loop.call_soon_threadsafe(self.notify_all)

    def notify_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        """Subscribe to the next notification (before checking for work, to miss none)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        return waiter

    async def wait(self, waiter: asyncio.Future[None], timeout: float) -> bool:
        """Wait for ``waiter``; False on timeout."""
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            return False

    def forget(self, waiter: asyncio.Future[None]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        if not waiter.done():
            waiter.cancel()


class EventBroadcaster:
    """Wakes this process's event streams of a study when its events may have been written.

    Lives on the event loop; ``notify_threadsafe`` and ``close_threadsafe`` may be called from
    any thread (the listener) or from a signal handler. A subscription is an ``asyncio.Event``
    that stays set until its subscriber clears it, so a notification that arrives while the
    subscriber is reading the database is not lost. A notification carries no data: subscribers
    read what is new themselves. After ``close`` every subscription is set for good (the server is
    shutting down: streams end so that their connections can close).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscribers: dict[int, set[asyncio.Event]] = {}
        self.closed = False

    def notify_threadsafe(self, payload: str) -> None:
        """``payload`` is the NOTIFY payload: the study id (anything else is ignored)."""
        try:
            study_id = int(payload)
        except ValueError:
            logger.warning("ignoring %s notification with payload %r", EVENTS_CHANNEL, payload)
            return
        self._loop.call_soon_threadsafe(self.notify, study_id)

    def notify(self, study_id: int) -> None:
        for subscription in self._subscribers.get(study_id, ()):
            subscription.set()

    def subscribe(self, study_id: int) -> asyncio.Event:
        """A new subscription to the study's notifications (subscribe before reading)."""
        subscription = asyncio.Event()
        if self.closed:
            subscription.set()
        self._subscribers.setdefault(study_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, study_id: int, subscription: asyncio.Event) -> None:
        subscribers = self._subscribers.get(study_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[study_id]

    def close(self) -> None:
        self.closed = True
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.set()

    def close_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self.close)

    def __len__(self) -> int:
        """The number of live subscriptions."""
        return sum(len(s) for s in self._subscribers.values())


def route_notifications(work: WorkSignal, events: EventBroadcaster) -> Handler:
    """The listener's handler: ``hpo_work`` wakes claims, ``hpo_events`` wakes event streams."""

    def handle(channel: str, payload: str) -> None:
        if channel == EVENTS_CHANNEL:
            events.notify_threadsafe(payload)
        else:
            work.notify_threadsafe()

    return handle
