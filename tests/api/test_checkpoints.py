"""Checkpoints: upload, download and resume on another attempt, on both stores."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from service.app import create_app
from tests.api.helpers import API, ask, assert_error, complete, create_study
from tests.conftest import server_settings
from tests.support import ScratchDatabase, ServerProcess

SMALL_LIMIT = 4096


@dataclass
class Harness:
    app: FastAPI
    client: TestClient
    engine: Engine
    checkpoint_dir: Path | None  # None: the PostgreSQL store

    def put(self, trial_id: int, token: str, step: int, data: Any) -> Any:
        headers = {"X-Lease-Token": token, "X-Checkpoint-Step": str(step)}
        return self.client.put(f"{API}/trials/{trial_id}/checkpoint", content=data, headers=headers)

    def get(self, trial_id: int, token: str | None = None) -> Any:
        headers = {"X-Lease-Token": token} if token is not None else {}
        return self.client.get(f"{API}/trials/{trial_id}/checkpoint", headers=headers)

    def meta(self, trial_id: int) -> Any:
        return self.client.get(f"{API}/trials/{trial_id}/checkpoint/meta")

    def rows(self, study_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            result = conn.execute(
                text(
                    "SELECT trial_id, step, size, sha256, data FROM hpo_checkpoints"
                    " WHERE study_id = :s ORDER BY trial_id"
                ),
                {"s": study_id},
            )
            return [dict(r) for r in result.mappings()]

    def files(self, study_id: int) -> list[str]:
        assert self.checkpoint_dir is not None
        directory = self.checkpoint_dir / str(study_id)
        return sorted(os.listdir(directory)) if directory.exists() else []


@pytest.fixture(params=["postgres", "files"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def _harness(
    db: ScratchDatabase, tmp_path: Path, engine: Engine, store: str, **overrides: object
) -> Iterator[Harness]:
    directory = tmp_path / "checkpoints" if store == "files" else None
    app = create_app(server_settings(db, tmp_path, checkpoint_dir=directory, **overrides))
    with TestClient(app, headers=db.auth_headers) as client:
        yield Harness(app, client, engine, directory)


@pytest.fixture
def h(db: ScratchDatabase, tmp_path: Path, engine: Engine, store: str) -> Iterator[Harness]:
    with _harness(db, tmp_path, engine, store) as harness:
        yield harness


@pytest.fixture
def small(db: ScratchDatabase, tmp_path: Path, engine: Engine, store: str) -> Iterator[Harness]:
    with _harness(db, tmp_path, engine, store, checkpoint_max_bytes=SMALL_LIMIT) as harness:
        yield harness


def _token(trial: dict[str, Any]) -> str:
    return str(trial["lease"]["token"])


def _wait_for_state(client: TestClient, trial_id: int, state: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"{API}/trials/{trial_id}").json()["state"] == state:
            return
        time.sleep(0.1)
    raise AssertionError(f"trial {trial_id} never became {state}")


def test_round_trip(h: Harness) -> None:
    sid = create_study(h.client)["id"]
    trial = ask(h.client, sid)
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).hexdigest()

    put = h.put(trial["id"], _token(trial), 3, data)
    assert put.status_code == 200, put.text
    meta = put.json()
    assert meta["trial_id"] == trial["id"] and meta["step"] == 3
    assert meta["size"] == len(data) and meta["sha256"] == digest and meta["updated_at"]

    got = h.get(trial["id"], _token(trial))
    assert got.status_code == 200, got.text
    assert got.content == data
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["x-checkpoint-step"] == "3"
    assert got.headers["etag"] == f'"{digest}"'
    assert got.headers["content-length"] == str(len(data))
    assert h.meta(trial["id"]).json() == meta

    [row] = h.rows(sid)
    if h.checkpoint_dir is None:
        assert bytes(row["data"]) == data
    else:
        assert row["data"] is None
        assert (h.checkpoint_dir / str(sid) / f"{trial['id']}.ckpt").read_bytes() == data
    assert h.client.get(f"{API}/trials/{trial['id']}").json()["state"] == "running"


def test_a_new_checkpoint_replaces_the_last_one(h: Harness) -> None:
    sid = create_study(h.client)["id"]
    trial = ask(h.client, sid)
    for step in range(3):
        assert h.put(trial["id"], _token(trial), step, f"epoch {step}".encode()).status_code == 200
    got = h.get(trial["id"], _token(trial))
    assert got.content == b"epoch 2" and got.headers["x-checkpoint-step"] == "2"
    [row] = h.rows(sid)
    assert row["step"] == 2 and row["size"] == len(b"epoch 2")
    if h.checkpoint_dir is not None:
        assert h.files(sid) == [f"{trial['id']}.ckpt"]  # no temporary files left behind


def test_an_empty_checkpoint_is_stored(h: Harness) -> None:
    trial = ask(h.client, create_study(h.client)["id"])
    assert h.put(trial["id"], _token(trial), 0, b"").json()["size"] == 0
    got = h.get(trial["id"], _token(trial))
    assert got.status_code == 200 and got.content == b""


def test_over_the_size_limit_is_413_and_stores_nothing(small: Harness) -> None:
    sid = create_study(small.client)["id"]
    trial = ask(small.client, sid)
    token = _token(trial)
    # Nothing stored yet: a refused upload leaves no checkpoint.
    error = assert_error(
        small.put(trial["id"], token, 0, b"x" * (SMALL_LIMIT + 1)), 413, "payload_too_large"
    )
    assert f"{SMALL_LIMIT} bytes" in error["message"] and "MiB" in error["message"]
    assert error["details"] == {"max_bytes": SMALL_LIMIT}
    assert_error(small.meta(trial["id"]), 404, "not_found")
    assert small.rows(sid) == []

    exact = b"k" * SMALL_LIMIT
    assert small.put(trial["id"], token, 1, exact).status_code == 200
    # A chunked upload (no Content-Length) is counted while it is read.
    chunks = (b"y" * 1500 for _ in range(3))
    chunked = small.put(trial["id"], token, 2, chunks)
    assert_error(chunked, 413, "payload_too_large")
    got = small.get(trial["id"], token)
    assert got.content == exact and got.headers["x-checkpoint-step"] == "1"
    if small.checkpoint_dir is not None:
        assert small.files(sid) == [f"{trial['id']}.ckpt"]


def test_a_wrong_token_is_409_and_changes_nothing(h: Harness) -> None:
    sid = create_study(h.client)["id"]
    trial = ask(h.client, sid)
    assert h.put(trial["id"], _token(trial), 1, b"good").status_code == 200
    before = h.meta(trial["id"]).json()

    error = assert_error(h.put(trial["id"], "not-the-token", 2, b"evil"), 409, "lease_lost")
    assert error["details"] == {"trial_id": trial["id"], "state": "running"}
    assert_error(h.get(trial["id"], "not-the-token"), 409, "lease_lost")
    assert_error(h.get(trial["id"]), 409, "lease_lost")  # running: a token is needed

    assert h.meta(trial["id"]).json() == before
    assert h.get(trial["id"], _token(trial)).content == b"good"
    after = h.client.get(f"{API}/trials/{trial['id']}").json()
    assert after["state"] == "running" and after["attempt"] == 1


def test_unknown_trial_is_404(h: Harness) -> None:
    missing = 2_000_000_000
    assert_error(h.put(missing, "token", 0, b"data"), 404, "not_found")
    assert_error(h.get(missing, "token"), 404, "not_found")
    assert_error(h.get(missing), 404, "not_found")
    assert_error(h.meta(missing), 404, "not_found")


def test_no_checkpoint_yet_is_404(h: Harness) -> None:
    trial = ask(h.client, create_study(h.client)["id"])
    error = assert_error(h.get(trial["id"], _token(trial)), 404, "not_found")
    assert "no checkpoint" in error["message"]
    assert_error(h.meta(trial["id"]), 404, "not_found")


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"X-Lease-Token": "t"}, "X-Checkpoint-Step"),
        ({"X-Lease-Token": "t", "X-Checkpoint-Step": "-1"}, "X-Checkpoint-Step"),
        ({"X-Lease-Token": "t", "X-Checkpoint-Step": "two"}, "X-Checkpoint-Step"),
        ({"X-Lease-Token": "t", "X-Checkpoint-Step": str(2**31)}, "X-Checkpoint-Step"),
        ({"X-Checkpoint-Step": "1"}, "X-Lease-Token"),
    ],
)
def test_bad_headers_are_422(h: Harness, headers: dict[str, str], field: str) -> None:
    sid = create_study(h.client)["id"]
    trial = ask(h.client, sid)
    if "X-Lease-Token" in headers:
        headers["X-Lease-Token"] = _token(trial)
    response = h.client.put(f"{API}/trials/{trial['id']}/checkpoint", content=b"x", headers=headers)
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["loc"] == ["header", field]
    assert h.rows(sid) == []


def test_released_trial_resumes_from_its_checkpoint(h: Harness) -> None:
    sid = create_study(h.client)["id"]
    first = ask(h.client, sid, worker="leaving")
    assert h.put(first["id"], _token(first), 4, b"after epoch 4").status_code == 200
    released = h.client.post(
        f"{API}/trials/{first['id']}/release", json={"lease_token": _token(first)}
    )
    assert released.status_code == 204
    assert_error(h.get(first["id"], _token(first)), 409, "lease_lost")  # waiting, no lease

    second = ask(h.client, sid, worker="resuming")
    assert second["id"] == first["id"] and second["attempt"] == 2
    got = h.get(second["id"], _token(second))
    assert got.status_code == 200
    assert got.content == b"after epoch 4" and got.headers["x-checkpoint-step"] == "4"

    assert_error(h.get(first["id"], _token(first)), 409, "lease_lost")
    assert_error(h.put(first["id"], _token(first), 9, b"stale"), 409, "lease_lost")
    assert h.put(second["id"], _token(second), 5, b"after epoch 5").status_code == 200
    assert h.get(second["id"], _token(second)).content == b"after epoch 5"


def test_expired_trial_resumes_from_its_checkpoint(h: Harness) -> None:
    sid = create_study(h.client, lease_seconds=1, max_retries=2)["id"]
    first = ask(h.client, sid, worker="dies")
    assert h.put(first["id"], _token(first), 0, b"epoch 0").status_code == 200
    _wait_for_state(h.client, first["id"], "waiting")  # the reaper took the lease back

    late = assert_error(h.put(first["id"], _token(first), 1, b"late"), 409, "lease_lost")
    assert late["details"]["state"] == "waiting"
    assert h.client.get(f"{API}/trials/{first['id']}").json()["state"] == "waiting"
    assert h.meta(first["id"]).json()["step"] == 0

    second = ask(h.client, sid, worker="survivor")
    assert second["id"] == first["id"] and second["attempt"] == 2
    got = h.get(second["id"], _token(second))
    assert got.content == b"epoch 0" and got.headers["x-checkpoint-step"] == "0"
    assert_error(h.get(first["id"], _token(first)), 409, "lease_lost")
    assert_error(h.put(first["id"], _token(first), 1, b"late"), 409, "lease_lost")


def test_a_finished_trials_checkpoint_needs_no_token(h: Harness) -> None:
    sid = create_study(h.client)["id"]
    trial = ask(h.client, sid)
    assert h.put(trial["id"], _token(trial), 7, b"trained model").status_code == 200
    complete(h.client, trial, 0.25)

    got = h.get(trial["id"])
    assert got.status_code == 200 and got.content == b"trained model"
    assert h.get(trial["id"], "any-old-token").content == b"trained model"
    assert_error(h.put(trial["id"], _token(trial), 8, b"after the end"), 409, "lease_lost")
    assert h.meta(trial["id"]).json()["step"] == 7


def test_deleting_a_study_removes_its_checkpoints(h: Harness) -> None:
    sid = create_study(h.client)["id"]
    other = create_study(h.client, name="other")["id"]
    trials = [ask(h.client, sid), ask(h.client, sid), ask(h.client, other)]
    for trial in trials:
        assert h.put(trial["id"], _token(trial), 0, b"weights").status_code == 200

    assert h.client.delete(f"{API}/studies/{sid}").status_code == 204
    assert h.rows(sid) == []  # ON DELETE CASCADE
    assert_error(h.meta(trials[0]["id"]), 404, "not_found")
    store = h.app.state.checkpoints.store
    store.delete_study(sid)  # what study deletion will call once wired
    store.delete_study(sid)  # idempotent
    if h.checkpoint_dir is not None:
        assert not (h.checkpoint_dir / str(sid)).exists()
        assert h.files(other) == [f"{trials[2]['id']}.ckpt"]
    assert len(h.rows(other)) == 1
    assert h.get(trials[2]["id"], _token(trials[2])).content == b"weights"


def test_file_store_never_serves_bytes_that_do_not_match_their_metadata(
    db: ScratchDatabase, tmp_path: Path, engine: Engine
) -> None:
    """A crash between the file's rename and the metadata's commit leaves newer bytes than
    the row describes: the download says there is no usable checkpoint instead."""
    with _harness(db, tmp_path, engine, "files") as h:
        sid = create_study(h.client)["id"]
        trial = ask(h.client, sid)
        assert h.put(trial["id"], _token(trial), 3, b"epoch 3").status_code == 200
        assert h.checkpoint_dir is not None
        path = h.checkpoint_dir / str(sid) / f"{trial['id']}.ckpt"
        path.write_bytes(b"epoch 4")  # renamed into place, row never committed
        assert_error(h.get(trial["id"], _token(trial)), 404, "not_found")
        path.unlink()
        assert_error(h.get(trial["id"], _token(trial)), 404, "not_found")
        assert h.put(trial["id"], _token(trial), 5, b"epoch 5").status_code == 200
        assert h.get(trial["id"], _token(trial)).content == b"epoch 5"


def test_openapi_documents_the_checkpoint_routes(h: Harness) -> None:
    paths = h.client.get("/openapi.json").json()["paths"]
    route = paths["/api/v1/trials/{trial_id}/checkpoint"]
    assert "application/octet-stream" in route["put"]["requestBody"]["content"]
    assert {"404", "409", "413"} <= set(route["put"]["responses"])
    assert "application/octet-stream" in route["get"]["responses"]["200"]["content"]
    headers = {p["name"] for p in route["put"]["parameters"] if p["in"] == "header"}
    assert headers == {"X-Lease-Token", "X-Checkpoint-Step"}
    assert "/api/v1/trials/{trial_id}/checkpoint/meta" in paths


@pytest.mark.slow
def test_a_declared_oversize_body_is_refused_before_it_is_sent(db: ScratchDatabase) -> None:
    """Through a real server: the 413 comes back on the headers alone."""
    env = {"HPO_CHECKPOINT_MAX_BYTES": str(SMALL_LIMIT)}
    with (
        ServerProcess(db.url_string, env=env) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(
            b"PUT /api/v1/trials/1/checkpoint HTTP/1.1\r\nHost: test\r\n"
            b"X-Lease-Token: t\r\nX-Checkpoint-Step: 0\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Length: 100000000\r\n\r\n"
        )
        answer = _read_response(sock)
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"payload_too_large"' in answer and f"{SMALL_LIMIT} bytes" in answer


def _read_response(sock: socket.socket) -> str:
    """One HTTP/1.1 response with a Content-Length, read off a raw socket."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        buffer += _recv(sock)
    head, _, body = buffer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += _recv(sock)
    return (head + b"\r\n\r\n" + body).decode("latin-1")


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed the connection without a complete response"
    return chunk
