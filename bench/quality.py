"""Search quality through the service vs sequential in-process Optuna.

On BBOB-style test functions (4 dimensions, the optimum shifted by a seed-specific vector so
that no sampler is helped by a centred optimum), each seed runs:

- **Optuna TPE, sequential, in process**: ``TPESampler(seed=s)`` (Optuna's defaults),
  ``study.optimize`` for ``--trials`` trials;
- **service TPE, 8 clients**: a study with the ``tpe`` sampler and ``seed`` s (the service's
  defaults: constant liar on), asked and told by ``--clients`` concurrent clients until its
  ``max_trials`` budget is spent;
- **service GP, 8 clients** (with ``--gp``, on the smooth problems): the same with ``gp``;
- **Optuna TPE, 8 threads, in process**: ``TPESampler(seed=s, constant_liar=True)`` (what the
  service runs) with ``study.optimize(n_jobs=8)`` on Optuna's in-memory storage: what any
  asynchronous TPE with 8 trials in flight pays, without the service.

Every parallel arm's objective sleeps ``--eval-s`` (default 0.05 s) so that, as with real
trials, the other workers' trials are still running while one asks (an instant objective would
let Python's threads run almost one at a time).

Simple regret after n trials = best value among the trials numbered below n minus the
optimum. Printed per problem: the median over seeds of the regret after 50 and 100 trials for
each arm, and the ratio service / Optuna (the target: within 1.10).

    python bench/quality.py [--seeds 10] [--trials 100] [--clients 8] [--gp]
                            [--problems sphere rosenbrock rastrigin styblinski_tang]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, scratch_database, serve

DIM = 4
CHECKPOINTS = (50, 100)


@dataclass(frozen=True)
class Problem:
    name: str
    low: float
    high: float
    optimum: float
    smooth: bool
    f: Callable[[Sequence[float]], float]


def _sphere(z: Sequence[float]) -> float:
    return sum(v * v for v in z)


def _rosenbrock(z: Sequence[float]) -> float:
    x = [v + 1.0 for v in z]  # the optimum (1, ..., 1) moved to z = 0
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


def _rastrigin(z: Sequence[float]) -> float:
    return 10 * len(z) + sum(v * v - 10 * math.cos(2 * math.pi * v) for v in z)


_ST_ARGMIN = -2.903534


def _styblinski_tang(z: Sequence[float]) -> float:
    x = [v + _ST_ARGMIN for v in z]
    return 0.5 * sum(v**4 - 16 * v**2 + 5 * v for v in x)


_ST_MIN = DIM * 0.5 * (_ST_ARGMIN**4 - 16 * _ST_ARGMIN**2 + 5 * _ST_ARGMIN)

PROBLEMS = {
    p.name: p
    for p in (
        Problem("sphere", -5, 5, 0.0, True, _sphere),
        Problem("rosenbrock", -3, 3, 0.0, True, _rosenbrock),
        Problem("rastrigin", -5.12, 5.12, 0.0, False, _rastrigin),
        Problem("styblinski_tang", -5, 5, _ST_MIN, True, _styblinski_tang),
    )
}


def shift(problem: Problem, seed: int) -> list[float]:
    """Where the optimum is for this seed: inside the middle half of the domain."""
    rng = random.Random(f"{problem.name}-{seed}")
    quarter = (problem.high - problem.low) / 4
    return [rng.uniform(problem.low + quarter, problem.high - quarter) for _ in range(DIM)]


def evaluate(problem: Problem, where: list[float], params: dict[str, float]) -> float:
    z = [params[f"x{i}"] - where[i] for i in range(DIM)]
    return problem.f(z)


def regrets(problem: Problem, values_by_number: dict[int, float]) -> list[float]:
    out = []
    for n in CHECKPOINTS:
        seen = [v for number, v in values_by_number.items() if number < n]
        out.append(min(seen) - problem.optimum if seen else math.inf)
    return out


def optuna_tpe(problem: Problem, seed: int, trials: int) -> list[float]:
    where = shift(problem, seed)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(
        lambda t: evaluate(
            problem,
            where,
            {f"x{i}": t.suggest_float(f"x{i}", problem.low, problem.high) for i in range(DIM)},
        ),
        n_trials=trials,
    )
    return regrets(problem, {t.number: float(t.value) for t in study.trials if t.value is not None})


def optuna_parallel(
    problem: Problem, seed: int, trials: int, threads: int, eval_s: float
) -> list[float]:
    where = shift(problem, seed)
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    study = optuna.create_study(sampler=sampler)

    def objective(t: optuna.Trial) -> float:
        params = {f"x{i}": t.suggest_float(f"x{i}", problem.low, problem.high) for i in range(DIM)}
        time.sleep(eval_s)
        return evaluate(problem, where, params)

    study.optimize(objective, n_trials=trials, n_jobs=threads)
    return regrets(problem, {t.number: float(t.value) for t in study.trials if t.value is not None})


def service_run(
    base: str,
    headers: dict[str, str],
    problem: Problem,
    seed: int,
    sampler: str,
    trials: int,
    clients: int,
    eval_s: float,
) -> list[float]:
    where = shift(problem, seed)
    body = {
        "name": f"{problem.name}-{sampler}-{seed}",
        "directions": ["minimize"],
        "search_space": {
            f"x{i}": {"type": "float", "low": problem.low, "high": problem.high} for i in range(DIM)
        },
        "sampler": {"name": sampler, "options": {"seed": seed}},
        "max_trials": trials,
        "lease_seconds": 600,
    }
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        created = client.post("/api/v1/studies", json=body)
        created.raise_for_status()
        study_id = created.json()["id"]
    values: dict[int, float] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def work(index: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
            while True:
                answer = client.post(
                    f"/api/v1/studies/{study_id}/trials", json={"worker_id": f"c{index}"}
                )
                if answer.status_code == 204:
                    return
                if answer.status_code != 200:
                    errors.append(f"ask: {answer.status_code} {answer.text}")
                    return
                trial = answer.json()
                time.sleep(eval_s)
                value = evaluate(problem, where, trial["params"])
                done = client.post(
                    f"/api/v1/trials/{trial['id']}/complete",
                    json={"lease_token": trial["lease"]["token"], "values": [value]},
                )
                if done.status_code != 200:
                    errors.append(f"complete: {done.status_code} {done.text}")
                    return
                with lock:
                    values[trial["number"]] = value

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(errors[0])
    return regrets(problem, values)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--gp", action="store_true", help="also GP through the service")
    parser.add_argument("--eval-s", type=float, default=0.05, help="objective time, parallel")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    header = (
        f"{'problem':<16} {'arm':<22}"
        + "".join(f" {'regret@' + str(n):>12}" for n in CHECKPOINTS)
        + "".join(f" {'vs Optuna@' + str(n):>13}" for n in CHECKPOINTS)
    )
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        token = admin_token(url)
        headers = {"Authorization": f"Bearer {token}"}
        with serve(url, port=8793) as server:
            print(
                f"{args.seeds} seeds, {args.trials} trials, {args.clients} clients, {DIM}-d,"
                " median simple regret"
            )
            print(header)
            parallel = (args.trials, args.clients, args.eval_s)
            for name in args.problems:
                problem = PROBLEMS[name]
                arms: dict[str, list[list[float]]] = {
                    "Optuna TPE sequential": [
                        optuna_tpe(problem, s, args.trials) for s in range(args.seeds)
                    ],
                    f"Optuna TPE x{args.clients}": [
                        optuna_parallel(problem, s, args.trials, args.clients, args.eval_s)
                        for s in range(args.seeds)
                    ],
                    f"service TPE x{args.clients}": [
                        service_run(server.url, headers, problem, s, "tpe", *parallel)
                        for s in range(args.seeds)
                    ],
                }
                if args.gp and problem.smooth:
                    arms[f"service GP x{args.clients}"] = [
                        service_run(server.url, headers, problem, s, "gp", *parallel)
                        for s in range(args.seeds)
                    ]
                base = [median([r[i] for r in arms["Optuna TPE sequential"]]) for i in (0, 1)]
                for arm, runs in arms.items():
                    med = [median([r[i] for r in runs]) for i in (0, 1)]
                    ratios = [m / b if b > 0 else math.nan for m, b in zip(med, base, strict=True)]
                    print(
                        f"{name:<16} {arm:<22}"
                        + "".join(f" {m:>12.4g}" for m in med)
                        + "".join(f" {r:>13.2f}" for r in ratios)
                    )


if __name__ == "__main__":
    main()
