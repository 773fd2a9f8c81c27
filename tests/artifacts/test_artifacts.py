"""Artifacts in S3-compatible storage through a real API server and a real S3-protocol server
(moto's, standing in for S3/MinIO/GCS): uploads by presigned URL, confirmation under the
lease, multipart, keep best and last, retention, study deletion."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.api.helpers import study_body
from tests.artifacts.conftest import PART_BYTES, PREFIX, Bucket, lease_headers
from tests.support import ScratchDatabase, ServerProcess, hpo
from workers.client import HPOClient, LeaseLostError


def _study(api: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = study_body(name=f"s3-{os.urandom(4).hex()}", pruner={"name": "none"}, **overrides)
    response = api.post("/studies", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _ask(api: httpx.Client, study_id: int, worker: str = "w-1") -> dict[str, Any]:
    response = api.post(f"/studies/{study_id}/trials", json={"worker_id": worker})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _report(api: httpx.Client, trial: dict[str, Any], step: int, value: float) -> None:
    body = {"lease_token": trial["lease"]["token"], "step": step, "value": value}
    response = api.post(f"/trials/{trial['id']}/report", json=body)
    assert response.status_code == 200, response.text


def _complete(api: httpx.Client, trial: dict[str, Any], value: float) -> None:
    body = {"lease_token": trial["lease"]["token"], "values": [value]}
    response = api.post(f"/trials/{trial['id']}/complete", json=body)
    assert response.status_code == 200, response.text


def _client(server: ServerProcess) -> HPOClient:
    return HPOClient(server.url, token=server.token, retry_for_s=5)


def _rows(engine: Engine, table: str, study_id: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        result = conn.execute(text(f"SELECT * FROM {table} WHERE study_id = :s"), {"s": study_id})
        return [dict(r) for r in result.mappings()]


def _study_keys(bucket: Bucket, study_id: int) -> list[str]:
    return bucket.keys(f"{PREFIX}/{study_id}/")


def test_checkpoint_round_trip_goes_around_the_api(
    api: httpx.Client, server: ServerProcess, bucket: Bucket, engine: Engine
) -> None:
    study = _study(api)
    trial = _ask(api, study["id"])
    data = os.urandom(300_000)
    with _client(server) as client:
        stored = client.save_checkpoint(trial["id"], trial["lease"]["token"], 0, data)
        assert client.checkpoint_mode == "presigned"
        assert stored["state"] == "stored" and stored["size"] == len(data)
        assert stored["sha256"] == hashlib.sha256(data).hexdigest()
        # the bytes are in the bucket, under the study's prefix, and nowhere in the database
        [key] = _study_keys(bucket, study["id"])
        assert key.startswith(f"{PREFIX}/{study['id']}/{trial['id']}/checkpoint/0-")
        assert bucket.read(key) == data
        [artifact] = _rows(engine, "hpo_artifacts", study["id"])
        assert artifact["object_key"] == key and artifact["state"] == "stored"
        [checkpoint] = _rows(engine, "hpo_checkpoints", study["id"])
        assert checkpoint["data"] is None and checkpoint["step"] == 0
        # download: the API answers a presigned link, the client follows it
        assert client.get_checkpoint(trial["id"], trial["lease"]["token"]) == (0, data)
    answer = api.get(f"/trials/{trial['id']}/checkpoint", headers=lease_headers(trial))
    assert answer.status_code == 303 and answer.headers["X-Checkpoint-Step"] == "0"
    assert httpx.get(answer.headers["Location"]).content == data
    assert api.get(f"/trials/{trial['id']}/checkpoint/meta").json()["step"] == 0
    # bytes sent to the API itself are refused before they are read
    put = api.put(
        f"/trials/{trial['id']}/checkpoint",
        content=b"x",
        headers={**lease_headers(trial), "X-Checkpoint-Step": "1"},
    )
    assert put.status_code == 409 and put.json()["error"]["code"] == "use_presigned"


def _start(api: httpx.Client, trial: dict[str, Any], name: str, data: bytes, **extra: Any) -> Any:
    body = {"name": name, "size": len(data), **extra}
    return api.post(
        f"/trials/{trial['id']}/artifacts/uploads", json=body, headers=lease_headers(trial)
    )


@pytest.mark.parametrize("how", ["released", "expired_and_handed_on"])
def test_an_upload_confirmed_after_the_lease_was_lost_is_refused_and_deleted(
    api: httpx.Client, bucket: Bucket, engine: Engine, how: str
) -> None:
    study = _study(api, lease_seconds=1 if how == "expired_and_handed_on" else 60)
    trial = _ask(api, study["id"])
    data = b"weights" * 1000
    upload = _start(api, trial, "model", data)
    assert upload.status_code == 201, upload.text
    put = httpx.put(upload.json()["url"], content=data)
    assert put.status_code == 200
    [key] = _study_keys(bucket, study["id"])
    if how == "released":
        body = {"lease_token": trial["lease"]["token"]}
        assert api.post(f"/trials/{trial['id']}/release", json=body).status_code == 204
    else:
        time.sleep(1.5)  # the lease expires; the reaper hands the trial back
        again = _ask(api, study["id"], worker="w-2")
        assert again["id"] == trial["id"] and again["attempt"] == 2
    done = api.post(
        f"/trials/{trial['id']}/artifacts/uploads/{upload.json()['upload_id']}/complete",
        json={},
        headers=lease_headers(trial),
    )
    assert done.status_code == 409 and done.json()["error"]["code"] == "lease_lost"
    assert _rows(engine, "hpo_artifacts", study["id"]) == []
    assert key not in bucket.keys("") and _study_keys(bucket, study["id"]) == []
    assert api.get(f"/trials/{trial['id']}/artifacts").json()["items"] == []


def test_a_large_file_goes_up_in_parts(
    api: httpx.Client, server: ServerProcess, bucket: Bucket, tmp_path: Any
) -> None:
    study = _study(api)
    trial = _ask(api, study["id"])
    data = os.urandom(11 * 1024 * 1024)
    upload = _start(api, trial, "model", data)
    assert upload.json()["url"] is None and upload.json()["part_size"] == PART_BYTES
    assert len(upload.json()["parts"]) == 3
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    with _client(server) as client:  # the worker's client: a file, read part by part
        stored = client.upload_artifact(trial["id"], trial["lease"]["token"], "model", path)
    assert stored["state"] == "stored" and stored["size"] == len(data)
    model_keys = [k for k in _study_keys(bucket, study["id"]) if "/model/" in k]
    assert [bucket.read(k) for k in model_keys] == [data]  # the abandoned upload left nothing
    link = api.get(
        f"/trials/{trial['id']}/artifacts/{stored['id']}/url", headers=lease_headers(trial)
    )
    assert httpx.get(link.json()["url"]).content == data
    # confirming a multipart upload without its parts is refused
    other = _start(api, trial, "model", data).json()
    done = api.post(
        f"/trials/{trial['id']}/artifacts/uploads/{other['upload_id']}/complete",
        json={},
        headers=lease_headers(trial),
    )
    assert done.status_code == 422 and done.json()["error"]["code"] == "not_uploaded"


def test_only_the_best_and_the_last_checkpoint_are_kept(
    api: httpx.Client, server: ServerProcess, bucket: Bucket, engine: Engine
) -> None:
    study = _study(api)  # minimize
    trial = _ask(api, study["id"])
    token = trial["lease"]["token"]
    values = [0.5, 0.2, 0.4, 0.3, 0.6]
    kept_after: list[list[int]] = []
    with _client(server) as client:
        for step, value in enumerate(values):
            _report(api, trial, step, value)
            client.save_checkpoint(trial["id"], token, step, f"ckpt-{step}".encode())
            rows = _rows(engine, "hpo_artifacts", study["id"])
            kept_after.append(sorted(r["step"] for r in rows))
    assert kept_after == [[0], [1], [1, 2], [1, 3], [1, 4]]  # step 1: best and last at once
    keys = _study_keys(bucket, study["id"])
    assert sorted(bucket.read(k) for k in keys) == [b"ckpt-1", b"ckpt-4"]
    # another worker gets the trial after the first let go: it resumes from the last one
    assert (
        api.post(f"/trials/{trial['id']}/release", json={"lease_token": token}).status_code == 204
    )
    again = _ask(api, study["id"], worker="w-2")
    with _client(server) as client:
        assert client.get_checkpoint(trial["id"], again["lease"]["token"]) == (4, b"ckpt-4")
        with pytest.raises(LeaseLostError):
            client.get_checkpoint(trial["id"], token)  # the old lease reads nothing
    listed = api.get(f"/trials/{trial['id']}/artifacts").json()["items"]
    assert [(a["name"], a["step"]) for a in listed] == [("checkpoint", 1), ("checkpoint", 4)]


def test_retention_keeps_the_top_k_trials_of_a_finished_study(
    api: httpx.Client, server: ServerProcess, bucket: Bucket, engine: Engine
) -> None:
    study = _study(api, max_trials=3)
    values = {}
    with _client(server) as client:
        for value in (3.0, 1.0, 2.0):
            trial = _ask(api, study["id"])
            token = trial["lease"]["token"]
            client.save_checkpoint(trial["id"], token, 0, b"c")
            client.upload_artifact(trial["id"], token, "model", b"m")
            if value == 2.0:  # while a trial runs, retention is refused
                early = api.post(
                    f"/studies/{study['id']}/artifacts/retention", json={"keep_top_k": 2}
                )
                assert early.status_code == 409 and early.json()["error"]["code"] == "invalid_state"
            _complete(api, trial, value)
            values[trial["id"]] = value
    by_value = sorted(values, key=values.__getitem__)
    answer = api.post(f"/studies/{study['id']}/artifacts/retention", json={"keep_top_k": 2})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"kept_trials": by_value[:2], "deleted_objects": 2}
    left = {(r["trial_id"], r["name"]) for r in _rows(engine, "hpo_artifacts", study["id"])}
    assert left == {(t, n) for t in by_value[:2] for n in ("checkpoint", "model")}
    keys = _study_keys(bucket, study["id"])
    assert len(keys) == 4 and not [
        k for k in keys if k.startswith(f"{PREFIX}/{study['id']}/{by_value[2]}/")
    ]
    assert {r["trial_id"] for r in _rows(engine, "hpo_checkpoints", study["id"])} == set(
        by_value[:2]
    )
    # a finished trial's artifacts are open to its readers, no lease needed
    model = next(
        a
        for a in api.get(f"/trials/{by_value[0]}/artifacts").json()["items"]
        if a["name"] == "model"
    )
    link = api.get(f"/trials/{by_value[0]}/artifacts/{model['id']}/url")
    assert httpx.get(link.json()["url"]).content == b"m"
    no_k = api.post(f"/studies/{study['id']}/artifacts/retention", json={})
    assert no_k.status_code == 422 and "HPO_ARTIFACT_KEEP_TOP_K" in no_k.json()["error"]["message"]


def test_deleting_a_study_deletes_its_objects(
    api: httpx.Client, server: ServerProcess, bucket: Bucket
) -> None:
    kept, doomed = _study(api), _study(api)
    with _client(server) as client:
        for study in (kept, doomed):
            trial = _ask(api, study["id"])
            client.save_checkpoint(trial["id"], trial["lease"]["token"], 0, b"c")
            client.upload_artifact(trial["id"], trial["lease"]["token"], "log", b"l")
    unfinished = _start(api, _ask(api, doomed["id"]), "model", os.urandom(6 * 1024 * 1024))
    assert unfinished.status_code == 201  # a multipart upload never finished
    assert len(_study_keys(bucket, doomed["id"])) == 2
    assert api.delete(f"/studies/{doomed['id']}").status_code == 204
    assert _study_keys(bucket, doomed["id"]) == []
    assert bucket.s3.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
    assert len(_study_keys(bucket, kept["id"])) == 2


def test_names_are_validated_and_a_missing_bucket_is_a_503(
    api: httpx.Client, bucket: Bucket
) -> None:
    trial = _ask(api, _study(api)["id"])
    bad = _start(api, trial, "../etc", b"x")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
    no_step = _start(api, trial, "checkpoint", b"x")
    assert no_step.status_code == 422 and "step and sha256" in no_step.json()["error"]["message"]
    bucket.s3.delete_bucket(Bucket=bucket.name)
    away = _start(api, trial, "model", b"x")
    assert away.status_code == 503
    assert away.json()["error"]["code"] == "object_store_unavailable"


def test_a_malformed_artifact_url_stops_the_server_in_one_line(db: ScratchDatabase) -> None:
    env = {"HPO_DATABASE_URL": db.url_string, "HPO_ARTIFACT_URL": "http://bucket/prefix"}
    result = hpo("serve", env=env, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2 and "s3://bucket/prefix" in result.stderr, result.stderr
