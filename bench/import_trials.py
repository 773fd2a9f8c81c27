"""Warm starts: how long importing 10 000 finished trials takes, through a real server.

One ``hpo serve`` process on a scratch database; ``HPOClient.import_trials`` sends 10 000
complete trials of a three-parameter space (float, int, categorical) in one request, first
without intermediate values, then with ``--steps`` of them each; then a fork of the second
study (``"from"`` in the create body) imports the same trials server-side. Printed: seconds
per import (request to answer: JSON, checks, one multi-row statement, commit), and the first
ask after it (the study view reads the 10 000 trials once).

    python bench/import_trials.py [--trials 10000] [--steps 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, scratch_database, serve
from workers.client import HPOClient

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 6},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
}


def trials(n: int, steps: int, rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for number in range(n):
        lr = math.exp(rng.uniform(math.log(1e-5), math.log(0.1)))
        layers = rng.randint(1, 6)
        batch = rng.choice([16, 32, 64, 128, 256, 512])
        value = (math.log10(lr) + 3) ** 2 + 0.1 * (layers - 3) ** 2
        item: dict[str, Any] = {
            "number": number,
            "params": {"lr": lr, "n_layers": layers, "batch_size": batch},
            "values": [value],
        }
        if steps:
            item["intermediate_values"] = [
                {"step": s, "value": value + 1 / (s + 1)} for s in range(steps)
            ]
        out.append(item)
    return out


def study(client: HPOClient, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "search_space": SPACE, "sampler": {"name": "tpe"}, **extra}
    return client.create_study(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        token = admin_token(url)
        with serve(url, port=free_port()) as server, HPOClient(server.url, token=token) as client:
            for steps in (0, args.steps):
                batch = trials(args.trials, steps, rng)
                size = len(httpx.Request("POST", "/", json={"trials": batch}).content)
                took = []
                for i in range(args.repeat):
                    target = study(client, f"import-{steps}-{i}")
                    started = time.perf_counter()
                    client.import_trials(target["id"], batch)
                    took.append(time.perf_counter() - started)
                started = time.perf_counter()
                client.ask(target["id"], "bench")
                first_ask = time.perf_counter() - started
                print(
                    f"import {args.trials} trials, {steps} intermediate values each"
                    f" ({size / 2**20:.1f} MiB): median {statistics.median(took):.2f} s"
                    f" (of {args.repeat}); first ask after it {first_ask:.2f} s"
                )
            started = time.perf_counter()
            forked = study(client, "forked", **{"from": {"study": target["id"]}})
            seconds = time.perf_counter() - started
            print(f"fork of {forked['fork']['imported']} trials: {seconds:.2f} s")


if __name__ == "__main__":
    main()
