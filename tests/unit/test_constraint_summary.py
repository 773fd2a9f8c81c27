"""``hpo study trials`` notes: which complete trials are infeasible, and why; whose checkpoint a
PBT child started from."""

from __future__ import annotations

from typing import Any

import pytest

from service.cli.study_summary import print_trials


def _trial(number: int, value: float, constraints: dict[str, float] | None) -> dict[str, Any]:
    feasible = None if constraints is None else all(v <= 0 for v in constraints.values())
    return {
        "number": number,
        "state": "complete",
        "values": [value],
        "value": value,
        "params": {"lr": 0.01},
        "duration_s": 1.0,
        "fail_reason": None,
        "worker_id": None,
        "constraints": constraints,
        "feasible": feasible,
    }


def test_infeasible_trials_are_marked_with_their_violated_constraints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_trials(
        [
            _trial(0, 1.0, {"mem_gb_over": 2.5, "latency": -1.0}),
            _trial(1, 2.0, {"mem_gb_over": 0.0, "latency": -3.0}),
            _trial(2, 3.0, None),
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert "infeasible: mem_gb_over=2.5" in lines[1] and "latency" not in lines[1]
    assert "infeasible" not in lines[2] and "infeasible" not in lines[3]


def test_a_pbt_child_says_whose_checkpoint_it_started_from(
    capsys: pytest.CaptureFixture[str],
) -> None:
    child = {**_trial(4, 0.5, None), "parent_trial_id": 17, "started_from_step": 8}
    print_trials([_trial(0, 1.0, None), child])
    lines = capsys.readouterr().out.splitlines()
    assert "child of trial id 17 from step 8" in lines[2]
    assert "child of" not in lines[1]
