"""PostgreSQL LISTEN/NOTIFY, so that every server process hears about work and events.

Statements that make work available (a trial finished or requeued, a study created or resumed)
run ``pg_notify('hpo_work', '<study id>')`` in their transaction; PostgreSQL delivers it at
commit to every listening process, each of which wakes its long-polling claims. One thread per
process holds the LISTEN connection and reconnects with backoff if it drops.
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

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: deque[asyncio.Future[None]] = deque()

    def notify_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self.notify_all)

    def notify_all(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        """Subscribe to the next notification (before checking for work, to miss none)."""
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
