"""Optuna's ``TPESampler`` vs the service's ``ViewTPESampler``, both on Optuna's in-memory storage.

The same history (``bench.ask_tell.history``: finished trials with 10 intermediate values
each) and the same seed; each round is one ``study.ask`` + ``study.tell``. Prints ms per round
(the best of ``--repeats`` runs of each, taken in turns)
and checks that both samplers suggested the same parameters (they must: the service's sampler
only caches per-trial work). Nothing is asserted beyond that equality.

    python bench/tpe_sampler.py [--sizes 100,1000,5000] [--iters 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ask_tell import DISTRIBUTIONS, frozen_trials, history, objective
from service.sampling.tpe import ViewTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run(
    sampler: optuna.samplers.BaseSampler, size: int, iters: int
) -> tuple[float, list[dict[str, Any]]]:
    study = optuna.create_study(sampler=sampler)
    study.add_trials(frozen_trials(history(size)))
    asked = []
    for _ in range(10):  # warm-up
        trial = study.ask(DISTRIBUTIONS)
        study.tell(trial, objective(trial.params))
    start = time.perf_counter()
    for _ in range(iters):
        trial = study.ask(DISTRIBUTIONS)
        asked.append(trial.params)
        study.tell(trial, objective(trial.params))
    return 1000 * (time.perf_counter() - start) / iters, asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each sampler, in turns; the best counts"
    )
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        stock_ms, view_ms, same = [], [], True
        for _ in range(args.repeats):  # in turns: a drifting machine weighs on both alike
            ms, stock = run(optuna.samplers.TPESampler(seed=0), size, args.iters)
            stock_ms.append(ms)
            ms, view = run(ViewTPESampler(seed=0), size, args.iters)
            view_ms.append(ms)
            same = same and stock == view
        best_stock, best_view = min(stock_ms), min(view_ms)
        print(
            f"{size:5} trials: TPESampler {best_stock:6.2f} ms  ViewTPESampler {best_view:6.2f} ms"
            f"  ({best_stock / best_view:4.2f}x)  same suggestions: {same}",
            flush=True,
        )


if __name__ == "__main__":
    main()
