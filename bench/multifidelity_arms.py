"""The arms, datasets and figures of ``bench/multifidelity.py`` (no service calls here).

An arm is a study body: the same search space, sampler and task for every arm, only the pruner
(or scheduler) and the budget fields differ. A run's result is the list of its validation
losses in the order they were reported (one report = one epoch trained); every figure comes
from the first ``B`` of them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

LOOSE_TRIALS: Final = 10_000
"""``max_trials`` of the arms that stop trials early: the bench stops them at the epoch budget."""


@dataclass(frozen=True)
class Budget:
    """``trials`` x ``epochs`` of arm (a): ``epochs`` per trial, ``total`` epochs per run."""

    trials: int
    epochs: int
    pbt_population: int
    pbt_interval: int

    @property
    def total(self) -> int:
        return self.trials * self.epochs


@dataclass(frozen=True)
class Arm:
    """One scheduler: ``fields(budget, seed)`` are the study body's keys that set it."""

    key: str
    label: str
    fields: Callable[[Budget, int], dict[str, Any]]
    bench_stops: bool
    """Whether the bench stops the study once ``budget.total`` epochs are reported (its own
    budget fields cannot say "epochs")."""


def _no_pruning(b: Budget, seed: int) -> dict[str, Any]:
    return {"pruner": {"name": "none"}, "max_trials": b.trials}


def _median(b: Budget, seed: int) -> dict[str, Any]:
    return {"pruner": {"name": "median"}, "max_trials": LOOSE_TRIALS}


def _successive_halving(b: Budget, seed: int) -> dict[str, Any]:
    options = {"min_resource": 1, "reduction_factor": 3}
    return {
        "pruner": {"name": "successive_halving", "options": options},
        "max_trials": LOOSE_TRIALS,
    }


def _asha(b: Budget, seed: int) -> dict[str, Any]:
    options = {"min_resource": 1, "reduction_factor": 3, "max_resource": b.epochs}
    return {
        "pruner": {"name": "asha", "options": options},
        "max_trials": LOOSE_TRIALS,
        "max_resource_total": b.total,
    }


def _pbt(b: Budget, seed: int) -> dict[str, Any]:
    options = {
        "population": b.pbt_population,
        "interval": b.pbt_interval,
        "quantile": 0.25,
        "mutable": ["lr", "weight_decay"],
        "perturb": [0.8, 1.2],
        "resample_probability": 0.25,
        "seed": seed,
    }
    return {"pruner": {"name": "none"}, "scheduler": {"name": "pbt", "options": options}}


ARMS: Final = {
    arm.key: arm
    for arm in (
        Arm("a", "(a) no pruning", _no_pruning, bench_stops=False),
        Arm("b", "(b) median", _median, bench_stops=True),
        Arm("c", "(c) succ. halving", _successive_halving, bench_stops=True),
        Arm("d", "(d) asha pause", _asha, bench_stops=False),
        Arm("e", "(e) pbt", _pbt, bench_stops=True),
    )
}

DATASETS: Final[dict[str, dict[str, Any]]] = {
    "digits": {"dataset": "digits"},
    "fashion_mnist": {"dataset": "fashion_mnist", "max_samples": 4000},
    "mnist1d": {"dataset": "mnist1d", "max_samples": 4000},
}
"""The task spec's dataset part (80% train, 20% validation, ``split_seed`` 0)."""

SEARCH_SPACE: Final[dict[str, Any]] = {
    "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "weight_decay": {"type": "float", "low": 1e-7, "high": 1e-2, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 3},
    "hidden_size": {"type": "int", "low": 16, "high": 256, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
}
"""MLPParams names; Adam (the default optimizer), one width for every hidden layer."""


def study_body(
    arm: Arm, dataset: str, seed: int, sampler: str, budget: Budget, tag: str
) -> dict[str, Any]:
    return {
        "name": f"mf-{tag}-{dataset}-{arm.key}-s{seed}",
        "directions": ["minimize"],
        "metric_names": ["val_loss"],
        "search_space": SEARCH_SPACE,
        "sampler": {"name": sampler, "options": {"seed": seed}},
        "task": {"name": "mlp_classifier", "epochs": budget.epochs, **DATASETS[dataset]},
        "lease_seconds": 120,
        "max_retries": 2,
        **arm.fields(budget, seed),
    }


# -- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """One reported epoch, from the study's event log."""

    trial_id: int
    step: int
    value: float


def best_so_far(losses: Sequence[float], spent: int) -> float:
    """The lowest loss among the first ``spent`` epochs reported (inf before any)."""
    window = [v for v in losses[:spent] if math.isfinite(v)]
    return min(window) if window else math.inf


def epochs_to(losses: Sequence[float], target: float, budget: int) -> int | None:
    """Epochs spent when a loss <= ``target`` was first reported, within ``budget``; None if
    never."""
    for spent, value in enumerate(losses[:budget], start=1):
        if value <= target:
            return spent
    return None


def median_or_none(values: Sequence[int | None]) -> float | None:
    """The median, "not reached" (None) counting as worse than any number: None when at least
    half the values are None (the middle one is then not reached)."""
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    n = len(ordered)
    middle = ordered[(n - 1) // 2 : n // 2 + 1]
    if any(v is None for v in middle):
        return None
    return statistics.fmean(v for v in middle if v is not None)


@dataclass(frozen=True)
class ArmFigures:
    """One dataset and arm, over the seeds it ran (every list is in the order of ``seeds``)."""

    seeds: list[int]
    best: list[float]
    """Per seed: the best validation loss within ``B`` epochs."""
    to_target: list[int | None]
    """Per seed: epochs spent to reach (a)'s best of that seed within 2% (None: not reached)."""
    spent: list[int]
    """Per seed: epochs reported in all (may exceed ``B``: a stop takes an epoch to land)."""
    trials: list[int]
    """Per seed: trials that reported at least one epoch within ``B``."""
    curve: dict[int, list[float]]
    """Checkpoint epochs -> per seed best loss by then."""

    def at(self, k: int) -> dict[int, float]:
        """Seed -> best loss within ``k`` epochs (``k`` one of the checkpoints)."""
        return dict(zip(self.seeds, self.curve[k], strict=True))


def figures(
    reports: Mapping[int, Sequence[Report]],
    targets: Mapping[int, float],
    budget: int,
    checkpoints: Sequence[int],
) -> ArmFigures:
    """``reports[seed]``: that seed's reports in order; ``targets[seed]``: its 2% target."""
    seeds = sorted(reports)
    runs = [[r.value for r in reports[s]] for s in seeds]
    return ArmFigures(
        seeds=seeds,
        best=[best_so_far(r, budget) for r in runs],
        to_target=[epochs_to(r, targets[s], budget) for s, r in zip(seeds, runs, strict=True)],
        spent=[len(r) for r in runs],
        trials=[len({r.trial_id for r in reports[s][:budget]}) for s in seeds],
        curve={k: [best_so_far(r, k) for r in runs] for k in checkpoints},
    )


def checkpoints_of(budget: int) -> list[int]:
    """The epoch counts at which arms are compared: 1/8, 1/4, 0.4, 1/2 and all of ``B``."""
    return sorted({max(1, round(budget * f)) for f in (0.125, 0.25, 0.4, 0.5, 1.0)})
