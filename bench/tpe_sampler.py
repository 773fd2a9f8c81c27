"""In-process TPE sampling: the service's ``StudyView.sample`` vs Optuna's own study in memory.

The service samples ``tpe`` with Optuna's ``TPESampler`` (built from the study's spec: seed 0,
constant liar on) on a study view, the ``ViewStorage`` a server process keeps in memory; here
the view is fed the history as the database's rows, the way a refresh feeds it. Optuna's
side is ``TPESampler(seed=0, constant_liar=True)`` on ``InMemoryStorage`` with the same history
(``bench.ask_tell.history``: finished trials with 10 intermediate values each). Each round
samples one trial (timed) and finishes it with the objective's value (not timed). Prints ms per
sample, the best of ``--repeats`` runs of each taken in turns, and whether both suggested the
same parameters (they must: same sampler, same seed, same history). Nothing is asserted.

    python bench/tpe_sampler.py [--sizes 1000,5000] [--iters 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ask_tell import DISTRIBUTIONS, SPACE, frozen_trials, history, objective
from service.sampling.view import StudyDefinition, StudyView
from service.spec import PrunerSpec, SamplerSpec, parse_search_space
from tests.view_rows import change_row

optuna.logging.set_verbosity(optuna.logging.WARNING)

WARM_UP = 10

Run = tuple[float, list[dict[str, Any]]]  # ms per sample, the suggestions


def _finished(number: int, params: dict[str, Any]) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(
        params=params, distributions=DISTRIBUTIONS, value=objective(params)
    )
    trial.number = number
    return trial


def run_view(size: int, iters: int) -> Run:
    definition = StudyDefinition(
        study_id=1,
        name="bench",
        directions=["minimize"],
        search_space=parse_search_space(SPACE),
        sampler=SamplerSpec(name="tpe", options={"seed": 0}),
        pruner=PrunerSpec(),
        task=None,
    )
    view = StudyView(definition)
    trials = frozen_trials(history(size))
    for number, trial in enumerate(trials):
        trial.number = number
    view.apply_changes([change_row(n + 1, t) for n, t in enumerate(trials)], horizon=0)
    asked, elapsed = [], 0.0
    for i in range(WARM_UP + iters):
        start = time.perf_counter()
        sampled = view.sample()
        if i >= WARM_UP:
            elapsed += time.perf_counter() - start
            asked.append(sampled.params)
        finished = _finished(sampled.number, sampled.params)
        view.apply_changes([change_row(size + i + 1, finished)], horizon=0)
    return 1000 * elapsed / iters, asked


def run_optuna(size: int, iters: int) -> Run:
    sampler = optuna.samplers.TPESampler(seed=0, constant_liar=True)
    study = optuna.create_study(sampler=sampler)
    study.add_trials(frozen_trials(history(size)))
    asked, elapsed = [], 0.0
    for i in range(WARM_UP + iters):
        start = time.perf_counter()
        trial = study.ask(DISTRIBUTIONS)
        if i >= WARM_UP:
            elapsed += time.perf_counter() - start
            asked.append(trial.params)
        study.tell(trial, objective(trial.params))
    return 1000 * elapsed / iters, asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs of each, in turns; the best counts"
    )
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        optuna_ms, view_ms, same = [], [], True
        for _ in range(args.repeats):  # in turns: a drifting machine weighs on both alike
            ms, stock = run_optuna(size, args.iters)
            optuna_ms.append(ms)
            ms, ours = run_view(size, args.iters)
            view_ms.append(ms)
            same = same and stock == ours
        best_optuna, best_view = min(optuna_ms), min(view_ms)
        print(
            f"{size:5} trials: InMemoryStorage {best_optuna:6.2f} ms"
            f"  StudyView.sample {best_view:6.2f} ms ({best_optuna / best_view:4.2f}x)"
            f"  same suggestions: {same}",
            flush=True,
        )


if __name__ == "__main__":
    main()
