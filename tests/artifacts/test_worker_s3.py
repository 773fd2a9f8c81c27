"""Real workers with checkpoints in S3-compatible storage (moto's server standing in for
S3/MinIO/GCS): real PyTorch training checkpoints to the bucket and saves its trained model
there, and a trial whose worker was killed resumes on another worker from the checkpoint in
the bucket."""

from __future__ import annotations

import io
import signal

import httpx
import pytest
import torch
from sqlalchemy import Engine, text

from tests.artifacts.conftest import PREFIX, Bucket
from tests.support import ServerProcess
from tests.workers.conftest import StartWorker, create_study, get, trials_of, wait_for
from tests.workers.test_worker import _study_done, digits_study, sleep_study
from workers.tasks.mlp import build_mlp
from workers.tasks.mlp_config import MLPParams

pytestmark = pytest.mark.slow


def _checkpoint_rows(engine: Engine, study_id: int) -> list[tuple[int, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT a.step, c.data FROM hpo_artifacts a"
                " JOIN hpo_checkpoints c ON c.trial_id = a.trial_id"
                " WHERE a.study_id = :s AND a.name = 'checkpoint' AND a.state = 'stored'"
            ),
            {"s": study_id},
        ).all()
    return [(int(r.step), r.data) for r in rows]


def _model_state(server: ServerProcess, trial_id: int) -> dict[str, torch.Tensor]:
    """The trial's artifact ``model``, fetched through its presigned URL and loaded."""
    found = get(server, f"/trials/{trial_id}/artifacts")["items"]
    model = next(a for a in found if a["name"] == "model")
    link = get(server, f"/trials/{trial_id}/artifacts/{model['id']}/url")
    data = httpx.get(link["url"], timeout=10)  # presigned: no Authorization header
    assert data.status_code == 200 and len(data.content) == model["size"]
    state: dict[str, torch.Tensor] = torch.load(io.BytesIO(data.content), weights_only=True)
    return state


def test_mlp_training_checkpoints_to_the_bucket_and_saves_its_model(
    server: ServerProcess, start_worker: StartWorker, bucket: Bucket, engine: Engine
) -> None:
    study = create_study(
        server,
        digits_study(
            "s3-digits",
            max_trials=1,
            task={"name": "mlp_classifier", "dataset": "digits", "epochs": 3},
        ),
    )
    start_worker()
    done = wait_for(lambda: _study_done(server, study["id"]), 120, "the study to complete")
    assert done["trial_counts"]["complete"] == 1
    rows = _checkpoint_rows(engine, study["id"])
    assert rows and all(data is None for _, data in rows)  # the database holds no bytes
    assert 2 in {step for step, _ in rows}  # the last epoch's checkpoint is kept
    keys = bucket.keys(f"{PREFIX}/{study['id']}/")
    checkpoints = [k for k in keys if "/checkpoint/" in k]
    assert len(checkpoints) == len(rows) <= 2
    assert len(keys) == len(checkpoints) + 1 and "/model/" in keys[-1]  # and the model
    trial = trials_of(server, study["id"])[0]
    state = _model_state(server, trial["id"])
    built = build_mlp(64, 10, MLPParams.parse(trial["params"]))  # digits: 64 features, 10 classes
    built.load_state_dict(state)  # every key, every shape
    assert state.keys() == built.state_dict().keys()


def test_a_killed_workers_trial_resumes_elsewhere_from_the_bucket(
    server: ServerProcess, start_worker: StartWorker, bucket: Bucket, engine: Engine
) -> None:
    study = create_study(server, sleep_study("s3-kill9", steps=10, sleep_s=0.4, lease_seconds=3))
    first = start_worker(test_tasks=True)
    wait_for(
        lambda: next(
            (t for t in trials_of(server, study["id"]) if len(t["intermediate_values"]) >= 3), None
        ),
        60,
        "three reported steps",
    )
    first.signal(signal.SIGKILL)
    first.wait(10)
    killed_at = len(trials_of(server, study["id"])[0]["intermediate_values"])
    assert bucket.keys(f"{PREFIX}/{study['id']}/")  # its checkpoints are in the bucket
    second = start_worker(test_tasks=True)
    done = wait_for(lambda: _study_done(server, study["id"]), 60, "the study to complete")
    assert done["trial_counts"]["complete"] == 1 and done["n_trials_started"] == 1
    final = trials_of(server, study["id"])[0]
    assert final["attempt"] == 2 and final["worker_id"] == "w1:0"
    assert [v["step"] for v in final["intermediate_values"]] == list(range(10))
    resumed = final["user_attrs"]["resumed_from_step"]
    assert resumed is not None and killed_at - 1 <= resumed <= killed_at  # no step repeated
    assert "resuming from the checkpoint" in second.text()
