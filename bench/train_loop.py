"""Benchmark: a textbook PyTorch training loop against the workers' fast loop.

Trains the same MLP with the same hyperparameters and epochs on the same device three ways:

- ``naive``: a ``DataLoader`` over a CPU ``TensorDataset`` (shuffle, no workers), a per-batch
  ``.to(device)``, float32, ``loss.item()`` after every batch, validation batch by batch;
- ``fast loop``: :func:`workers.tasks.training.run_epoch` on tensors cached on the device
  (device-side shuffling, slicing, one sync per epoch, TF32/bf16 on CUDA);
- ``fast task``: the whole ``mlp_classifier`` task, which also reports and checkpoints every
  epoch, through an in-memory trial context.

Each method first runs one untimed warm-up trial; then the methods take turns, one trial each,
and the table shows the median trial. The dataset is Fashion-MNIST when its files
are installed, else MNIST-1D. Examples::

    python bench/train_loop.py --device cpu --quick
    python bench/train_loop.py --device cuda --epochs 10 --trials 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from workers.tasks.base import JSON, TaskFailed
from workers.tasks.dataset_spec import DatasetSpec
from workers.tasks.datasets import DeviceDataset, load_dataset
from workers.tasks.mlp import build_mlp, build_optimizer
from workers.tasks.mlp_classifier import MLPClassifierTask
from workers.tasks.mlp_config import MLPParams
from workers.tasks.training import configure_device, run_epoch, shuffle_generator


@dataclass(frozen=True)
class Setup:
    """One benchmark configuration."""

    device: torch.device
    spec: DatasetSpec
    params: MLPParams
    epochs: int
    trials: int


@dataclass(frozen=True)
class Timing:
    """Measured figures of one method: the median seconds per trial and a sanity value."""

    method: str
    seconds_per_trial: float
    epochs: int
    final_val_loss: float


class BenchContext:
    """An in-memory TrialContext: never prunes or stops, keeps only the last checkpoint."""

    def __init__(self, setup: Setup, seed: int) -> None:
        self.trial_id = seed
        self.params: Mapping[str, Any] = vars(setup.params)
        self.task: Mapping[str, Any] = {
            "dataset": setup.spec.name,
            "epochs": setup.epochs,
            "path": str(setup.spec.path) if setup.spec.path else None,
            "max_samples": setup.spec.max_samples,
        }
        self.device = setup.device
        self.seed = seed
        self.started_from_step: int | None = None
        self.last_value = float("nan")
        self.checkpoint_bytes = 0

    def report(self, step: int, value: float) -> bool:
        self.last_value = value
        return False

    def stop_requested(self) -> bool:
        return False

    def load_checkpoint(self) -> bytes | None:
        return None

    def save_checkpoint(self, step: int, data: bytes) -> None:
        self.checkpoint_bytes = len(data)

    def save_artifact(self, name: str, data: bytes | Path, step: int | None = None) -> bool:
        return False  # nothing is kept: the benchmark measures training

    def set_attrs(self, attrs: Mapping[str, JSON]) -> None:
        pass


def naive_trial(setup: Setup, cpu_data: DeviceDataset, seed: int) -> float:
    """A textbook loop; the final validation loss."""
    torch.manual_seed(seed)
    model = build_mlp(cpu_data.n_features, cpu_data.n_classes, setup.params).to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.params.lr)
    train = DataLoader(
        TensorDataset(cpu_data.x_train, cpu_data.y_train),
        batch_size=setup.params.batch_size,
        shuffle=True,
    )
    val = DataLoader(TensorDataset(cpu_data.x_val, cpu_data.y_val), batch_size=1024)
    val_loss = float("nan")
    for _ in range(setup.epochs):
        model.train()
        for xb, yb in train:
            xb, yb = xb.to(setup.device), yb.to(setup.device)
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
            _ = loss.item()
        model.eval()
        total = 0.0
        with torch.no_grad():
            for xb, yb in val:
                xb, yb = xb.to(setup.device), yb.to(setup.device)
                total += F.cross_entropy(model(xb), yb, reduction="sum").item()
        val_loss = total / len(cpu_data.y_val)
    return val_loss


def fast_loop_trial(setup: Setup, data: DeviceDataset, seed: int) -> float:
    """The workers' loop without the task around it; the final validation loss."""
    torch.manual_seed(seed)
    model = build_mlp(data.n_features, data.n_classes, setup.params).to(setup.device)
    optimizer = build_optimizer(model, setup.params)
    generator = shuffle_generator(data.x_train.device, seed)
    val_loss = float("nan")
    for _ in range(setup.epochs):
        val_loss = run_epoch(model, optimizer, data, setup.params.batch_size, generator).val_loss
    return val_loss


def fast_task_trial(setup: Setup, seed: int) -> float:
    """The full ``mlp_classifier`` task; the final validation loss."""
    ctx = BenchContext(setup, seed)
    MLPClassifierTask().run(ctx)
    return ctx.last_value


def measure(setup: Setup, methods: Mapping[str, Callable[[int], float]]) -> list[Timing]:
    """One untimed warm-up trial per method, then ``setup.trials`` rounds that time one trial
    of each method in turn (so drifts in machine speed hit all methods alike); medians."""
    for trial in methods.values():
        trial(10_000)
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    values: dict[str, float] = {}
    for seed in range(setup.trials):
        for name, trial in methods.items():
            synchronize(setup.device)
            started = time.perf_counter()
            values[name] = trial(seed)
            synchronize(setup.device)
            seconds[name].append(time.perf_counter() - started)
    return [
        Timing(name, statistics.median(seconds[name]), setup.epochs, values[name])
        for name in methods
    ]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dataset(device: torch.device, max_samples: int | None) -> tuple[DatasetSpec, float]:
    """Fashion-MNIST if installed, else MNIST-1D; and the seconds its first load took."""
    for name in ("fashion_mnist", "mnist1d"):
        spec = DatasetSpec(name, max_samples=max_samples)
        started = time.perf_counter()
        try:
            load_dataset(spec, device)
        except TaskFailed as exc:
            print(f"{name} unavailable ({exc.message}); falling back")
            continue
        load_dataset(spec, torch.device("cpu"))
        return spec, time.perf_counter() - started
    raise SystemExit("no dataset available")


def print_table(setup: Setup, data: DeviceDataset, load_s: float, rows: list[Timing]) -> None:
    p = setup.params
    print(
        f"dataset {setup.spec.name}: train {data.x_train.shape[0]}, val {data.x_val.shape[0]}, "
        f"features {data.n_features}, classes {data.n_classes} (first load {load_s:.2f} s)"
    )
    print(
        f"device {setup.device} ({device_name(setup.device)}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(
        f"model {p.n_layers}x{p.hidden_size} {p.optimizer} lr {p.lr}, batch {p.batch_size}, "
        f"{setup.epochs} epochs per trial, median of {setup.trials} trials per method"
    )
    print(f"\n{'method':<12}{'epochs/s':>10}{'s/trial':>10}{'trials/hour':>13}{'val loss':>10}")
    for row in rows:
        per_trial = row.seconds_per_trial
        print(
            f"{row.method:<12}{row.epochs / per_trial:>10.2f}{per_trial:>10.3f}"
            f"{3600 / per_trial:>13.0f}{row.final_val_loss:>10.4f}"
        )
    naive = rows[0].seconds_per_trial
    for row in rows[1:]:
        print(f"speedup of {row.method} over naive: {naive / row.seconds_per_trial:.2f}x")


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a CPU smoke run")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default 5, quick 2)")
    parser.add_argument("--trials", type=int, help="timed trials per method (default 5, quick 3)")
    parser.add_argument("--max-samples", type=int, help="cap the dataset (quick: 6000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, help="default 256, quick 128")
    parser.add_argument("--n-layers", type=int, default=2)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = pick_device(args.device)
    configure_device(device)
    quick = args.quick
    spec, load_s = pick_dataset(device, args.max_samples or (6000 if quick else None))
    params = MLPParams(
        lr=1e-3,
        n_layers=args.n_layers,
        batch_size=args.batch_size,
        hidden_size=args.hidden_size or (128 if quick else 256),
    )
    setup = Setup(
        device=device,
        spec=spec,
        params=params,
        epochs=args.epochs or (2 if quick else 5),
        trials=args.trials or (3 if quick else 5),
    )
    data = load_dataset(spec, device)
    cpu_data = load_dataset(spec, torch.device("cpu"))
    methods: dict[str, Callable[[int], float]] = {
        "naive": lambda seed: naive_trial(setup, cpu_data, seed),
        "fast loop": lambda seed: fast_loop_trial(setup, data, seed),
        "fast task": lambda seed: fast_task_trial(setup, seed),
    }
    rows = measure(setup, methods)
    print_table(setup, data, load_s, rows)


if __name__ == "__main__":
    main()
