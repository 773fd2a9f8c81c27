"""The states of trials and studies: the API's names, Optuna's, and the map between them."""

from __future__ import annotations

from typing import Final, Literal, get_args

TrialStateName = Literal["waiting", "running", "complete", "pruned", "failed"]
"""A trial's state as the API names it."""

OptunaTrialState = Literal["WAITING", "RUNNING", "COMPLETE", "PRUNED", "FAIL"]
"""A trial's state as Optuna's ``trials.state`` column holds it."""

StoredStudyState = Literal["running", "paused", "stopped"]
"""A study's state as ``hpo_studies.state`` holds it."""

StudyStateName = Literal["running", "paused", "stopped", "completed"]
"""A study's state as the API shows it (``completed``: its budget is spent and nothing runs)."""

TRIAL_STATES: Final[tuple[TrialStateName, ...]] = get_args(TrialStateName)
OPTUNA_STATE: Final[dict[TrialStateName, OptunaTrialState]] = {
    "waiting": "WAITING",
    "running": "RUNNING",
    "complete": "COMPLETE",
    "pruned": "PRUNED",
    "failed": "FAIL",
}
API_STATE: Final[dict[OptunaTrialState, TrialStateName]] = {v: k for k, v in OPTUNA_STATE.items()}
FINISHED_STATES: Final[frozenset[OptunaTrialState]] = frozenset({"COMPLETE", "PRUNED", "FAIL"})
