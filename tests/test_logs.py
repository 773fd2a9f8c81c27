"""Structured logs: every line written while a request is handled carries its request id (the
client's X-Request-ID or a new one, echoed back), in text or JSON; a real ``hpo serve`` with
HPO_LOG_FORMAT=json writes nothing but JSON lines, uvicorn's access lines included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.app import create_app
from service.observability.logs import JsonFormatter, RequestIdFilter, TextFormatter
from service.observability.request_id import REQUEST_ID
from tests.api.helpers import API
from tests.conftest import server_settings
from tests.support import ScratchDatabase, free_port

chatty = logging.getLogger("tests.chatty")


def _capture(formatter: logging.Formatter) -> Iterator[io.StringIO]:
    """Root's records through a handler like ``hpo serve``'s, into a buffer, for one test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    yield from _capture(JsonFormatter())


@pytest.fixture
def text_logs() -> Iterator[io.StringIO]:
    yield from _capture(TextFormatter())


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def chatty_app(db: ScratchDatabase, tmp_path: Path) -> FastAPI:
    """The real app (its middleware and error handlers) plus routes that log."""
    app = create_app(server_settings(db, tmp_path))

    @app.get("/test/sync/{n}")
    def sync_route(n: int) -> dict[str, int]:  # runs in the thread pool
        chatty.info("sync %d starts", n)
        time.sleep(0.01)
        chatty.warning("sync %d ends", n, extra={"n": n})
        return {"n": n}

    @app.get("/test/async/{n}")
    async def async_route(n: int) -> dict[str, int]:
        chatty.info("async %d starts", n)
        await asyncio.sleep(0.01)  # the other requests run meanwhile
        chatty.info("async %d ends", n)
        return {"n": n}

    @app.get("/test/boom")
    def boom() -> None:
        chatty.info("about to fail")
        raise RuntimeError("kaboom")

    return app


def _call_concurrently(app: FastAPI, paths: list[str]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            calls = [
                client.get(path, headers={"X-Request-ID": f"req-{i}"} if i % 2 else {})
                for i, path in enumerate(paths)
            ]
            return list(await asyncio.gather(*calls))

    return asyncio.run(run())


def test_every_line_of_a_request_carries_its_id(
    chatty_app: FastAPI, json_logs: io.StringIO
) -> None:
    paths = [f"/test/{kind}/{n}" for n in range(8) for kind in ("sync", "async")]
    responses = _call_concurrently(chatty_app, paths)
    lines = [line for line in _lines(json_logs) if line["logger"] == "tests.chatty"]
    assert len(lines) == 2 * len(paths)
    for i, (path, response) in enumerate(zip(paths, responses, strict=True)):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        assert request_id == f"req-{i}" if i % 2 else len(request_id) == 32
        kind, n = path.split("/")[2:]
        mine = [line for line in lines if line["message"].startswith(f"{kind} {n} ")]
        assert [line["request_id"] for line in mine] == [request_id, request_id], path
    assert len({line["request_id"] for line in lines}) == len(paths)
    ends = next(line for line in lines if line["message"] == "sync 3 ends")
    assert ends["level"] == "WARNING" and ends["n"] == 3 and ends["time"].endswith("+00:00")


def test_an_unhandled_error_is_logged_with_the_request_id(
    chatty_app: FastAPI, json_logs: io.StringIO
) -> None:
    _, response = _call_concurrently(chatty_app, ["/healthz", "/test/boom"])  # req-1
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert response.headers["x-request-id"] == "req-1"  # echoed by the error handler
    lines = _lines(json_logs)
    before = next(line for line in lines if line["message"] == "about to fail")
    error = next(line for line in lines if line["logger"] == "service.api.errors")
    assert error["level"] == "ERROR" and "/test/boom" in error["message"]
    assert error["request_id"] == before["request_id"] == "req-1"
    assert "RuntimeError: kaboom" in error["exception"]


def test_text_lines_carry_the_request_id(text_logs: io.StringIO) -> None:
    token = REQUEST_ID.set("abc-123")
    try:
        chatty.info("inside")
    finally:
        REQUEST_ID.reset(token)
    chatty.info("outside")
    inside, outside = text_logs.getvalue().splitlines()
    assert inside.endswith(" INFO tests.chatty [abc-123] inside")
    assert outside.endswith(" INFO tests.chatty [-] outside")


def test_no_request_id_outside_requests(json_logs: io.StringIO) -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        chatty.exception("background failure")
    (line,) = _lines(json_logs)
    assert "request_id" not in line
    assert line["message"] == "background failure" and line["level"] == "ERROR"
    assert "ValueError: bad value" in line["exception"]


@pytest.mark.slow
def test_a_real_server_writes_json_lines(db: ScratchDatabase, tmp_path: Path) -> None:
    """``hpo serve`` with HPO_LOG_FORMAT=json: uvicorn's lines, the access log and the service's
    own warnings are JSON, and those of one request share its id."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    checkpoints = tmp_path / "checkpoints"
    env = {
        **os.environ,
        "HPO_DATABASE_URL": db.url_string,
        "HPO_PORT": str(port),
        "HPO_LOG_FORMAT": "json",
        "HPO_LOG_LEVEL": "info",
        "HPO_CHECKPOINT_DIR": str(checkpoints),
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(url, proc)
            missing_id, made_id = _requests_that_log(url, db.auth_headers, checkpoints)
        finally:
            proc.terminate()
            proc.wait(timeout=15)

    lines = [json.loads(line) for line in log_path.read_text().splitlines()]  # all of them
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    assert any(line["message"] == "Application startup complete." for line in lines)
    assert all("request_id" not in line for line in lines if line["logger"] == "uvicorn.error")
    of_missing = [line for line in lines if line.get("request_id") == missing_id]
    assert {line["logger"] for line in of_missing} == {
        "service.checkpoints.file_store",
        "uvicorn.access",
    }
    warning = next(line for line in of_missing if line["level"] == "WARNING")
    assert "is missing" in warning["message"]
    access = next(line for line in of_missing if line["logger"] == "uvicorn.access")
    assert access["http"]["method"] == "GET" and access["http"]["path"].endswith("/checkpoint")
    (made,) = [line for line in lines if line.get("request_id") == made_id]
    assert made["http"]["path"] == "/healthz" and made["http"]["status"] == 200
    # Every access line has a request id.
    assert all("request_id" in line for line in lines if line["logger"] == "uvicorn.access")


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become ready")


def _requests_that_log(url: str, auth: dict[str, str], checkpoints: Path) -> tuple[str, str]:
    """A checkpoint download whose file has vanished (the store logs a warning), with a given
    X-Request-ID; a health check without one. Returns both ids."""
    with httpx.Client(base_url=url, headers=auth) as client:
        study = client.post(
            f"{API}/studies",
            json={"name": "logs", "search_space": {"x": {"type": "float", "low": 0, "high": 1}}},
        )
        assert study.status_code == 201, study.text
        trial = client.post(f"{API}/studies/{study.json()['id']}/trials", json={"worker_id": "w"})
        assert trial.status_code == 200, trial.text
        trial_id, token = trial.json()["id"], trial.json()["lease"]["token"]
        put = client.put(
            f"{API}/trials/{trial_id}/checkpoint",
            content=b"weights",
            headers={"X-Lease-Token": token, "X-Checkpoint-Step": "1"},
        )
        assert put.status_code == 200, put.text
        for path in checkpoints.rglob("*.ckpt"):
            path.unlink()
        missing = client.get(
            f"{API}/trials/{trial_id}/checkpoint",
            headers={"X-Lease-Token": token, "X-Request-ID": "ckpt-gone-1"},
        )
        assert missing.headers["x-request-id"] == "ckpt-gone-1"
        made = httpx.get(url + "/healthz").headers["x-request-id"]
    return "ckpt-gone-1", made
