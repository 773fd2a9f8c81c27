"""``ObjectCheckpointStore.copy``: a PBT child's checkpoint copied from its parent's inside the
bucket. Checkpoints go up through a real API server into moto's S3 server; the store under test
runs in the test process on the same bucket and database, in a transaction the test owns."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from service.artifacts.checkpoint_store import ObjectCheckpointStore
from service.artifacts.location import parse_artifact_url
from service.artifacts.objects import MAX_COPY_BYTES, ObjectStore
from service.checkpoints.store import CheckpointMeta
from tests.artifacts.conftest import CREDENTIALS, PART_BYTES, PREFIX, Bucket
from tests.artifacts.test_artifacts import _ask, _client, _rows, _study, _study_keys
from tests.support import ServerProcess

StoreFactory = Callable[..., ObjectCheckpointStore]


@pytest.fixture
def make_store(bucket: Bucket, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> StoreFactory:
    """Object checkpoint stores on the server's bucket, built as the server builds its own."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    location = parse_artifact_url(f"s3://{bucket.name}/{PREFIX}")

    def make(copy_part_bytes: int = MAX_COPY_BYTES) -> ObjectCheckpointStore:
        objects = ObjectStore(location, 60, copy_part_bytes=copy_part_bytes)
        return ObjectCheckpointStore(objects, location)

    return make


def _copy(
    engine: Engine, store: ObjectCheckpointStore, study_id: int, parent: int, child: int
) -> CheckpointMeta | None:
    with engine.begin() as conn:
        return store.copy(conn, study_id=study_id, from_trial_id=parent, to_trial_id=child)


def _checkpoint_keys(engine: Engine, study_id: int, trial_id: int) -> list[str]:
    rows = _rows(engine, "hpo_artifacts", study_id)
    return [r["object_key"] for r in rows if r["trial_id"] == trial_id and r["state"] == "stored"]


def _token(trial: dict[str, Any]) -> str:
    return str(trial["lease"]["token"])


def test_the_child_gets_its_own_copy_of_the_parents_checkpoint(
    api: httpx.Client,
    server: ServerProcess,
    bucket: Bucket,
    engine: Engine,
    make_store: StoreFactory,
) -> None:
    study = _study(api)
    parent, child = _ask(api, study["id"], "w-1"), _ask(api, study["id"], "w-2")
    data = os.urandom(200_000)
    with _client(server) as client:
        client.save_checkpoint(parent["id"], _token(parent), 3, data)
        [parent_key] = _checkpoint_keys(engine, study["id"], parent["id"])

        meta = _copy(engine, make_store(), study["id"], parent["id"], child["id"])

        assert meta is not None
        assert (meta.trial_id, meta.study_id, meta.step, meta.size) == (
            child["id"],
            study["id"],
            3,
            len(data),
        )
        assert meta.sha256 == hashlib.sha256(data).hexdigest()
        rows = {r["trial_id"]: r for r in _rows(engine, "hpo_checkpoints", study["id"])}
        assert rows[child["id"]]["data"] is None
        for column in ("step", "size", "sha256"):
            assert rows[child["id"]][column] == rows[parent["id"]][column]
        [child_key] = _checkpoint_keys(engine, study["id"], child["id"])
        assert child_key != parent_key
        assert child_key.startswith(f"{PREFIX}/{study['id']}/{child['id']}/checkpoint/3-")
        assert bucket.read(child_key) == data
        # the child resumes from it through the API like from a checkpoint of its own
        assert client.get_checkpoint(child["id"], _token(child)) == (3, data)

        # the parent's next checkpoint replaces the parent's (its step-3 object goes) only
        newer = os.urandom(100_000)
        client.save_checkpoint(parent["id"], _token(parent), 4, newer)
        assert parent_key not in _study_keys(bucket, study["id"])
        assert bucket.read(child_key) == data
        assert client.get_checkpoint(child["id"], _token(child)) == (3, data)
        # and the child's own next checkpoint leaves the parent's alone
        own = os.urandom(50_000)
        client.save_checkpoint(child["id"], _token(child), 5, own)
        assert client.get_checkpoint(child["id"], _token(child)) == (5, own)
        assert client.get_checkpoint(parent["id"], _token(parent)) == (4, newer)


def test_a_large_checkpoint_is_copied_in_parts(
    api: httpx.Client,
    server: ServerProcess,
    bucket: Bucket,
    engine: Engine,
    make_store: StoreFactory,
) -> None:
    study = _study(api)
    parent, child = _ask(api, study["id"], "w-1"), _ask(api, study["id"], "w-2")
    data = os.urandom(2 * PART_BYTES + 12_345)  # three parts of the copy, the last one short
    with _client(server) as client:
        client.save_checkpoint(parent["id"], _token(parent), 1, data)
    meta = _copy(engine, make_store(PART_BYTES), study["id"], parent["id"], child["id"])
    assert meta is not None and meta.size == len(data)
    [child_key] = _checkpoint_keys(engine, study["id"], child["id"])
    assert bucket.read(child_key) == data
    etag = bucket.s3.head_object(Bucket=bucket.name, Key=child_key)["ETag"]
    assert etag.strip('"').endswith("-3")  # S3's ETag of an object assembled from 3 parts
    uploads = bucket.s3.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])
    assert uploads == []  # the copy's multipart upload was completed


def test_no_checkpoint_to_copy_is_none_and_changes_nothing(
    api: httpx.Client,
    server: ServerProcess,
    bucket: Bucket,
    engine: Engine,
    make_store: StoreFactory,
) -> None:
    study = _study(api)
    parent, child = _ask(api, study["id"], "w-1"), _ask(api, study["id"], "w-2")
    store = make_store()
    assert _copy(engine, store, study["id"], parent["id"], child["id"]) is None
    # a checkpoint row whose object was deleted behind the server's back: none to copy either
    with _client(server) as client:
        client.save_checkpoint(parent["id"], _token(parent), 0, b"weights")
    [parent_key] = _checkpoint_keys(engine, study["id"], parent["id"])
    bucket.s3.delete_object(Bucket=bucket.name, Key=parent_key)
    assert _copy(engine, store, study["id"], parent["id"], child["id"]) is None
    assert _checkpoint_keys(engine, study["id"], child["id"]) == []
    assert [r["trial_id"] for r in _rows(engine, "hpo_checkpoints", study["id"])] == [parent["id"]]
    assert _study_keys(bucket, study["id"]) == []


def test_a_rolled_back_copy_leaves_an_object_that_goes_with_its_study(
    api: httpx.Client,
    server: ServerProcess,
    bucket: Bucket,
    engine: Engine,
    make_store: StoreFactory,
) -> None:
    study = _study(api)
    parent, child = _ask(api, study["id"], "w-1"), _ask(api, study["id"], "w-2")
    with _client(server) as client:
        client.save_checkpoint(parent["id"], _token(parent), 2, b"weights" * 100)
    with engine.connect() as conn, conn.begin() as transaction:
        store = make_store()
        meta = store.copy(
            conn, study_id=study["id"], from_trial_id=parent["id"], to_trial_id=child["id"]
        )
        assert meta is not None
        transaction.rollback()
    # no row of the child, so no reader sees the copy; its object is left under the study
    assert _checkpoint_keys(engine, study["id"], child["id"]) == []
    assert len(bucket.keys(f"{PREFIX}/{study['id']}/{child['id']}/checkpoint/")) == 1
    # a copy after the rollback (as a retried transaction runs it) makes its own object
    assert _copy(engine, store, study["id"], parent["id"], child["id"]) is not None
    assert len(bucket.keys(f"{PREFIX}/{study['id']}/{child['id']}/checkpoint/")) == 2
    assert api.delete(f"/studies/{study['id']}").status_code == 204
    assert _study_keys(bucket, study["id"]) == []
