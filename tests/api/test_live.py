"""Server-Sent Events of a study through a real server: live delivery woken by LISTEN, exact
resumption with Last-Event-ID, heartbeats, errors, shutdown with open streams, and an idle
stream that holds no database connection."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from service.db.unit_of_work import UnitOfWork
from service.live.position import EventPosition
from service.live.service import LiveService
from service.live.stream import StreamTiming
from service.notify import EventBroadcaster
from tests.api.helpers import API, ask, assert_error, create_study, study_body
from tests.support import ScratchDatabase, ServerProcess

pytestmark = pytest.mark.slow

QUIET = {"sampler": {"name": "random"}, "pruner": {"name": "none"}}
# A long re-poll: events must arrive through NOTIFY, not through the fallback.
SERVER_ENV = {"HPO_EVENTS_REPOLL_S": "30", "HPO_EVENTS_HEARTBEAT_S": "1"}


class EventReader:
    """Reads one SSE stream in a thread. Messages go to a queue as dicts with ``event``, ``id``,
    ``data`` (parsed JSON) and ``comment``; None marks the end of the stream."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **params: str) -> None:
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.status: int | None = None
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(10.0, read=30.0))
        self._thread = threading.Thread(
            target=self._run, args=(url, headers or {}, params), daemon=True
        )
        self._thread.start()
        assert self._opened.wait(10), "the stream did not open"

    def _run(self, url: str, headers: dict[str, str], params: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers, params=params) as response:
                self._response = response
                self.status = response.status_code
                self._opened.set()
                block: list[str] = []
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line:
                        block.append(line)
                    elif block:
                        self.messages.put(_parse(block))
                        block = []
        except httpx.HTTPError:
            pass
        finally:
            self._opened.set()
            self.messages.put(None)

    def next(self, timeout: float = 10.0) -> dict[str, Any] | None:
        return self.messages.get(timeout=timeout)

    def events(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next ``n`` messages that carry data (comments and id-only messages skipped)."""
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            message = self.next(max(0.01, deadline - time.monotonic()))
            assert message is not None, f"the stream ended after {out}"
            if message["data"] is not None:
                out.append(message)
        return out

    def close(self) -> None:
        self._stop.set()
        if self._response is not None:
            self._response.close()
        self._client.close()
        self._thread.join(timeout=10)


def _parse(block: list[str]) -> dict[str, Any]:
    message: dict[str, Any] = {"event": None, "id": None, "data": None, "comment": False}
    for line in block:
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            message["comment"] = True
        elif field == "data":
            message["data"] = json.loads(value)
        elif field in ("event", "id"):
            message[field] = value
    return message


def _position(event_id: str) -> tuple[int, int]:
    xid, _, row = event_id.partition("-")
    return int(xid), int(row)


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string, env=SERVER_ENV, token=db.token) as srv:
        yield srv


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url + API, timeout=30, headers=server.headers) as client:
        yield client


def _study(http: httpx.Client, name: str) -> int:
    response = http.post("/studies", json=study_body(name, **QUIET))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _ask(http: httpx.Client, sid: int) -> dict[str, Any]:
    response = http.post(f"/studies/{sid}/trials", json={"worker_id": "w"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _finish(http: httpx.Client, trial: dict[str, Any], **body: Any) -> None:
    response = http.post(
        f"/trials/{trial['id']}/complete", json={"lease_token": trial["lease"]["token"], **body}
    )
    assert response.status_code == 200, response.text


def test_live_events_then_exactly_the_missed_ones_after_reconnecting(
    server: ServerProcess, http: httpx.Client
) -> None:
    sid = _study(http, "live")
    url = f"{server.url}{API}/studies/{sid}/events"
    first = EventReader(url, server.headers)
    try:
        opening = first.next()
        assert opening is not None and opening["data"] is None and opening["id"]
        trial = _ask(http, sid)
        report = http.post(
            f"/trials/{trial['id']}/report",
            json={"lease_token": trial["lease"]["token"], "step": 0, "value": 0.5},
        )
        assert report.status_code == 200
        _finish(http, trial, values=[0.25])
        live = first.events(3, timeout=5)
    finally:
        first.close()
    assert [e["event"] for e in live] == ["trial_started", "trial_reported", "trial_finished"]
    assert all(e["data"]["trial_id"] == trial["id"] for e in live)
    assert live[0]["data"] | {"created_at": None} == {
        "study_id": sid,
        "trial_id": trial["id"],
        "number": 0,
        "attempt": 1,
        "worker_id": "w",
        "created_at": None,
    }
    assert live[1]["data"]["step"] == 0 and live[1]["data"]["value"] == 0.5
    assert live[2]["data"]["state"] == "complete" and live[2]["data"]["values"] == [0.25]
    positions = [_position(e["id"]) for e in live]
    assert positions == sorted(positions) and len(set(positions)) == 3

    # While nobody listens: three more events.
    missed_trial = _ask(http, sid)
    _finish(http, missed_trial, state="pruned")
    assert http.patch(f"/studies/{sid}", json={"max_trials": 99}).status_code == 200

    resumed = EventReader(url, {**server.headers, "Last-Event-ID": live[-1]["id"]})
    try:
        missed = resumed.events(3, timeout=5)
        assert [e["event"] for e in missed] == ["trial_started", "trial_finished", "study_updated"]
        assert missed[0]["data"]["trial_id"] == missed_trial["id"]
        assert missed[1]["data"]["state"] == "pruned"
        assert missed[2]["data"]["max_trials"] == 99
        assert min(_position(e["id"]) for e in missed) > positions[-1]
        later = _ask(http, sid)  # the next event is the new one: nothing was sent twice
        (after,) = resumed.events(1, timeout=5)
        assert after["event"] == "trial_started" and after["data"]["trial_id"] == later["id"]
    finally:
        resumed.close()

    by_query = EventReader(url, server.headers, last_event_id=live[-1]["id"])
    try:
        again = by_query.events(4, timeout=5)
        assert [e["id"] for e in again] == [e["id"] for e in [*missed, after]]
    finally:
        by_query.close()


def test_a_new_stream_starts_with_what_happens_next(
    server: ServerProcess, http: httpx.Client
) -> None:
    sid = _study(http, "fresh")
    _finish(http, _ask(http, sid), values=[1.0])  # before connecting: not delivered
    reader = EventReader(f"{server.url}{API}/studies/{sid}/events", server.headers)
    try:
        trial = _ask(http, sid)
        (first,) = reader.events(1, timeout=5)
        assert first["event"] == "trial_started" and first["data"]["trial_id"] == trial["id"]
    finally:
        reader.close()


def test_heartbeats_keep_an_idle_stream_open(server: ServerProcess, http: httpx.Client) -> None:
    sid = _study(http, "quiet")
    reader = EventReader(f"{server.url}{API}/studies/{sid}/events", server.headers)
    try:
        deadline = time.monotonic() + 5
        while True:
            message = reader.next(timeout=max(0.01, deadline - time.monotonic()))
            assert message is not None
            if message["comment"]:
                break
    finally:
        reader.close()


def test_the_server_stops_promptly_with_open_streams(
    server: ServerProcess, http: httpx.Client
) -> None:
    sid = _study(http, "shutdown")
    reader = EventReader(f"{server.url}{API}/studies/{sid}/events", server.headers)
    try:
        assert reader.next() is not None  # the opening message
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 8
        assert server.proc is not None and server.proc.returncode is not None
        while (message := reader.next(timeout=5)) is not None:
            assert message["data"] is None  # only heartbeats until the end
    finally:
        reader.close()


def test_bad_last_event_id_and_unknown_study(client: TestClient) -> None:
    sid = create_study(client, name="errors", **QUIET)["id"]
    url = f"{API}/studies/{sid}/events"
    for bad in ("nope", "12", "1-2-3", "-1-2", "99999999999999999999-1"):
        assert_error(client.get(url, headers={"Last-Event-ID": bad}), 400, "bad_cursor")
    assert_error(client.get(url, params={"last_event_id": "x"}), 400, "bad_cursor")
    assert_error(client.get(f"{API}/studies/123456/events"), 404, "not_found")


def _borrowed(engine: Engine) -> int:
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


def test_an_idle_stream_holds_no_connection_and_ends_cleanly(
    client: TestClient, engine: Engine
) -> None:
    sid = create_study(client, name="idle", **QUIET)["id"]

    async def scenario() -> None:
        broadcaster = EventBroadcaster(asyncio.get_running_loop())
        timing = StreamTiming(heartbeat_s=30, repoll_s=30)
        live = LiveService(UnitOfWork(engine), broadcaster, timing)
        start = live.start_position(sid, None)
        stream = live.stream(sid, start)
        assert (await anext(stream)).endswith(f"id: {start}\n\n")
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        assert _borrowed(engine) == 0  # idle: no connection borrowed
        assert len(broadcaster) == 1
        trial = await asyncio.to_thread(ask, client, sid)
        broadcaster.notify(sid)  # what the LISTEN thread does on NOTIFY hpo_events
        chunk = await asyncio.wait_for(waiting, 5)
        assert chunk.startswith("event: trial_started\nid: ")
        assert json.loads(chunk.split("data: ", 1)[1])["trial_id"] == trial["id"]
        await stream.aclose()  # what the response does when the client goes away
        assert len(broadcaster) == 0 and _borrowed(engine) == 0

    asyncio.run(scenario())


def test_event_positions() -> None:
    assert EventPosition.parse("123-45") == EventPosition(123, 45)
    assert str(EventPosition(7, 0)) == "7-0"
    assert EventPosition(3, 9) < EventPosition(4, 1) < EventPosition(4, 2)
