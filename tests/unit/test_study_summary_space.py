"""``hpo study show`` prints each parameter's range and, for a conditional one, its condition."""

from __future__ import annotations

from typing import Any

import pytest

from service.cli.study_summary import print_study
from tests.unit.test_conditions import EXAMPLE


def _study(space: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": 1,
        "name": "cond",
        "team": "t",
        "state": "running",
        "optuna_study_name": "t/cond",
        "directions": ["minimize"],
        "metric_names": None,
        "search_space": space,
        "sampler": {"name": "tpe", "options": {}},
        "pruner": {"name": "nop", "options": {}},
        "task": None,
        "trial_counts": dict.fromkeys(("complete", "pruned", "failed", "running", "waiting"), 0),
        "n_trials_started": 0,
        "max_trials": None,
        "max_parallel": None,
        "max_retries": 2,
        "lease_seconds": 120,
        "created_at": "2026-12-01T12:00:00+00:00",
        "updated_at": "2026-12-01T12:00:00+00:00",
    }


def test_conditional_parameters_show_their_conditions(capsys: pytest.CaptureFixture[str]) -> None:
    space = {
        **EXAMPLE,
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "when": {"n_layers": {"max": 2}}},
        "width_mid": {
            "type": "int",
            "low": 8,
            "high": 64,
            "when": {"n_layers": {"min": 2, "max": 3}, "optimizer": ["sgd", "adam"]},
        },
    }
    print_study(_study(space), {})
    lines = [line.strip() for line in capsys.readouterr().out.splitlines()]
    shown = {line.split(":", 1)[0].split()[-1]: line for line in lines if ":" in line}
    assert shown["optimizer"].endswith("optimizer: categorical sgd, adam")
    assert shown["momentum"].endswith("momentum: float 0 .. 0.99, only when optimizer in sgd")
    assert shown["n_layers"].endswith("n_layers: int 1 .. 4")
    assert shown["width_l3"].endswith("int 16 .. 1024, log, only when n_layers >= 3")
    assert shown["dropout"].endswith("float 0 .. 0.5, only when n_layers <= 2")
    assert shown["width_mid"].endswith(
        "int 8 .. 64, only when 2 <= n_layers <= 3 and optimizer in sgd, adam"
    )
