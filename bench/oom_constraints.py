"""Out-of-memory failures as infeasible evidence: how many trials run out of memory?

An objective with a known out-of-memory region: a model with ``batch_size * width * n_layers``
above ``MEMORY_LIMIT`` raises ``RuntimeError("CUDA out of memory ...")``, which
``workers.optimize`` reports as a failed trial with the reason ``oom``. Otherwise its loss
falls with the model's size (so the best models lie near the edge of the region, as in real
studies) and has an optimum in ``lr``.

For each seed, two studies through a real ``hpo serve`` with TPE (that seed, the service's
defaults otherwise), ``--trials`` trials each:

- ``learned``: ``infeasible_failures: ["oom"]`` (the default): the sampler sees each
  out-of-memory trial as an infeasible point;
- ``ignored``: ``infeasible_failures: []``: failed trials are left out of the sampler, as with
  plain Optuna.

Prints, per arm, the median over the seeds of the number of out-of-memory trials and of the
best loss (and their ranges). Nothing is asserted.

    python bench/oom_constraints.py [--seeds 10] [--trials 100]
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, scratch_database, serve
from workers.client import HPOClient
from workers.optimize import ClientTrial, optimize

MEMORY_LIMIT = 2**17  # batch_size * width * n_layers (64 x 256 x 8 fits): a third of the space
SPACE = {
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
    "width": {"type": "int", "low": 32, "high": 1024, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 8},
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
}
ARMS = {"learned": ["oom"], "ignored": []}


def objective(trial: ClientTrial) -> float:
    p = trial.params
    memory = p["batch_size"] * p["width"] * p["n_layers"]
    if memory > MEMORY_LIMIT:
        raise RuntimeError(f"CUDA out of memory (simulated: {memory} > {MEMORY_LIMIT})")
    capacity = 20.0 / math.sqrt(p["width"] * p["n_layers"])
    return (
        0.3 * (math.log10(p["lr"]) + 2.5) ** 2
        + capacity
        + 0.05 * abs(math.log2(p["batch_size"]) - 7)
    )


def run_arm(client: HPOClient, name: str, seed: int, trials: int) -> tuple[int, float]:
    """(out-of-memory trials, best loss) of one study."""
    study = client.create_study(
        {
            "name": f"{name}-{seed}",
            "search_space": SPACE,
            "sampler": {"name": "tpe", "options": {"seed": seed}},
            "pruner": {"name": "none"},
            "max_trials": trials,
            "infeasible_failures": ARMS[name],
        }
    )
    finished = optimize(client, study["id"], objective, trials, catch=(RuntimeError,))
    ooms = sum(1 for t in finished if t["state"] == "failed" and t["fail_reason"] == "oom")
    values = [t["value"] for t in finished if t["state"] == "complete"]
    return ooms, min(values) if values else math.inf


def _median_range(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    logging.getLogger("workers.optimize").setLevel(logging.ERROR)
    results: dict[str, list[tuple[int, float]]] = {name: [] for name in ARMS}
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        token = admin_token(url)
        with serve(url) as server, HPOClient(server.url, token=token) as client:
            for seed in range(args.seeds):
                for name in ARMS:
                    results[name].append(run_arm(client, name, seed, args.trials))
                line = ", ".join(f"{n} {results[n][-1][0]} oom" for n in ARMS)
                print(f"seed {seed}: {line}", flush=True)
    print(f"\nTPE, {args.trials} trials, {args.seeds} seeds: median (range)")
    print(f"{'arm':<10} {'infeasible_failures':<20} {'oom trials':<18} best loss")
    for name, rows in results.items():
        ooms = _median_range([float(o) for o, _ in rows], ".1f")
        best = _median_range([b for _, b in rows], ".3f")
        print(f"{name:<10} {ARMS[name]!s:<20} {ooms:<18} {best}")


if __name__ == "__main__":
    main()
