"""The worker end to end: real server, real PostgreSQL, real worker processes and training."""

from __future__ import annotations

import functools
import signal
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess
from tests.workers.conftest import StartWorker, create_study, get, trials_of, wait_for

pytestmark = pytest.mark.slow


def digits_study(name: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "search_space": {
            "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
            "n_layers": {"type": "int", "low": 1, "high": 3},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        },
        "sampler": {"name": "random", "options": {"seed": 1}},
        "task": {"name": "mlp_classifier", "dataset": "digits", "epochs": 4},
        "max_trials": 8,
        "lease_seconds": 30,
    }
    body.update(overrides)
    return body


def sleep_study(name: str, steps: int, sleep_s: float, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "search_space": {"x": {"type": "float", "low": -1.0, "high": 1.0}},
        "sampler": {"name": "random", "options": {"seed": 3}},
        "task": {"name": "test_sleep", "steps": steps, "sleep_s": sleep_s},
        "max_trials": 1,
        "lease_seconds": 30,
    }
    body.update(overrides)
    return body


def _study_done(server: ServerProcess, study_id: int) -> dict[str, Any] | None:
    study = get(server, f"/studies/{study_id}")
    return study if study["state"] == "completed" else None


def test_digits_study_runs_end_to_end_on_two_workers(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    study = create_study(server, digits_study("e2e", max_parallel=2))
    workers = [start_worker(), start_worker()]
    done = wait_for(lambda: _study_done(server, study["id"]), 300, "the study to complete")
    assert done["trial_counts"]["complete"] == 8
    trials = trials_of(server, study["id"])
    values = sorted(t["value"] for t in trials)
    assert values[0] < 0.8 * values[-1], values  # the optimizer had something to find
    for trial in trials:
        assert [v["step"] for v in trial["intermediate_values"]] == [0, 1, 2, 3]
        attrs = trial["user_attrs"]
        assert attrs["epochs_run"] == 4 and attrs["device"] == "cpu"
        assert attrs["n_params"] > 0 and attrs["wall_time_s"] > 0 and "seed" in attrs
        assert trial["value"] == min(v["value"] for v in trial["intermediate_values"])
    assert {t["worker_id"] for t in trials} == {"w0:0", "w1:0"}
    for worker in workers:
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def test_a_bad_curve_is_pruned_and_stops_training(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    body = digits_study(
        "prune",
        max_trials=3,
        task={"name": "mlp_classifier", "dataset": "digits", "epochs": 8},
        pruner={"name": "median", "options": {"n_startup_trials": 2, "n_warmup_steps": 1}},
    )
    study = create_study(server, body)
    good = {"lr": 0.02, "n_layers": 2, "batch_size": 32}
    bad = {"lr": 0.001, "n_layers": 1, "batch_size": 128}
    for params in (good, good, bad):
        queued = httpx.post(
            f"{server.url}/api/v1/studies/{study['id']}/trials/enqueue",
            json={"params": params},
            headers=server.headers,
        )
        assert queued.status_code == 201, queued.text
    start_worker()
    wait_for(lambda: _study_done(server, study["id"]), 240, "the study to complete")
    trials = trials_of(server, study["id"])
    assert [t["state"] for t in trials] == ["complete", "complete", "pruned"]
    pruned = trials[2]
    assert pruned["user_attrs"]["epochs_run"] < 8
    assert len(pruned["intermediate_values"]) == pruned["user_attrs"]["epochs_run"]


def test_kill_9_mid_trial_resumes_from_the_checkpoint_elsewhere(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    study = create_study(server, sleep_study("kill9", steps=10, sleep_s=0.4, lease_seconds=3))
    first = start_worker(test_tasks=True)
    trial = wait_for(
        lambda: next(
            (t for t in trials_of(server, study["id"]) if len(t["intermediate_values"]) >= 3), None
        ),
        60,
        "three reported steps",
    )
    first.signal(signal.SIGKILL)
    first.wait(10)
    killed_at = len(trials_of(server, study["id"])[0]["intermediate_values"])
    start_worker(test_tasks=True)
    done = wait_for(lambda: _study_done(server, study["id"]), 60, "the study to complete")
    assert done["trial_counts"]["complete"] == 1 and done["n_trials_started"] == 1
    final = trials_of(server, study["id"])[0]
    assert final["id"] == trial["id"] and final["attempt"] == 2
    assert [v["step"] for v in final["intermediate_values"]] == list(range(10))
    resumed = final["user_attrs"]["resumed_from_step"]
    assert resumed is not None and killed_at - 1 <= resumed <= killed_at  # no step repeated
    assert final["worker_id"] == "w1:0"


def test_sigterm_checkpoints_hands_back_and_exits_0(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    study = create_study(server, sleep_study("sigterm", steps=8, sleep_s=0.4))
    first = start_worker(test_tasks=True)
    wait_for(
        lambda: (
            len(trials_of(server, study["id"])[0]["intermediate_values"]) >= 2
            if trials_of(server, study["id"])
            else False
        ),
        60,
        "two reported steps",
    )
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    waiting = trials_of(server, study["id"])[0]
    assert waiting["state"] == "waiting" and waiting["attempt"] == 1
    meta = httpx.get(
        f"{server.url}/api/v1/trials/{waiting['id']}/checkpoint/meta", headers=server.headers
    )
    assert (
        meta.status_code == 200 and meta.json()["step"] == len(waiting["intermediate_values"]) - 1
    )
    start_worker(test_tasks=True)
    wait_for(lambda: _study_done(server, study["id"]), 60, "the study to complete")
    final = trials_of(server, study["id"])[0]
    assert final["state"] == "complete" and final["attempt"] == 2
    assert final["user_attrs"]["resumed_from_step"] == len(waiting["intermediate_values"])
    assert [v["step"] for v in final["intermediate_values"]] == list(range(8))


def test_oom_and_nan_fail_the_trial_and_the_worker_goes_on(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    ids = {
        name: create_study(
            server,
            sleep_study(
                name, steps=3, sleep_s=0.0, task={"name": name, "steps": 3, "fault_step": 1}
            ),
        )["id"]
        for name in ("test_oom", "test_nan", "test_sleep")
    }
    worker = start_worker(test_tasks=True)
    for sid in ids.values():
        wait_for(functools.partial(_study_done, server, sid), 60, f"study {sid} to complete")
    oom = trials_of(server, ids["test_oom"])[0]
    nan = trials_of(server, ids["test_nan"])[0]
    ok = trials_of(server, ids["test_sleep"])[0]
    assert (oom["state"], oom["fail_reason"]) == ("failed", "oom")
    assert (nan["state"], nan["fail_reason"]) == ("failed", "nan")
    assert "out of memory" in oom["user_attrs"]["fail_message"].lower()
    assert ok["state"] == "complete"
    assert worker.proc.poll() is None  # still running


def test_a_result_finished_while_the_api_is_down_arrives_later(
    db: Any, start_worker: StartWorker, server: ServerProcess
) -> None:
    study = create_study(server, sleep_study("outage", steps=4, sleep_s=0.6, lease_seconds=60))
    start_worker(test_tasks=True)
    wait_for(
        lambda: (
            trials_of(server, study["id"])
            and len(trials_of(server, study["id"])[0]["intermediate_values"]) >= 3
        ),
        60,
        "three reported steps",
    )
    server.stop()  # the last step finishes while nobody answers
    wait_for(
        lambda: False if server.proc is None else server.proc.poll() is not None,
        20,
        "the server to stop",
    )
    import time

    time.sleep(2.0)
    server.start()
    done = wait_for(lambda: _study_done(server, study["id"]), 60, "the study to complete")
    final = trials_of(server, study["id"])[0]
    assert done["trial_counts"]["complete"] == 1 and final["attempt"] == 1
    assert [v["step"] for v in final["intermediate_values"]] == [0, 1, 2, 3]


def test_task_filters_and_data_missing_on_the_worker(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    """A spec the API cannot check (the data lives on the worker's machine) fails its trial as
    ``unknown_dataset``; a malformed one never becomes a study (422 at creation)."""
    other = create_study(server, digits_study("other-task", task={"name": "resnet_imagenet"}))
    missing = {"name": "mlp_classifier", "dataset": "fashion_mnist", "dir": "/no/such/dir"}
    absent = create_study(
        server, digits_study("data-not-here", max_trials=1, task={**missing, "epochs": 2})
    )
    malformed = digits_study(
        "no-epochs", max_trials=1, task={"name": "mlp_classifier", "dataset": "digits"}
    )
    refused = httpx.post(f"{server.url}/api/v1/studies", json=malformed, headers=server.headers)
    assert refused.status_code == 422 and "'epochs'" in refused.json()["error"]["message"]
    fine = create_study(server, digits_study("fine", max_trials=1))
    worker = start_worker()
    for sid in (absent["id"], fine["id"]):
        wait_for(functools.partial(_study_done, server, sid), 120, f"study {sid} to complete")
    assert trials_of(server, absent["id"])[0]["fail_reason"] == "unknown_dataset"
    assert trials_of(server, fine["id"])[0]["state"] == "complete"
    assert get(server, f"/studies/{other['id']}")["n_trials_started"] == 0
    assert worker.proc.poll() is None


def test_a_spooled_result_survives_the_worker_dying_during_an_outage(
    server: ServerProcess, start_worker: StartWorker, tmp_path: Any
) -> None:
    study = create_study(server, sleep_study("spool", steps=3, sleep_s=0.5, lease_seconds=60))
    first = start_worker(name="spooler", test_tasks=True)
    wait_for(
        lambda: (
            trials_of(server, study["id"])
            and len(trials_of(server, study["id"])[0]["intermediate_values"]) >= 2
        ),
        60,
        "two reported steps",
    )
    server.stop()
    spooled = wait_for(
        lambda: list((tmp_path / "spool").glob("spooler_0/*.json")),
        30,
        "the finished result in the spool",
    )
    first.signal(signal.SIGKILL)
    first.wait(10)
    assert spooled[0].exists()  # the worker died with its result undelivered
    server.start()
    start_worker(name="spooler", test_tasks=True)  # same name: it finds its spool
    done = wait_for(lambda: _study_done(server, study["id"]), 60, "the study to complete")
    final = trials_of(server, study["id"])[0]
    assert done["trial_counts"]["complete"] == 1
    assert final["attempt"] == 1 and final["worker_id"] == "spooler:0"
    assert not spooled[0].exists()


def test_two_slots_run_in_child_processes_that_die_with_the_worker(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    study = create_study(
        server,
        sleep_study("slots", steps=30, sleep_s=0.3, max_trials=2, max_parallel=2, lease_seconds=3),
    )
    worker = start_worker("--slots", "2", name="multi", test_tasks=True)
    running = wait_for(
        lambda: (
            [t for t in trials_of(server, study["id"]) if t["intermediate_values"]]
            if len([t for t in trials_of(server, study["id"]) if t["intermediate_values"]]) == 2
            else None
        ),
        60,
        "both slots to report",
    )
    # Claimed for both idle slots in one request, under the worker's name.
    assert [t["worker_id"] for t in running] == ["multi", "multi"]
    worker.signal(signal.SIGKILL)  # the parent only: its slot processes must die with it
    worker.wait(10)
    requeued = wait_for(
        lambda: all(t["state"] == "waiting" for t in trials_of(server, study["id"])),
        30,
        "both leases to expire (no orphan slot keeps them alive)",
    )
    assert requeued
    second = start_worker("--slots", "2", name="again", test_tasks=True)
    wait_for(
        lambda: all(t["state"] == "running" for t in trials_of(server, study["id"])),
        30,
        "both trials to be taken again",
    )
    # SIGTERM to the whole group, as scancel and systemd send it: each slot gets it twice,
    # directly and forwarded by the parent, and must take that as one signal (the first stage),
    # not as a second asking to exit at once (tests/workers/test_signals.py pins the rule).
    second.signal_group(signal.SIGTERM)
    assert second.wait(30) == 0  # slots checkpoint, hand their leases back, exit
    assert all(t["state"] == "waiting" for t in trials_of(server, study["id"]))
    assert "exiting now" not in second.text()
