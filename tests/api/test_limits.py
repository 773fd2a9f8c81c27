"""Hostile input: every limit answers a precise 4xx, and no input reaches SQL but as a value.

The limits themselves are listed in docs/api.md ("Limits"); these tests pin each one at its
edge and check that what a database cannot hold (NUL characters, lone surrogates, ids beyond
PostgreSQL's ``integer``) is refused before it gets there.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.documents import MAX_DEPTH, MAX_KEY_LENGTH
from service.ids import MAX_ID
from service.pagination import MAX_CURSOR_LENGTH, MAX_LIMIT
from service.spec import MAX_PARAMS
from service.spec.search_space import MAX_CHOICE_LENGTH, MAX_CHOICES
from service.studies.schemas import (
    MAX_METADATA_BYTES,
    MAX_METADATA_KEYS,
    MAX_STUDY_NAME_LENGTH,
    MAX_TASK_BYTES,
)
from service.trials.schemas import (
    MAX_REASON_LENGTH,
    MAX_USER_ATTRS,
    MAX_USER_ATTRS_BYTES,
    MAX_WAIT_SECONDS,
    MAX_WORKER_ID_LENGTH,
)
from tests.api.helpers import API, ask, assert_error, complete, create_study, study_body
from tests.conftest import server_settings
from tests.support import ScratchDatabase, ServerProcess

SMALL_BODY = 4096
SMALL_CHECKPOINTS = 64 * 1024
INJECTION = "x'); DROP TABLE studies; --"


@pytest.fixture
def small(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    """A server whose bodies may be at most 4 KiB (checkpoints 64 KiB)."""
    settings = server_settings(
        db, tmp_path, max_body_bytes=SMALL_BODY, checkpoint_max_bytes=SMALL_CHECKPOINTS
    )
    with TestClient(create_app(settings), headers=db.auth_headers) as client:
        yield client


def post_raw(client: TestClient, path: str, text: str) -> Any:
    """POST ``text`` as it is: JSON that ``json=`` cannot send (NaN, lone surrogates)."""
    headers = {"Content-Type": "application/json"}
    return client.post(API + path, content=text.encode("utf-8", "surrogatepass"), headers=headers)


def validation_error(response: Any, where: str) -> dict[str, Any]:
    error = assert_error(response, 422, "validation_error")
    assert where in error["message"], error["message"]
    return error


# ---- request bodies ----


def test_a_body_over_the_limit_is_413_before_it_is_read(small: TestClient) -> None:
    body = study_body(metadata={"blob": "x" * SMALL_BODY})
    error = assert_error(small.post(f"{API}/studies", json=body), 413, "payload_too_large")
    assert error["details"] == {"max_bytes": SMALL_BODY}
    assert f"{SMALL_BODY} bytes" in error["message"] and "HPO_MAX_BODY_BYTES" in error["message"]
    # Whatever the route and method: the limit is the server's, not the endpoint's.
    big = b"x" * (SMALL_BODY + 1)
    assert_error(small.request("GET", f"{API}/studies", content=big), 413, "payload_too_large")
    assert small.get(f"{API}/studies").json()["items"] == []


def test_a_streamed_body_is_counted_as_it_arrives(small: TestClient) -> None:
    chunks = (b" " * 1024 for _ in range(SMALL_BODY // 1024 + 1))  # no Content-Length
    headers = {"Content-Type": "application/json"}
    response = small.post(f"{API}/studies", content=chunks, headers=headers)
    error = assert_error(response, 413, "payload_too_large")
    assert error["details"] == {"max_bytes": SMALL_BODY}


def test_a_body_at_the_limit_is_read(small: TestClient) -> None:
    body = json.dumps(study_body()).encode()
    padded = body + b" " * (SMALL_BODY - len(body))
    headers = {"Content-Type": "application/json"}
    assert small.post(f"{API}/studies", content=padded, headers=headers).status_code == 201


@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream"])
def test_a_body_that_is_not_json_is_422_not_500(client: TestClient, content_type: str) -> None:
    """Bytes that are not UTF-8 are not echoed back: the error once failed to encode them."""
    headers = {"Content-Type": content_type}
    response = client.post(f"{API}/studies", content=b"\xff\xfe\x00", headers=headers)
    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["input"] == "<3 bytes, not shown>"
    bad_json = client.post(
        f"{API}/studies", content=b"\xff\xfe", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] in (
        "bad_request",
        "malformed_json",
    )


def test_checkpoints_keep_their_own_larger_limit(small: TestClient) -> None:
    trial = ask(small, create_study(small)["id"])
    headers = {"X-Lease-Token": trial["lease"]["token"], "X-Checkpoint-Step": "0"}
    url = f"{API}/trials/{trial['id']}/checkpoint"
    data = b"c" * (SMALL_CHECKPOINTS - 1)  # far above the 4 KiB of other bodies
    assert small.put(url, content=data, headers=headers).status_code == 200
    over = small.put(url, content=data + b"cc", headers=headers)
    error = assert_error(over, 413, "payload_too_large")
    assert error["details"] == {"max_bytes": SMALL_CHECKPOINTS}
    assert "HPO_CHECKPOINT_MAX_BYTES" in error["message"]


@pytest.mark.slow
def test_a_declared_oversize_body_is_refused_before_it_is_sent(db: ScratchDatabase) -> None:
    """Through a real server: the 413 comes back on the headers alone."""
    env = {"HPO_MAX_BODY_BYTES": str(SMALL_BODY)}
    with (
        ServerProcess(db.url_string, env=env, token=db.token) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock,
    ):
        sock.sendall(
            b"POST /api/v1/studies HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
        )
        answer = b""
        while b'"payload_too_large"' not in answer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without a 413: {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer


# ---- studies ----


def test_study_name_length(client: TestClient) -> None:
    longest = "n" * MAX_STUDY_NAME_LENGTH
    assert create_study(client, name=longest)["name"] == longest
    too_long = client.post(f"{API}/studies", json=study_body("n" * (MAX_STUDY_NAME_LENGTH + 1)))
    validation_error(too_long, "name")
    by_name = client.get(f"{API}/studies/by-name/{'n' * (MAX_STUDY_NAME_LENGTH + 1)}")
    validation_error(by_name, "name")


def test_a_name_with_a_nul_is_refused_not_looked_up(client: TestClient) -> None:
    validation_error(client.get(f"{API}/studies/by-name/a%00b"), "name")
    validation_error(client.post(f"{API}/studies", json=study_body("a\x00b")), "name")


@pytest.mark.parametrize(
    ("metadata", "where"),
    [
        ({f"k{i}": i for i in range(MAX_METADATA_KEYS + 1)}, "metadata"),
        ({"k" * (MAX_KEY_LENGTH + 1): 1}, "metadata"),
        ({"blob": "x" * MAX_METADATA_BYTES}, "metadata"),
        ({"a\x00b": 1}, "metadata"),
        ({"note": "a\x00b"}, "metadata"),
    ],
    ids=["keys", "key-length", "bytes", "nul-in-key", "nul-in-value"],
)
def test_metadata_limits(client: TestClient, metadata: dict[str, Any], where: str) -> None:
    validation_error(client.post(f"{API}/studies", json=study_body(metadata=metadata)), where)
    sid = create_study(client)["id"]
    patch = client.patch(f"{API}/studies/{sid}", json={"metadata": metadata})
    validation_error(patch, where)
    assert client.get(f"{API}/studies/{sid}").json()["metadata"] == {"owner": "vision-team"}


def test_metadata_size_is_counted_as_json(client: TestClient) -> None:
    error = validation_error(
        client.post(f"{API}/studies", json=study_body(metadata={"blob": "x" * 70_000})),
        "metadata",
    )
    assert f"at most {MAX_METADATA_BYTES}" in error["message"]
    fits = {"blob": "x" * (MAX_METADATA_BYTES - 100)}
    assert create_study(client, metadata=fits)["metadata"] == fits


def test_metadata_depth(client: TestClient) -> None:
    nested: Any = 1
    for _ in range(MAX_DEPTH):
        nested = [nested]
    error = validation_error(
        client.post(f"{API}/studies", json=study_body(metadata={"deep": nested})), "metadata"
    )
    assert f"deeper than {MAX_DEPTH}" in error["message"]
    assert create_study(client, metadata={"deep": nested[0]})["metadata"]["deep"] == nested[0]
    # Deeper than the error could echo back (it once failed to, with a 500).
    text = json.dumps(study_body("deeper", metadata={"deep": 0}))
    text = text.replace('"deep": 0', '"deep": ' + "[" * 600 + "]" * 600)
    error = validation_error(post_raw(client, "/studies", text), "metadata")
    assert error["details"][0]["input"] == "<nested more than 8 levels, not shown>"


def test_what_json_may_spell_but_no_database_can_hold(client: TestClient) -> None:
    """A lone surrogate and NaN are refused, and the error that says so is valid JSON."""
    text = json.dumps(study_body(metadata={"note": "SURROGATE"})).replace("SURROGATE", "\\ud800")
    error = validation_error(post_raw(client, "/studies", text), "metadata")
    assert "lone surrogate" in error["message"]
    text = json.dumps(study_body(metadata={"ratio": float("nan")}))
    assert "NaN" in text
    error = validation_error(post_raw(client, "/studies", text), "metadata")
    assert "finite" in error["message"]
    assert client.get(f"{API}/studies").json()["items"] == []


def test_task_limits(client: TestClient) -> None:
    big = {"name": "mlp", "blob": "x" * MAX_TASK_BYTES}
    validation_error(client.post(f"{API}/studies", json=study_body(task=big)), "task")
    for name in ["", "t" * 257, "a\x00b", "a\nb"]:
        bad = client.post(f"{API}/studies", json=study_body(task={"name": name}))
        assert "name" in validation_error(bad, "task")["message"]


def test_metric_names(client: TestClient) -> None:
    validation_error(
        client.post(f"{API}/studies", json=study_body(metric_names=["loss\x00"])), "metric_names"
    )
    too_many = study_body(directions=["minimize"] * 17, metric_names=["m"] * 17)
    validation_error(client.post(f"{API}/studies", json=too_many), "directions")


def test_search_space_size(client: TestClient) -> None:
    space = {f"p{i}": {"type": "int", "low": 0, "high": 1} for i in range(MAX_PARAMS + 1)}
    validation_error(client.post(f"{API}/studies", json=study_body(search_space=space)), "search")
    choices = {"c": {"type": "categorical", "choices": list(range(MAX_CHOICES + 1))}}
    validation_error(
        client.post(f"{API}/studies", json=study_body(search_space=choices)), "choices"
    )


@pytest.mark.parametrize(
    ("choice", "says"),
    [
        ("c" * (MAX_CHOICE_LENGTH + 1), f"at most {MAX_CHOICE_LENGTH} characters"),
        ("a\x00b", "NUL"),
    ],
)
def test_categorical_choice_strings(client: TestClient, choice: str, says: str) -> None:
    space = {"c": {"type": "categorical", "choices": ["ok", choice]}}
    error = validation_error(
        client.post(f"{API}/studies", json=study_body(search_space=space)), "search_space.c"
    )
    assert f"choice 1: a choice {'may' if 'most' in says else 'must'}" in error["message"]
    assert says in error["message"]


def test_a_float_step_too_small_to_count_is_refused(client: TestClient) -> None:
    """Found by schemathesis: the step check overflowed the decimal context (500)."""
    space = {"x": {"type": "float", "low": -1e300, "high": 1e300, "step": 1e-300}}
    error = assert_error(
        client.post(f"{API}/studies", json=study_body(search_space=space)), 422, "validation_error"
    )
    assert "step is too small" in error["message"]


def test_sampler_options_are_bounded(client: TestClient) -> None:
    options = {f"o{i}": 1 for i in range(65)}
    body = study_body(sampler={"name": "tpe", "options": options})
    validation_error(client.post(f"{API}/studies", json=body), "sampler.options")


# ---- trials ----


def test_worker_id_length(client: TestClient) -> None:
    sid = create_study(client)["id"]
    longest = "w" * MAX_WORKER_ID_LENGTH
    assert ask(client, sid, longest)["id"] > 0
    too_long = {"worker_id": longest + "w"}
    validation_error(client.post(f"{API}/studies/{sid}/trials", json=too_long), "worker_id")
    validation_error(client.post(f"{API}/trials/claim", json=too_long), "worker_id")


def test_claim_limits(client: TestClient) -> None:
    claim = f"{API}/trials/claim"
    for wait in [-1, MAX_WAIT_SECONDS + 0.5]:
        bad = client.post(claim, json={"worker_id": "w", "wait_seconds": wait})
        validation_error(bad, "wait_seconds")
    bad = client.post(claim, json={"worker_id": "w", "study_ids": [MAX_ID + 1]})
    validation_error(bad, "study_ids")
    validation_error(client.post(claim, json={"worker_id": "w", "tasks": ["a\x00"]}), "tasks")
    many = client.post(claim, json={"worker_id": "w", "tasks": ["t"] * 101})
    validation_error(many, "tasks")


def test_enqueue_limits(client: TestClient) -> None:
    sid = create_study(client)["id"]
    url = f"{API}/studies/{sid}/trials/enqueue"
    params = {f"p{i}": 1 for i in range(MAX_PARAMS + 1)}
    validation_error(client.post(url, json={"params": params}), "params")
    attrs = {f"a{i}": i for i in range(MAX_USER_ATTRS + 1)}
    validation_error(client.post(url, json={"params": {}, "user_attrs": attrs}), "user_attrs")


def test_user_attrs_limits(client: TestClient) -> None:
    trial = ask(client, create_study(client)["id"])
    token = trial["lease"]["token"]
    url = f"{API}/trials/{trial['id']}/attrs"
    too_many = {f"a{i}": i for i in range(MAX_USER_ATTRS + 1)}
    too_big = {"blob": "x" * MAX_USER_ATTRS_BYTES}
    long_key = {"k" * (MAX_KEY_LENGTH + 1): 1}
    for attrs in [too_many, too_big, long_key, {"a\x00": 1}, {}]:
        validation_error(client.post(url, json={"lease_token": token, "user_attrs": attrs}), "")
    done = complete(client, trial, 0.5)
    assert done["user_attrs"] == {}


def test_fail_reason(client: TestClient) -> None:
    trial = ask(client, create_study(client)["id"])
    url = f"{API}/trials/{trial['id']}/complete"
    token = trial["lease"]["token"]
    for reason in ["r" * (MAX_REASON_LENGTH + 1), "a\x00b"]:
        bad = client.post(url, json={"lease_token": token, "state": "failed", "reason": reason})
        validation_error(bad, "reason")
    traceback = "Traceback (most recent call last):\n\tline 1\n" + "r" * 1900
    failed = client.post(url, json={"lease_token": token, "state": "failed", "reason": traceback})
    assert failed.status_code == 200 and failed.json()["fail_reason"] == traceback


def test_nan_values_are_refused_with_a_json_error(client: TestClient) -> None:
    trial = ask(client, create_study(client)["id"])
    text = json.dumps({"lease_token": trial["lease"]["token"], "values": [float("nan")]})
    response = post_raw(client, f"/trials/{trial['id']}/complete", text)
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


def test_lease_tokens_are_bounded(client: TestClient) -> None:
    trial = ask(client, create_study(client)["id"])
    url = f"{API}/trials/{trial['id']}/heartbeat"
    validation_error(client.post(url, json={"lease_token": "t" * 65}), "lease_token")
    validation_error(client.post(url, json={"lease_token": "a\x00"}), "lease_token")


# ---- paths, queries and headers ----


@pytest.mark.parametrize(
    "path",
    [
        f"/studies/{MAX_ID + 1}",
        f"/studies/{2**63}/trials",
        "/studies/0/best",
        f"/trials/{2**40}",
        "/trials/-1/checkpoint/meta",
    ],
)
def test_ids_beyond_postgres_integers_are_refused(client: TestClient, path: str) -> None:
    validation_error(client.get(API + path), "")


def test_ids_beyond_postgres_integers_in_lease_calls(client: TestClient) -> None:
    body = {"lease_token": "t", "values": [1.0]}
    validation_error(client.post(f"{API}/trials/{2**40}/complete", json=body), "trial_id")


def test_page_size_and_cursor_length(client: TestClient) -> None:
    sid = create_study(client)["id"]
    for path in ["/studies", "/studies/summary", f"/studies/{sid}/trials", "/workers"]:
        validation_error(client.get(f"{API}{path}?limit={MAX_LIMIT + 1}"), "limit")
        validation_error(client.get(f"{API}{path}?limit=0"), "limit")
        assert client.get(f"{API}{path}?limit={MAX_LIMIT}").status_code == 200
        long_cursor = "c" * (MAX_CURSOR_LENGTH + 1)
        validation_error(client.get(f"{API}{path}?cursor={long_cursor}"), "cursor")


def forged(kind: str, key: Any) -> str:
    raw = json.dumps({"k": kind, "v": key}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_forged_cursors_are_400_not_500(client: TestClient) -> None:
    sid = create_study(client)["id"]
    cases = [
        ("/studies", forged("studies:", "abc")),
        ("/studies", forged("studies:", 2**40)),
        ("/studies/summary", forged("summary", 2**40)),
        (f"/studies/{sid}/trials", forged(f"trials:{sid}:number:", "1; DROP TABLE trials")),
        (f"/studies/{sid}/trials?sort=value", forged(f"trials:{sid}:value:", 3)),
        ("/workers", forged("workers:3600", "w\x00")),
    ]
    for path, cursor in cases:
        joiner = "&" if "?" in path else "?"
        response = client.get(f"{API}{path}{joiner}cursor={cursor}")
        assert_error(response, 400, "bad_cursor")


def test_idempotency_key_length(client: TestClient) -> None:
    headers = {"Idempotency-Key": "k" * 256}
    response = client.post(f"{API}/studies", json=study_body(), headers=headers)
    validation_error(response, "Idempotency-Key")


def test_last_event_id_length(client: TestClient) -> None:
    sid = create_study(client)["id"]
    response = client.get(f"{API}/studies/{sid}/events?last_event_id={'1' * 65}")
    validation_error(response, "last_event_id")


# ---- SQL: client input is only ever a bound value ----


def test_sql_metacharacters_round_trip_unchanged(client: TestClient) -> None:
    space = {
        INJECTION: {"type": "categorical", "choices": [INJECTION, "b"]},
        "lr": {"type": "float", "low": 0.1, "high": 1.0},
    }
    study = create_study(
        client,
        name=INJECTION,
        search_space=space,
        metadata={INJECTION: INJECTION},
        task={"name": INJECTION, "note": "'; --"},
        metric_names=[INJECTION],
    )
    by_name = client.get(f"{API}/studies/by-name/{INJECTION}")
    assert by_name.status_code == 200 and by_name.json()["id"] == study["id"]
    assert by_name.json()["metadata"] == {INJECTION: INJECTION}

    claim = {"worker_id": INJECTION, "tasks": [INJECTION]}
    trial = client.post(f"{API}/trials/claim", json=claim).json()
    assert trial["study_id"] == study["id"]
    token = trial["lease"]["token"]
    attrs = {"lease_token": token, "user_attrs": {INJECTION: INJECTION}}
    assert client.post(f"{API}/trials/{trial['id']}/attrs", json=attrs).status_code == 204
    done = client.post(
        f"{API}/trials/{trial['id']}/complete",
        json={"lease_token": token, "state": "failed", "reason": INJECTION},
    ).json()
    assert done["fail_reason"] == INJECTION and done["worker_id"] == INJECTION
    assert done["user_attrs"] == {INJECTION: INJECTION}
    assert done["params"][INJECTION] in (INJECTION, "b")

    # Everything is still there, and nothing else is.
    assert [s["name"] for s in client.get(f"{API}/studies").json()["items"]] == [INJECTION]
    assert client.get(f"{API}/trials/{trial['id']}").json()["fail_reason"] == INJECTION
    workers = client.get(f"{API}/workers").json()["items"]
    assert [w["worker_id"] for w in workers] == [INJECTION]


@pytest.mark.parametrize(
    "sort", ["number; DROP TABLE trials", "t.number", "-value, (SELECT 1)", "NUMBER"]
)
def test_sort_keys_are_a_whitelist(client: TestClient, sort: str) -> None:
    sid = create_study(client)["id"]
    validation_error(client.get(f"{API}/studies/{sid}/trials", params={"sort": sort}), "sort")
    assert client.get(f"{API}/studies/{sid}/trials?sort=-value").status_code == 200
