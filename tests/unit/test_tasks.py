"""Training tasks: real PyTorch training on small data, on the CPU."""

from __future__ import annotations

import gzip
import importlib.metadata
import io
import itertools
import logging
import math
import pickle
import random
import struct
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from workers.tasks import (
    Task,
    TaskFailed,
    TaskRegistry,
    TaskResult,
    UnknownTaskError,
    get_task,
)
from workers.tasks import registry as registry_module
from workers.tasks.dataset_spec import BUILTIN_DATASETS, DatasetSpec, dataset_spec_from_task
from workers.tasks.datasets import (
    DATASET_NAMES,
    DEFAULT_CACHE,
    Arrays,
    DatasetCache,
    load_dataset,
)
from workers.tasks.failures import call_mapping_oom, check_objective
from workers.tasks.idx import encode_idx, parse_idx
from workers.tasks.mlp import build_mlp, build_optimizer
from workers.tasks.mlp_classifier import MLPClassifierTask
from workers.tasks.mlp_config import MLPParams
from workers.tasks.testing import objective, register_test_tasks

CPU = torch.device("cpu")
BASE_PARAMS: dict[str, Any] = {"lr": 3e-3, "n_layers": 2, "batch_size": 64, "hidden_size": 32}


@dataclass
class FakeContext:
    """A TrialContext standing in for the worker loop's HTTP client to the service.

    It records what the task sends (reports, checkpoints, attributes, artifacts unless
    ``keeps_artifacts`` is false), prunes when the step is in ``prune_at``, requests a stop once
    ``stop_after`` steps were checkpointed, and hands out ``checkpoint`` as the previous
    attempt's checkpoint.
    """

    params: Mapping[str, Any]
    task: Mapping[str, Any]
    trial_id: int = 7
    device: torch.device = CPU
    seed: int = 1234
    checkpoint: bytes | None = None
    prune_at: frozenset[int] = frozenset()
    stop_after: int | None = None
    reports: list[tuple[int, float]] = field(default_factory=list)
    checkpoints: list[tuple[int, bytes]] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    keeps_artifacts: bool = True
    artifacts: dict[str, bytes] = field(default_factory=dict)
    started_from_step: int | None = None

    def report(self, step: int, value: float) -> bool:
        self.reports.append((step, value))
        return step in self.prune_at

    def stop_requested(self) -> bool:
        return self.stop_after is not None and len(self.checkpoints) >= self.stop_after

    def load_checkpoint(self) -> bytes | None:
        return self.checkpoint

    def save_checkpoint(self, step: int, data: bytes) -> None:
        self.checkpoints.append((step, data))

    def save_artifact(self, name: str, data: bytes | Path, step: int | None = None) -> bool:
        if self.keeps_artifacts:
            self.artifacts[name] = data if isinstance(data, bytes) else data.read_bytes()
        return self.keeps_artifacts

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        self.attrs.update(attrs)

    @property
    def steps(self) -> list[int]:
        return [step for step, _ in self.reports]


def mlp_context(dataset: str = "digits", epochs: int = 3, **changes: Any) -> FakeContext:
    task = {"name": "mlp_classifier", "dataset": dataset, "epochs": epochs}
    task.update(changes.pop("task", {}))
    return FakeContext(params={**BASE_PARAMS, **changes.pop("params", {})}, task=task, **changes)


def run_mlp(ctx: FakeContext) -> TaskResult:
    return MLPClassifierTask().run(ctx)


def write_idx(path: Path, array: np.ndarray, *, compress: bool) -> None:
    """The IDX format written independently of the code under test (uint8 only)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


# --- training --------------------------------------------------------------------------------


def test_loss_goes_down_on_digits() -> None:
    ctx = mlp_context(epochs=5)
    result = run_mlp(ctx)
    losses = [value for _, value in ctx.reports]
    assert result.state == "complete"
    assert result.epochs_run == 5
    assert ctx.steps == [0, 1, 2, 3, 4]
    assert losses[-1] < 0.5 * losses[0]
    assert result.value == min(losses)  # the best epoch's validation loss
    assert [step for step, _ in ctx.checkpoints] == [0, 1, 2, 3, 4]
    assert ctx.attrs["seed"] == 1234
    assert ctx.attrs["epochs_run"] == 5
    assert ctx.attrs["device"] == "cpu"
    assert ctx.attrs["peak_gpu_mem_mb"] is None
    assert ctx.attrs["n_params"] == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    assert ctx.attrs["wall_time_s"] > 0


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_other_optimizers_and_dropout_train(optimizer: str) -> None:
    ctx = mlp_context(
        epochs=2, params={"optimizer": optimizer, "dropout": 0.2, "weight_decay": 1e-4}
    )
    result = run_mlp(ctx)
    assert result.state == "complete"
    assert result.value is not None and math.isfinite(result.value)


def test_layers_take_their_widths_from_width_l1_to_width_ln() -> None:
    # digits: 64 features, 10 classes. Layer 3 has no width_l3: it falls back to hidden_size;
    # width_l4 lies beyond n_layers (a space without conditions may sample it) and is unused.
    params = {"n_layers": 3, "width_l1": 8, "width_l2": 16, "hidden_size": 4, "width_l4": 99}
    ctx = mlp_context(epochs=1, params=params)
    assert run_mlp(ctx).state == "complete"
    widths = [64, 8, 16, 4, 10]
    expected = sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(widths))
    assert ctx.attrs["n_params"] == expected
    model = build_mlp(64, 10, MLPParams.parse({**BASE_PARAMS, **params}))
    linear = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linear] == widths[1:]


def test_sgd_takes_its_momentum_and_the_adams_ignore_it() -> None:
    model = torch.nn.Linear(2, 2)
    sgd = build_optimizer(model, MLPParams.parse({**BASE_PARAMS, "optimizer": "sgd"}))
    assert sgd.param_groups[0]["momentum"] == 0.9  # as before, when no momentum is given
    tuned = MLPParams.parse({**BASE_PARAMS, "optimizer": "sgd", "momentum": 0.5})
    assert build_optimizer(model, tuned).param_groups[0]["momentum"] == 0.5
    adam = build_optimizer(model, MLPParams.parse({**BASE_PARAMS, "momentum": 0.5}))
    assert isinstance(adam, torch.optim.Adam) and "momentum" not in adam.param_groups[0]
    ctx = mlp_context(epochs=1, params={"optimizer": "sgd", "momentum": 0.7, "width_l1": 8})
    assert run_mlp(ctx).state == "complete"


def test_same_seed_gives_same_losses() -> None:
    first, second = mlp_context(epochs=2), mlp_context(epochs=2)
    run_mlp(first)
    run_mlp(second)
    assert first.reports == second.reports


def test_pruning_stops_at_once() -> None:
    ctx = mlp_context(epochs=5, prune_at=frozenset({1}))
    result = run_mlp(ctx)
    assert result == TaskResult("pruned", ctx.reports[-1][1], 2)
    assert ctx.steps == [0, 1]
    assert [step for step, _ in ctx.checkpoints] == [0]
    assert ctx.attrs["epochs_run"] == 2
    assert ctx.artifacts == {}  # only a completed run saves its model


def test_interrupt_then_resume_matches_an_uninterrupted_run() -> None:
    params = {"dropout": 0.3}  # the generators must be restored too
    first = mlp_context(epochs=4, stop_after=2, params=params)
    assert run_mlp(first) == TaskResult("interrupted", None, 2)
    assert first.steps == [0, 1]
    assert first.artifacts == {}

    resumed = mlp_context(epochs=4, checkpoint=first.checkpoints[-1][1], params=params)
    result = run_mlp(resumed)
    assert result.state == "complete"
    assert result.epochs_run == 4
    assert resumed.steps == [2, 3]  # earlier epochs are not reported again
    assert resumed.attrs["resumed_from_epoch"] == 2

    whole = mlp_context(epochs=4, params=params)
    expected = run_mlp(whole)
    assert resumed.reports == whole.reports[2:]
    assert result.value == expected.value


def _optimizer_state(checkpoint_bytes: bytes) -> dict[str, Any]:
    state = torch.load(io.BytesIO(checkpoint_bytes), weights_only=True)
    return dict(state["optimizer"])


def test_a_pbt_child_resumes_its_parents_checkpoint_with_its_own_hyperparameters() -> None:
    parent = mlp_context(epochs=2, params={"lr": 3e-3, "weight_decay": 0.0})
    run_mlp(parent)
    parent_bytes = parent.checkpoints[-1][1]
    parent_opt = _optimizer_state(parent_bytes)

    child = mlp_context(
        epochs=4,
        checkpoint=parent_bytes,
        started_from_step=2,
        params={"lr": 1e-2, "weight_decay": 1e-4},
    )
    result = run_mlp(child)
    assert result.state == "complete"
    assert child.steps == [2, 3]  # it goes on from its parent's step
    child_opt = _optimizer_state(child.checkpoints[-1][1])
    # The optimiser's hyperparameters are the child's own...
    assert [(g["lr"], g["weight_decay"]) for g in child_opt["param_groups"]] == [(1e-2, 1e-4)]
    # ...and Adam's moments went on from the parent's (its step count too).
    steps_per_epoch = float(parent_opt["state"][0]["step"]) / 2
    assert float(child_opt["state"][0]["step"]) == pytest.approx(4 * steps_per_epoch)
    # Its best value counts only its own epochs (2 and 3), not its parent's.
    assert child.attrs["best_epoch"] in (2, 3)
    assert result.value == min(v for _, v in child.reports)


def test_a_pbt_child_with_no_epoch_left_completes_with_its_inherited_best() -> None:
    parent = mlp_context(epochs=2)
    done = run_mlp(parent)
    child = mlp_context(epochs=2, checkpoint=parent.checkpoints[-1][1], started_from_step=2)
    result = run_mlp(child)
    assert child.reports == []
    assert (result.state, result.value) == ("complete", done.value)


def test_a_retried_attempt_keeps_the_checkpointed_hyperparameters_of_its_params() -> None:
    first = mlp_context(epochs=4, stop_after=2, params={"lr": 2e-3})
    run_mlp(first)
    resumed = mlp_context(epochs=4, checkpoint=first.checkpoints[-1][1], params={"lr": 2e-3})
    run_mlp(resumed)
    groups = _optimizer_state(resumed.checkpoints[-1][1])["param_groups"]
    assert [g["lr"] for g in groups] == [2e-3]
    assert resumed.attrs["best_epoch"] is not None


def test_a_completed_run_saves_its_final_weights_as_the_model_artifact() -> None:
    ctx = mlp_context(epochs=2)
    run_mlp(ctx)
    model = torch.load(io.BytesIO(ctx.artifacts["model"]), weights_only=True)
    last = torch.load(io.BytesIO(ctx.checkpoints[-1][1]), weights_only=True)["model"]
    assert model.keys() == last.keys()
    assert all(torch.equal(model[k], last[k]) for k in last)  # the last epoch's weights


def test_without_artifacts_the_run_completes_the_same() -> None:
    kept, not_kept = mlp_context(epochs=1), mlp_context(epochs=1, keeps_artifacts=False)
    assert run_mlp(not_kept) == run_mlp(kept)
    assert not_kept.artifacts == {} and "model" in kept.artifacts


def test_resume_after_the_last_epoch_completes_without_training() -> None:
    first = mlp_context(epochs=2)
    done = run_mlp(first)
    again = mlp_context(epochs=2, checkpoint=first.checkpoints[-1][1])
    assert run_mlp(again) == done
    assert again.reports == []


def test_corrupt_checkpoint_starts_from_scratch(caplog: pytest.LogCaptureFixture) -> None:
    ctx = mlp_context(epochs=2, checkpoint=b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        result = run_mlp(ctx)
    assert result.state == "complete"
    assert ctx.steps == [0, 1]
    assert "unusable checkpoint" in caplog.text


def test_checkpoint_of_another_model_starts_from_scratch() -> None:
    other = mlp_context(epochs=1, params={"hidden_size": 8})
    run_mlp(other)
    ctx = mlp_context(epochs=2, checkpoint=other.checkpoints[-1][1])
    run_mlp(ctx)
    assert ctx.steps == [0, 1]


def test_divergence_is_reported_as_nan() -> None:
    ctx = mlp_context(dataset="wine", params={"optimizer": "sgd", "lr": 1e6})
    with pytest.raises(TaskFailed) as failure:
        run_mlp(ctx)
    assert failure.value.reason == "nan"
    assert ctx.attrs["epochs_run"] == 0


# --- datasets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "n_features", "n_classes"),
    [("digits", 64, 10), ("breast_cancer", 30, 2), ("wine", 13, 3), ("mnist1d", 40, 10)],
)
def test_bundled_datasets_load_and_train(dataset: str, n_features: int, n_classes: int) -> None:
    task = {"dataset": dataset, "max_samples": 600}
    data = load_dataset(dataset_spec_from_task(task), CPU)
    assert data.n_features == n_features
    assert data.n_classes == n_classes
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    total = data.x_train.shape[0] + data.x_val.shape[0]
    assert total <= 600
    assert data.x_val.shape[0] == round(total * 0.2)
    ctx = mlp_context(dataset=dataset, epochs=1, task={"max_samples": 600})
    assert run_mlp(ctx).state == "complete"


def test_features_are_standardised_with_training_statistics() -> None:
    data = load_dataset(DatasetSpec("breast_cancer"), CPU)
    assert torch.allclose(data.x_train.mean(0), torch.zeros(30), atol=1e-4)
    assert torch.allclose(data.x_train.std(0, unbiased=False), torch.ones(30), atol=1e-3)
    assert data.x_val.mean(0).abs().max() > 1e-3  # validation is not standardised on itself


def test_split_depends_only_on_split_seed() -> None:
    cache = DatasetCache()
    a = cache.get(DatasetSpec("wine", split_seed=1), CPU)
    b = DatasetCache().get(DatasetSpec("wine", split_seed=1), CPU)
    c = cache.get(DatasetSpec("wine", split_seed=2), CPU)
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)


def test_mnist1d_keeps_the_global_random_state() -> None:
    np.random.seed(5)
    random.seed(5)
    expected = (np.random.random(), random.random())
    np.random.seed(5)
    random.seed(5)
    DatasetCache().get(DatasetSpec("mnist1d", max_samples=50), CPU)
    assert (np.random.random(), random.random()) == expected


def test_npz_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3, 2))
    y = np.where(x[:, 0, 0] > 0, "yes", "no")
    path = tmp_path / "data.npz"
    np.savez(path, x=x, y=y)
    data = load_dataset(dataset_spec_from_task({"dataset": "npz", "path": str(path)}), CPU)
    assert (data.n_features, data.n_classes) == (6, 2)
    assert data.x_train.shape[0] + data.x_val.shape[0] == 120
    ctx = mlp_context(dataset="npz", epochs=2, task={"path": str(path)})
    assert run_mlp(ctx).state == "complete"


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_from_idx_files(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 10
    images = rng.integers(0, 50, size=(60, 6, 6)) + labels[:, None, None] * 20
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress=compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress=compress)
    spec = dataset_spec_from_task({"dataset": "fashion_mnist", "dir": str(tmp_path)})
    data = DatasetCache().get(spec, CPU)
    assert (data.n_features, data.n_classes) == (36, 10)
    assert data.x_train.shape[0] == 48
    ctx = mlp_context(dataset="fashion_mnist", epochs=2, task={"dir": str(tmp_path)})
    assert run_mlp(ctx).state == "complete"


def test_idx_round_trip_matches_the_format() -> None:
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    encoded = encode_idx(array)
    assert encoded[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", encoded[4:16]) == (2, 3, 4)
    assert np.array_equal(parse_idx(encoded), array)
    floats = np.linspace(0, 1, 5, dtype=np.float32)
    assert np.array_equal(parse_idx(encode_idx(floats)), floats)


def test_dataset_cache_loads_once() -> None:
    calls: list[DatasetSpec] = []

    def loader(spec: DatasetSpec) -> Arrays:
        calls.append(spec)
        return Arrays(np.arange(20.0).reshape(10, 2), np.arange(10) % 2)

    cache = DatasetCache({"toy": loader})
    first = cache.get(DatasetSpec("toy"), CPU)
    assert cache.get(DatasetSpec("toy"), torch.device("cpu")) is first
    assert len(calls) == cache.loads == 1
    cache.get(DatasetSpec("toy", split_seed=3), CPU)
    assert cache.loads == 2


def test_trials_share_the_process_wide_cache() -> None:
    run_mlp(mlp_context(dataset="wine", epochs=1, task={"split_seed": 99}))
    loads = DEFAULT_CACHE.loads
    run_mlp(mlp_context(dataset="wine", epochs=1, task={"split_seed": 99}, seed=5))
    assert DEFAULT_CACHE.loads == loads


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"n_layers": 2, "batch_size": 32},
        {**BASE_PARAMS, "lr": -1.0},
        {**BASE_PARAMS, "lr": "fast"},
        {**BASE_PARAMS, "n_layers": True},
        {**BASE_PARAMS, "n_layers": 1.5},
        {**BASE_PARAMS, "batch_size": 0},
        {**BASE_PARAMS, "dropout": 1.0},
        {**BASE_PARAMS, "optimizer": "lbfgs"},
        {**BASE_PARAMS, "learning_rate": 0.1},
        {**BASE_PARAMS, "momentum": 1.0},
        {**BASE_PARAMS, "width_l1": 0},
        {**BASE_PARAMS, "width_l3": 0},  # beyond n_layers, but checked all the same
        {**BASE_PARAMS, "width_l0": 8},
        {**BASE_PARAMS, "width_l01": 8},
    ],
)
def test_bad_params(params: dict[str, Any]) -> None:
    ctx = FakeContext(params=params, task={"dataset": "digits", "epochs": 1})
    with pytest.raises(TaskFailed) as failure:
        run_mlp(ctx)
    assert failure.value.reason == "bad_params"
    assert ctx.reports == []


@pytest.mark.parametrize(
    "task",
    [
        {"epochs": 1},
        {"dataset": "digits"},
        {"dataset": "digits", "epochs": 0},
        {"dataset": "digits", "epochs": "3"},
        {"dataset": "digits", "epochs": 1, "val_fraction": 1.0},
        {"dataset": "digits", "epochs": 1, "split_seed": "a"},
        {"dataset": "npz", "epochs": 1},
    ],
)
def test_bad_task_spec(task: dict[str, Any]) -> None:
    with pytest.raises(TaskFailed) as failure:
        run_mlp(FakeContext(params=BASE_PARAMS, task=task))
    assert failure.value.reason == "bad_task_spec"


@pytest.mark.parametrize(
    "task",
    [
        {"dataset": "imagenet", "epochs": 1},
        {"dataset": "npz", "path": "/nonexistent/data.npz", "epochs": 1},
        {"dataset": "fashion_mnist", "dir": "/nonexistent", "epochs": 1},
    ],
)
def test_unknown_or_missing_dataset(task: dict[str, Any]) -> None:
    with pytest.raises(TaskFailed) as failure:
        run_mlp(FakeContext(params=BASE_PARAMS, task=task))
    assert failure.value.reason == "unknown_dataset"


def test_npz_without_the_arrays_is_unknown_dataset(tmp_path: Path) -> None:
    path = tmp_path / "wrong.npz"
    np.savez(path, features=np.zeros((4, 2)))
    with pytest.raises(TaskFailed) as failure:
        run_mlp(mlp_context(dataset="npz", task={"path": str(path)}))
    assert failure.value.reason == "unknown_dataset"


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
    ],
)
def test_out_of_memory_becomes_oom(error: RuntimeError) -> None:
    def run() -> None:
        raise error

    with pytest.raises(TaskFailed) as failure:
        call_mapping_oom(run, CPU)
    assert failure.value.reason == "oom"


def test_other_runtime_errors_pass_through() -> None:
    def run() -> None:
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        call_mapping_oom(run, CPU)


# --- test tasks ------------------------------------------------------------------------------


def scripted(name: str, **task: Any) -> tuple[Task, FakeContext]:
    registry = TaskRegistry(entry_points=list)
    register_test_tasks(registry)
    ctx = FakeContext(params={"x": 2.0, "y": 1, "flag": True, "kind": "a"}, task=task)
    return registry.get(name), ctx


def test_test_oom_and_test_nan_fail_at_their_step() -> None:
    task, ctx = scripted("test_oom", fault_step=2)
    with pytest.raises(TaskFailed) as failure:
        task.run(ctx)
    assert failure.value.reason == "oom"
    assert ctx.steps == [0, 1]

    task, ctx = scripted("test_nan", fault_step=1)
    with pytest.raises(TaskFailed) as failure:
        task.run(ctx)
    assert failure.value.reason == "nan"
    assert ctx.attrs["epochs_run"] == 1


def test_test_sleep_reports_the_objective_and_resumes() -> None:
    assert objective({"x": 2.0, "y": 1, "flag": True, "kind": "a"}) == 5.0
    task, ctx = scripted("test_sleep", steps=4, sleep_s=0.001)
    ctx.stop_after = 2
    assert task.run(ctx) == TaskResult("interrupted", None, 2)
    task, resumed = scripted("test_sleep", steps=4)
    resumed.checkpoint = ctx.checkpoints[-1][1]
    assert task.run(resumed) == TaskResult("complete", 5.0, 4)
    assert resumed.reports == [(2, 5.0), (3, 5.0)]

    task, pruned = scripted("test_sleep", steps=4)
    pruned.prune_at = frozenset({0})
    assert task.run(pruned) == TaskResult("pruned", 5.0, 1)


# --- registry --------------------------------------------------------------------------------


PLUGIN_SOURCE = """
from workers.tasks.base import TaskResult


class EchoTask:
    name = "echo"

    def run(self, ctx):
        return TaskResult("complete", float(ctx.params["v"]), 0)


INSTANCE = EchoTask()


def make_echo():
    return EchoTask()


NOT_A_TASK = 42


def broken():
    raise RuntimeError("plugin factory is broken")
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "hpo_fake_plugin.py").write_text(PLUGIN_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "hpo_fake_plugin"
    sys.modules.pop("hpo_fake_plugin", None)


def entry_point(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group="hpo.tasks")


def test_registry_loads_entry_points_and_skips_broken_ones(
    plugin_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    points = [
        entry_point("echo", f"{plugin_module}:EchoTask"),
        entry_point("echo_instance", f"{plugin_module}:INSTANCE"),
        entry_point("echo_factory", f"{plugin_module}:make_echo"),
        entry_point("missing_module", "hpo_no_such_module:Task"),
        entry_point("not_a_task", f"{plugin_module}:NOT_A_TASK"),
        entry_point("broken_factory", f"{plugin_module}:broken"),
        entry_point("mlp_classifier", f"{plugin_module}:EchoTask"),
    ]
    registry = TaskRegistry(registry_module.BUILTIN_TASKS, entry_points=lambda: points)
    with caplog.at_level(logging.WARNING):
        names = registry.names()
    assert names == ["echo", "echo_factory", "echo_instance", "mlp_classifier"]
    assert isinstance(registry.get("mlp_classifier"), MLPClassifierTask)
    ctx = FakeContext(params={"v": 3}, task={})
    assert registry.get("echo_factory").run(ctx) == TaskResult("complete", 3.0, 0)
    assert registry.get("echo") is registry.get("echo")
    for skipped in ("missing_module", "not_a_task", "broken_factory"):
        assert skipped in caplog.text


def test_unknown_task_is_a_key_error_and_a_task_failure() -> None:
    registry = TaskRegistry(registry_module.BUILTIN_TASKS, entry_points=list)
    with pytest.raises(KeyError) as failure:
        registry.get("resnet")
    assert isinstance(failure.value, UnknownTaskError)
    assert failure.value.reason == "bad_task_spec"
    assert "mlp_classifier" in str(failure.value)
    copy = pickle.loads(pickle.dumps(failure.value))
    assert (type(copy), str(copy)) == (UnknownTaskError, str(failure.value))


def test_task_failed_survives_pickling() -> None:
    copy = pickle.loads(pickle.dumps(TaskFailed("nan", "loss is nan")))
    assert (copy.reason, copy.message) == ("nan", "loss is nan")


def test_test_tasks_need_an_explicit_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = TaskRegistry(registry_module.BUILTIN_TASKS, entry_points=list)
    monkeypatch.setattr(registry_module, "DEFAULT_REGISTRY", fresh)
    monkeypatch.delenv(registry_module.TEST_TASKS_ENV, raising=False)
    assert registry_module.available_tasks() == ["mlp_classifier"]
    with pytest.raises(UnknownTaskError):
        get_task("test_sleep")
    monkeypatch.setenv(registry_module.TEST_TASKS_ENV, "1")
    assert get_task("test_sleep") is get_task("test_sleep")
    assert {"test_nan", "test_oom", "test_sleep"} <= set(registry_module.available_tasks())


def test_the_dataset_names_the_server_checks_are_those_the_worker_loads() -> None:
    assert BUILTIN_DATASETS == DATASET_NAMES


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, None])
def test_a_complete_result_without_a_finite_value_fails_the_trial(value: float | None) -> None:
    with pytest.raises(TaskFailed) as failed:
        check_objective(TaskResult("complete", value, 3))
    assert failed.value.reason == "nan"
    assert check_objective(TaskResult("complete", 0.25, 3)).value == 0.25
    assert check_objective(TaskResult("pruned", math.inf, 1)).state == "pruned"
