"""A TCP proxy for HTTP/1.1 that drops connections at chosen points of chosen requests.

It forwards bytes both ways and knows just enough HTTP to tell requests apart on a keep-alive
connection (a client sends a request, then waits for its whole answer): client bytes that
arrive once the answer to the previous request has begun start a new request, whose first line
(``POST /api/v1/trials/7/complete HTTP/1.1``) the :data:`Policy` sees. The policy answers how
to break that request, or None to forward it untouched:

- ``before``: the connection is closed when the request arrives; the server never sees it.
- ``after``: the request is forwarded, and the connection closed as soon as the server starts
  answering (so the server has handled it), before a byte of the answer reaches the client.
- ``mid``: half of the answer's first chunk (part of the status line and headers) reaches the
  client, then the connection is closed.

Every drop that happened is counted by mode and endpoint (:meth:`FaultyProxy.drops`); a drop
is counted only once it has happened (``after`` only once the server answered), and for
``after`` and ``mid`` with the status of the answer the client lost
(:meth:`FaultyProxy.lost_answers`: a 200 to a claim is a lease the client never saw). The
proxy runs an asyncio loop in a daemon thread; it is meant for tests and benchmarks on
loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tests.support import free_port

DropMode = Literal["before", "after", "mid"]
DROP_MODES: tuple[DropMode, ...] = ("before", "after", "mid")
Policy = Callable[[str], DropMode | None]

_CHUNK = 65536
_NUMBERS = re.compile(r"/\d+")
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def endpoint(request_line: str) -> str:
    """``POST /api/v1/trials/7/complete?x=1 HTTP/1.1`` → ``POST /trials/{id}/complete``."""
    parts = request_line.split(" ")
    if len(parts) < 2:
        return request_line
    path = parts[1].split("?", 1)[0].removeprefix("/api/v1")
    return f"{parts[0]} {_NUMBERS.sub('/{id}', path)}"


class EveryNth:
    """A policy: of each matching endpoint's requests, every ``n``-th is dropped, the modes
    taking turns (so each mode hits each endpoint in turn). Thread-safe enough for one proxy
    loop, which calls it from one thread."""

    def __init__(
        self, n: int, endpoints: Callable[[str], bool], modes: tuple[DropMode, ...] = DROP_MODES
    ) -> None:
        self._n = n
        self._matches = endpoints
        self._modes = modes
        self._seen: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    def __call__(self, request_line: str) -> DropMode | None:
        name = endpoint(request_line)
        if not self._matches(name):
            return None
        self._seen[name] += 1
        if self._seen[name] % self._n:
            return None
        mode = self._modes[self._dropped[name] % len(self._modes)]
        self._dropped[name] += 1
        return mode


@dataclass
class _Exchange:
    """The state of one proxied connection."""

    awaiting_request: bool = True
    mode: DropMode | None = None
    endpoint: str = ""
    closed: bool = False
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class FaultyProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream_port``.

    ``policy`` may be replaced while the proxy runs (``proxy.policy = ...``); None forwards
    everything.
    """

    def __init__(self, upstream_port: int, policy: Policy | None = None) -> None:
        self.upstream_port = upstream_port
        self.policy = policy
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._drops: Counter[tuple[DropMode, str]] = Counter()
        self._lost_answers: Counter[tuple[DropMode, str, int]] = Counter()
        self._requests = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="faulty-proxy", daemon=True)

    # ---- the test's side ----

    def start(self) -> FaultyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drops(self) -> Counter[tuple[DropMode, str]]:
        """Drops that happened, by (mode, endpoint)."""
        with self._lock:
            return Counter(self._drops)

    def lost_answers(self) -> Counter[tuple[DropMode, str, int]]:
        """Answers the server sent that never reached the client whole, by (mode, endpoint,
        status)."""
        with self._lock:
            return Counter(self._lost_answers)

    @property
    def requests(self) -> int:
        """Requests seen (forwarded or dropped)."""
        return self._requests

    # ---- the loop's side ----

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stopping.wait()
            server.close()
            for task in self._handlers:
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            try:
                upstream_r, upstream_w = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
            except OSError:
                client_w.close()
                return
            exchange = _Exchange(writers=[client_w, upstream_w])
            try:
                await asyncio.gather(
                    self._requests_to_server(client_r, upstream_w, exchange),
                    self._answers_to_client(upstream_r, client_w, exchange),
                )
            finally:
                for writer in exchange.writers:
                    writer.close()
        finally:
            self._handlers.discard(task)

    async def _requests_to_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ex: _Exchange
    ) -> None:
        while not ex.closed:
            data = await _read(reader)
            if not data:
                break
            if ex.awaiting_request:
                ex.awaiting_request = False
                line = data.split(b"\r\n", 1)[0].decode("latin-1")
                self._requests += 1
                ex.endpoint = endpoint(line)
                policy = self.policy
                ex.mode = policy(line) if policy is not None else None
                if ex.mode == "before":
                    self._count(ex)
                    break
            if not await _write(writer, data):
                break
        await _close(ex)

    async def _answers_to_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ex: _Exchange
    ) -> None:
        while not ex.closed:
            data = await _read(reader)
            if not data:
                break
            ex.awaiting_request = True  # the answer has begun: the client's next bytes are new
            if ex.mode == "after":
                self._count(ex, data)
                break
            if ex.mode == "mid":
                await _write(writer, data[: max(1, len(data) // 2)])
                self._count(ex, data)
                break
            if not await _write(writer, data):
                break
        await _close(ex)

    def _count(self, ex: _Exchange, answer: bytes = b"") -> None:
        assert ex.mode is not None
        with self._lock:
            self._drops[(ex.mode, ex.endpoint)] += 1
            status = _STATUS.match(answer)
            if status is not None:
                self._lost_answers[(ex.mode, ex.endpoint, int(status.group(1)))] += 1


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(_CHUNK)
    except (ConnectionError, OSError):
        return b""


async def _write(writer: asyncio.StreamWriter, data: bytes) -> bool:
    try:
        writer.write(data)
        await writer.drain()
    except (ConnectionError, OSError):
        return False
    return True


async def _close(ex: _Exchange) -> None:
    """Close both ends at once (an RST-free close: the peers see EOF)."""
    if ex.closed:
        return
    ex.closed = True
    for writer in ex.writers:
        writer.close()
    for writer in ex.writers:
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
