"""The faulty proxy itself: each drop mode breaks the exchange where it says it does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.faults.proxy import DropMode, EveryNth, FaultyProxy, endpoint


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn
    handled: list[str] = []  # shared with the test

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.handled.append(self.path)
        body = b'{"ok": true, "padding": "' + b"x" * 200 + b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[ThreadingHTTPServer]:
    _Handler.handled = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_endpoint_names_hide_ids_and_the_prefix() -> None:
    line = "POST /api/v1/trials/17/complete?x=1 HTTP/1.1"
    assert endpoint(line) == "POST /trials/{id}/complete"


def test_requests_pass_untouched_without_a_policy(upstream: ThreadingHTTPServer) -> None:
    with FaultyProxy(upstream.server_address[1]) as proxy, httpx.Client() as client:
        for _ in range(3):  # one keep-alive connection, three requests
            assert client.post(f"{proxy.url}/a", json={}).json()["ok"] is True
        assert proxy.requests == 3 and not proxy.drops()
    assert _Handler.handled == ["/a"] * 3


@pytest.mark.parametrize(
    ("mode", "server_saw_it"), [("before", False), ("after", True), ("mid", True)]
)
def test_a_drop_breaks_the_request_where_it_says(
    upstream: ThreadingHTTPServer, mode: DropMode, server_saw_it: bool
) -> None:
    policy = EveryNth(2, lambda name: name == "POST /b", modes=(mode,))
    with FaultyProxy(upstream.server_address[1], policy) as proxy, httpx.Client() as client:
        assert client.post(f"{proxy.url}/b", json={}).status_code == 200  # 1st: passes
        with pytest.raises(httpx.TransportError):
            client.post(f"{proxy.url}/b", json={})  # 2nd: dropped
        assert client.post(f"{proxy.url}/b", json={}).status_code == 200  # the client recovers
        assert proxy.drops() == {(mode, "POST /b"): 1}
        lost = {(mode, "POST /b", 200): 1} if server_saw_it else {}
        assert proxy.lost_answers() == lost
    assert len(_Handler.handled) == (3 if server_saw_it else 2)
