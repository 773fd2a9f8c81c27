"""Which study a trial belongs to: a fact that never changes, so each process caches it."""

from __future__ import annotations

from service.db.unit_of_work import UnitOfWork
from service.errors import NotFound
from service.facts import FactCache
from service.trials import repository as repo


class TrialStudyIndex:
    """Trial id → study id, filled by hand-outs and looked up on misses."""

    def __init__(self, uow: UnitOfWork, capacity: int = 100_000) -> None:
        self._uow = uow
        self._studies = FactCache(self._lookup, capacity)

    def study_of(self, trial_id: int) -> int:
        """The trial's study id; NotFound for a trial the service does not know."""
        study_id = self._studies.get(trial_id)
        if study_id is None:
            raise NotFound(f"trial {trial_id} does not exist")
        return study_id

    def known_study_of(self, trial_id: int) -> int | None:
        """The trial's study id if this process knows it already (no SQL), else None."""
        return self._studies.known(trial_id)

    def remember(self, trial_id: int, study_id: int) -> None:
        self._studies.remember(trial_id, study_id)

    def _lookup(self, trial_id: int) -> int | None:
        with self._uow.read() as conn:
            return repo.study_of_trial(conn, trial_id)
