"""Which study a trial belongs to: a fact that never changes, so each process caches it."""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import Engine

from service.errors import NotFound
from service.trials import repository as repo


class TrialStudyIndex:
    """Thread-safe LRU map trial id → study id, filled by hand-outs and looked up on misses."""

    def __init__(self, engine: Engine, capacity: int = 100_000) -> None:
        self._engine = engine
        self._capacity = capacity
        self._studies: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()

    def study_of(self, trial_id: int) -> int:
        """The trial's study id; NotFound for a trial the service does not know."""
        with self._lock:
            study_id = self._studies.get(trial_id)
        if study_id is None:
            with self._engine.connect() as conn:
                study_id = repo.study_of_trial(conn, trial_id)
            if study_id is None:
                raise NotFound(f"trial {trial_id} does not exist")
            self.remember(trial_id, study_id)
        return study_id

    def remember(self, trial_id: int, study_id: int) -> None:
        with self._lock:
            self._studies[trial_id] = study_id
            self._studies.move_to_end(trial_id)
            while len(self._studies) > self._capacity:
                self._studies.popitem(last=False)
