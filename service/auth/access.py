"""Which studies and trials a caller may touch: only its own team's.

Another team's study or trial answers exactly as one that does not exist (404 with the same
message), so ids reveal nothing. The team of a study never changes, so each process caches
it; the checks cost no SQL once warm, and then run on the event loop without a thread hop
(``decided_*``).
"""

from __future__ import annotations

from service.auth import repository as repo
from service.auth.principal import Principal
from service.db.unit_of_work import UnitOfWork
from service.errors import NotFound
from service.facts import FactCache
from service.trials.index import TrialStudyIndex


class Access:
    """Thread-safe checks of a caller against a study or trial id."""

    def __init__(
        self, uow: UnitOfWork, trial_index: TrialStudyIndex, capacity: int = 100_000
    ) -> None:
        self._uow = uow
        self._trials = trial_index
        self._teams = FactCache(self._lookup_team, capacity)  # study id → team id

    def check_study(self, principal: Principal, study_id: int) -> None:
        """NotFound unless the study exists and belongs to the caller's team."""
        if principal.team_id is None:
            return  # auth off: every team's studies; the services answer 404 for unknown ids
        if self._teams.get(study_id) != principal.team_id:
            raise NotFound(f"study {study_id} does not exist")

    def check_trial(self, principal: Principal, trial_id: int) -> None:
        """NotFound unless the trial exists and its study belongs to the caller's team."""
        if principal.team_id is None:
            return
        study_id = self._trials.study_of(trial_id)  # NotFound for an unknown trial
        if self._teams.get(study_id) != principal.team_id:
            raise NotFound(f"trial {trial_id} does not exist")

    def decided_study(self, principal: Principal, study_id: int) -> bool:
        """``check_study`` from what this process knows: True when it passed, False when only
        the database can tell (then call ``check_study``); raises as it does."""
        if principal.team_id is None:
            return True
        team_id = self._teams.known(study_id)
        if team_id is None:
            return False
        if team_id != principal.team_id:
            raise NotFound(f"study {study_id} does not exist")
        return True

    def decided_trial(self, principal: Principal, trial_id: int) -> bool:
        """``check_trial`` from what this process knows (see ``decided_study``)."""
        if principal.team_id is None:
            return True
        study_id = self._trials.known_study_of(trial_id)
        team_id = None if study_id is None else self._teams.known(study_id)
        if team_id is None:
            return False
        if team_id != principal.team_id:
            raise NotFound(f"trial {trial_id} does not exist")
        return True

    def _lookup_team(self, study_id: int) -> int | None:
        with self._uow.read() as conn:
            return repo.team_of_study(conn, study_id)
