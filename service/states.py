"""The states of trials and studies: the API's names, Optuna's, and the map between them."""

from __future__ import annotations

from typing import Final, Literal, get_args

TrialStateName = Literal["waiting", "running", "complete", "pruned", "failed", "paused"]
"""A trial's state as the API names it. ``paused``: stopped at a rung by the ``asha`` pruner,
waiting to be promoted (Optuna's state ``WAITING``, with ``hpo_trials.paused_step`` set and no
place in the queue)."""

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
    "paused": "WAITING",
}
"""Each API state's Optuna state (``waiting`` and ``paused`` share ``WAITING``)."""
API_STATE: Final[dict[OptunaTrialState, TrialStateName]] = {
    "WAITING": "waiting",
    "RUNNING": "running",
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
}
"""The API state of an Optuna state for a trial that is not paused (see :func:`api_state`)."""
FINISHED_STATES: Final[frozenset[OptunaTrialState]] = frozenset({"COMPLETE", "PRUNED", "FAIL"})


def api_state(state: OptunaTrialState, paused_step: int | None) -> TrialStateName:
    """The API's name of a trial in Optuna's ``state`` whose ``hpo_trials.paused_step`` is
    ``paused_step``: a WAITING trial with a paused step is ``paused`` (a running trial told to
    pause is still running until it hands its lease back)."""
    if state == "WAITING" and paused_step is not None:
        return "paused"
    return API_STATE[state]


API_STATE_SQL: Final[str] = (
    "CASE WHEN t.state = 'WAITING' AND h.paused_step IS NOT NULL THEN 'paused'"
    " WHEN t.state = 'FAIL' THEN 'failed' ELSE lower(t.state::text) END"
)
""":func:`api_state` in SQL, for a query that joins ``trials t`` and ``hpo_trials h``."""
