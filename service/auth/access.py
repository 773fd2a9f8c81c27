"""Which studies and trials a caller may touch: only its own team's.

Another team's study or trial answers exactly as one that does not exist (404 with the same
message), so ids reveal nothing. The team of a study never changes, so each process caches
it; the lookups cost no SQL once warm.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import Engine

from service.auth import repository as repo
from service.auth.principal import Principal
from service.errors import NotFound
from service.trials.index import TrialStudyIndex


class Access:
    """Thread-safe checks of a caller against a study or trial id."""

    def __init__(
        self, engine: Engine, trial_index: TrialStudyIndex, capacity: int = 100_000
    ) -> None:
        self._engine = engine
        self._trials = trial_index
        self._capacity = capacity
        self._teams: OrderedDict[int, int] = OrderedDict()  # study id → team id
        self._lock = threading.Lock()

    def check_study(self, principal: Principal, study_id: int) -> None:
        """NotFound unless the study exists and belongs to the caller's team."""
        if principal.team_id is None:
            return  # auth off: every team's studies; the services answer 404 for unknown ids
        if self._team_of(study_id) != principal.team_id:
            raise NotFound(f"study {study_id} does not exist")

    def check_trial(self, principal: Principal, trial_id: int) -> None:
        """NotFound unless the trial exists and its study belongs to the caller's team."""
        if principal.team_id is None:
            return
        study_id = self._trials.study_of(trial_id)  # NotFound for an unknown trial
        if self._team_of(study_id) != principal.team_id:
            raise NotFound(f"trial {trial_id} does not exist")

    def _team_of(self, study_id: int) -> int | None:
        with self._lock:
            team_id = self._teams.get(study_id)
        if team_id is not None:
            return team_id
        with self._engine.connect() as conn:
            team_id = repo.team_of_study(conn, study_id)
        if team_id is not None:
            with self._lock:
                self._teams[study_id] = team_id
                while len(self._teams) > self._capacity:
                    self._teams.popitem(last=False)
        return team_id
