"""What the reaper does for artifacts with no request made: retention of finished studies
(``HPO_ARTIFACT_KEEP_TOP_K``) and the sweep of uploads never confirmed. A real API server with
a fast reaper, moto's S3 server, the bucket checked through boto3."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from tests.artifacts.conftest import API, PREFIX, Bucket, artifact_env, lease_headers
from tests.artifacts.test_artifacts import _ask, _client, _complete, _rows, _start, _study
from tests.support import ScratchDatabase, ServerProcess

TTL_S = 3600  # the default URL lifetime: uploads go stale after 2 x 3600 s
WAIT_S = 30.0  # how long a test waits for the reaper (it runs every 0.2 s here)


@pytest.fixture
def maintained(db: ScratchDatabase, bucket: Bucket, moto_url: str) -> Iterator[ServerProcess]:
    env = artifact_env(
        bucket,
        moto_url,
        HPO_REAPER_INTERVAL_S="0.2",
        HPO_ARTIFACT_KEEP_TOP_K="2",
        HPO_ARTIFACT_URL_TTL_S=str(TTL_S),
    )
    with ServerProcess(db.url_string, env=env, token=db.token) as s:
        yield s


@pytest.fixture
def api(maintained: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=maintained.url + API, headers=maintained.headers, timeout=30) as c:
        yield c


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"the reaper did not {what} within {WAIT_S:.0f} s")
        time.sleep(0.2)


def _trials_in_bucket(bucket: Bucket, study_id: int) -> dict[int, int]:
    """Objects per trial under the study's prefix."""
    counts: dict[int, int] = {}
    for key in bucket.keys(f"{PREFIX}/{study_id}/"):
        trial_id = int(key.split("/")[3])
        counts[trial_id] = counts.get(trial_id, 0) + 1
    return counts


def _three_trials(api: httpx.Client, server: ServerProcess, study_id: int) -> list[int]:
    """Three trials with a checkpoint and a model each, completed at 3, 1, 2 (minimize): the
    trial ids best first."""
    values = {}
    with _client(server) as client:
        for value in (3.0, 1.0, 2.0):
            trial = _ask(api, study_id)
            token = trial["lease"]["token"]
            client.save_checkpoint(trial["id"], token, 0, b"c")
            client.upload_artifact(trial["id"], token, "model", b"m")
            _complete(api, trial, value)
            values[trial["id"]] = value
    return sorted(values, key=values.__getitem__)


def test_a_finished_study_keeps_only_its_top_k_trials_artifacts_by_itself(
    api: httpx.Client, maintained: ServerProcess, bucket: Bucket, engine: Engine
) -> None:
    running = _study(api, max_trials=None)  # no budget: all its trials done, still running
    running_trials = _three_trials(api, maintained, running["id"])
    done = _study(api, max_trials=3)  # completed once its third trial is
    best_first = _three_trials(api, maintained, done["id"])
    assert api.get(f"/studies/{done['id']}").json()["state"] == "completed"

    _wait_for(lambda: best_first[2] not in _trials_in_bucket(bucket, done["id"]), "apply it")
    assert _trials_in_bucket(bucket, done["id"]) == {best_first[0]: 2, best_first[1]: 2}
    left = {r["trial_id"] for r in _rows(engine, "hpo_artifacts", done["id"])}
    assert left == set(best_first[:2])
    assert {r["trial_id"] for r in _rows(engine, "hpo_checkpoints", done["id"])} == left
    # the pass that handled the finished study also saw the running one, and left it alone
    assert _trials_in_bucket(bucket, running["id"]) == {t: 2 for t in running_trials}

    # stopped counts as finished too
    stop = api.patch(f"/studies/{running['id']}", json={"state": "stopped"})
    assert stop.status_code == 200, stop.text
    _wait_for(lambda: len(_trials_in_bucket(bucket, running["id"])) == 2, "apply it")
    assert _trials_in_bucket(bucket, running["id"]) == {t: 2 for t in running_trials[:2]}
    # the manual endpoint still answers, and finds nothing left to do
    again = api.post(f"/studies/{done['id']}/artifacts/retention", json={})
    assert again.json() == {"kept_trials": best_first[:2], "deleted_objects": 0}


def _age(engine: Engine, upload_id: int, seconds: int) -> None:
    """Make an upload request look ``seconds`` old."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE hpo_artifacts SET created_at = now() - make_interval(secs => :s)"
                " WHERE artifact_id = :id"
            ),
            {"s": seconds, "id": upload_id},
        )


def _pending(engine: Engine, study_id: int) -> dict[int, dict[str, Any]]:
    rows = _rows(engine, "hpo_artifacts", study_id)
    return {r["artifact_id"]: r for r in rows if r["state"] == "pending"}


def test_uploads_never_confirmed_are_swept_after_twice_the_url_lifetime(
    api: httpx.Client, bucket: Bucket, engine: Engine
) -> None:
    study = _study(api)
    trial = _ask(api, study["id"])
    single = _start(api, trial, "model", b"never confirmed").json()
    assert httpx.put(single["url"], content=b"never confirmed").status_code == 200
    multi = _start(api, trial, "model", b"x" * (6 * 1024 * 1024)).json()
    part = httpx.put(multi["parts"][0]["url"], content=b"x" * multi["part_size"])
    assert part.status_code == 200
    fresh = _start(api, trial, "log", b"in time").json()
    assert httpx.put(fresh["url"], content=b"in time").status_code == 200
    before = _pending(engine, study["id"])
    assert len(before) == 3 and len(bucket.keys(f"{PREFIX}/{study['id']}/")) == 2
    uploads = bucket.s3.list_multipart_uploads(Bucket=bucket.name).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [before[multi["upload_id"]]["multipart_id"]]

    _age(engine, single["upload_id"], 2 * TTL_S + 60)
    _age(engine, multi["upload_id"], 2 * TTL_S + 60)
    _age(engine, fresh["upload_id"], 2 * TTL_S - 600)  # its URL expired; not yet stale
    _wait_for(lambda: list(_pending(engine, study["id"])) == [fresh["upload_id"]], "sweep")
    fresh_key = before[fresh["upload_id"]]["object_key"]
    assert bucket.keys(f"{PREFIX}/{study['id']}/") == [fresh_key]
    assert bucket.s3.list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []
    # the survivor can still be confirmed; a swept one cannot
    confirm = f"/trials/{trial['id']}/artifacts/uploads/{{}}/complete"
    done = api.post(confirm.format(fresh["upload_id"]), json={}, headers=lease_headers(trial))
    assert done.status_code == 200 and done.json()["state"] == "stored", done.text
    late = api.post(confirm.format(single["upload_id"]), json={}, headers=lease_headers(trial))
    assert late.status_code == 404, late.text
