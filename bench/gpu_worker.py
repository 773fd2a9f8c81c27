"""The worker on a GPU against a naive training loop, through the whole service.

Runs the API (on a scratch database: the local PostgreSQL or the embedded one), enqueues the
same N Fashion-MNIST configurations into a study, and lets one worker process with ``--slots``
slots train them; then trains the same configurations one after another with a textbook loop
(DataLoader over CPU tensors, per-batch host-to-device copies, fp32, ``loss.item()`` every
batch) on the same device. Prints trials/hour of both, the speedup, and the GPU utilisation
sampled with nvidia-smi during each phase. Not a test.

    python bench/gpu_worker.py --device cuda --trials 24 --epochs 5 --slots 4
    python bench/gpu_worker.py --device cpu --quick          # a smoke run anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import admin_token, scratch_database, server_process
from bench.train_loop import Setup, naive_trial
from workers.tasks.dataset_spec import DatasetSpec, dataset_spec_from_task
from workers.tasks.datasets import load_dataset
from workers.tasks.mlp_config import MLPParams


def configs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "lr": round(10 ** rng.uniform(-4, -2), 6),
            "n_layers": rng.randint(1, 4),
            "batch_size": rng.choice([64, 128, 256, 512]),
            "hidden_size": 256,
        }
        for _ in range(n)
    ]


class GpuSampler:
    """nvidia-smi utilisation samples (percent) every 0.5 s while running."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = shutil.which("nvidia-smi") is not None

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            )
            with contextlib.suppress(ValueError, IndexError):
                self.samples.append(float(out.stdout.split()[0]))

    def mean(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "n/a"


def run_service(
    args: argparse.Namespace, cfgs: list[dict[str, Any]], task: dict[str, Any], tmp: Path
) -> tuple[float, float, GpuSampler]:
    with scratch_database(tmp) as url, server_process(url, port=args.port) as base:
        api = base + "/api/v1"
        token = admin_token(url)
        auth = {"Authorization": f"Bearer {token}"}
        space = {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "n_layers": {"type": "int", "low": 1, "high": 4},
            "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
            "hidden_size": {"type": "categorical", "choices": [256]},
        }
        body = {
            "name": "gpu-bench",
            "search_space": space,
            "sampler": {"name": "random"},
            "task": task,
            "max_trials": len(cfgs),
            "max_parallel": args.slots,
            "lease_seconds": 300,
        }
        study = httpx.post(f"{api}/studies", json=body, headers=auth).raise_for_status().json()
        for cfg in cfgs:
            httpx.post(
                f"{api}/studies/{study['id']}/trials/enqueue", json={"params": cfg}, headers=auth
            ).raise_for_status()
        env = {**os.environ, "HPO_SPOOL_DIR": str(tmp / "spool"), "HPO_API_TOKEN": token}
        log = (tmp / "worker.log").open("wb")
        started = time.perf_counter()
        with GpuSampler() as gpu:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "workers",
                    "--api",
                    base,
                    "--device",
                    args.device,
                    "--slots",
                    str(args.slots),
                    "--poll-wait",
                    "1",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                while True:
                    s = httpx.get(f"{api}/studies/{study['id']}", headers=auth).json()
                    if s["state"] == "completed":
                        break
                    if worker.poll() is not None:
                        raise SystemExit(f"worker died; see {tmp / 'worker.log'}")
                    time.sleep(0.2)
            finally:
                worker.terminate()
                worker.wait(60)
        wall = time.perf_counter() - started
        trials = httpx.get(f"{api}/studies/{study['id']}/trials?limit=1000", headers=auth).json()[
            "items"
        ]
        first = min(datetime.fromisoformat(t["datetime_start"]) for t in trials)
        last = max(datetime.fromisoformat(t["datetime_complete"]) for t in trials)
        elapsed = (last - first).total_seconds()  # from the first trial's start: no start-up
        print(f"service: {wall:.1f} s wall including worker start-up, {elapsed:.1f} s of trials")
        best = httpx.get(f"{api}/studies/{study['id']}/best", headers=auth).json()["best"]["value"]
        counts = s["trial_counts"]
        if counts["complete"] != len(cfgs):
            print(f"warning: {counts} (see {tmp / 'worker.log'})")
    return elapsed, best, gpu


def run_naive(
    args: argparse.Namespace, cfgs: list[dict[str, Any]], spec: DatasetSpec
) -> tuple[float, float, GpuSampler]:
    device = torch.device("cuda" if args.device.startswith("cuda") else "cpu")
    cpu_data = load_dataset(spec, torch.device("cpu"))
    best = float("inf")
    started = time.perf_counter()
    with GpuSampler() as gpu:
        for i, cfg in enumerate(cfgs):
            setup = Setup(device, spec, MLPParams.parse(cfg), args.epochs, 1)
            best = min(best, naive_trial(setup, cpu_data, seed=i))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return time.perf_counter() - started, best, gpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--data-dir", help="directory with Fashion-MNIST's IDX files")
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--quick", action="store_true", help="few, small trials (smoke run)")
    args = parser.parse_args()
    max_samples = None
    if args.quick:
        args.trials, args.epochs, args.slots, max_samples = 4, 2, 2, 6000
    task: dict[str, Any] = {
        "name": "mlp_classifier",
        "dataset": "fashion_mnist",
        "epochs": args.epochs,
    }
    if args.data_dir:
        task["dir"] = args.data_dir
    if max_samples:
        task["max_samples"] = max_samples
    spec = dataset_spec_from_task(task)
    cfgs = configs(args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        svc_s, svc_best, svc_gpu = run_service(args, cfgs, task, Path(tmp))
    naive_s, naive_best, naive_gpu = run_naive(args, cfgs, spec)
    svc_rate, naive_rate = 3600 * len(cfgs) / svc_s, 3600 * len(cfgs) / naive_s
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{len(cfgs)} trials x {args.epochs} epochs of Fashion-MNIST on {name}")
    print(f"{'':28} {'trials/hour':>12} {'wall s':>8} {'GPU util':>9} {'best val loss':>14}")
    print(
        f"{'service worker (' + str(args.slots) + ' slots)':28} {svc_rate:12.0f} {svc_s:8.1f} "
        f"{svc_gpu.mean():>9} {svc_best:14.4f}"
    )
    print(
        f"{'naive loop (sequential)':28} {naive_rate:12.0f} {naive_s:8.1f} "
        f"{naive_gpu.mean():>9} {naive_best:14.4f}"
    )
    print(f"speedup: {svc_rate / naive_rate:.2f}x trials/hour")


if __name__ == "__main__":
    main()
