"""Hyperparameter importances, computed off the request path and cached per process.

The evaluator is Optuna's :class:`~optuna.importance.PedAnovaImportanceEvaluator` (Optuna's
default since 4.x): it needs nothing beyond NumPy, handles conditional parameters, and takes
about 0.2 s on 10 000 trials. Each objective is evaluated on its own (a maximised objective is
negated, PED-ANOVA minimises).

Complete trials never change, so the number of complete trials identifies the data an entry was
computed on: an entry is fresh while that number is unchanged. A study with at most
``sync_max_trials`` complete trials is computed in the request; a larger one is computed by a
background thread while the request answers the previous entry (``stale``) or, the first time,
nothing yet (``pending``). At most one computation per study runs at a time.

Thread-safe.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import optuna
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from service.db.unit_of_work import UnitOfWork
from service.errors import NotFound
from service.history import repository as repo
from service.history.schemas import ImportanceOut, ImportanceStatus, ObjectiveImportanceOut
from service.sampling.rows import decode_params
from service.sampling.view_storage import ViewStorage
from service.trials.repository import study_directions

logger = logging.getLogger(__name__)

EVALUATOR = "PedAnovaImportanceEvaluator"
MIN_TRIALS = 2
_CAPACITY = 256


@dataclass(frozen=True)
class _Entry:
    n_trials: int
    computed_at: dt.datetime
    objectives: list[ObjectiveImportanceOut]


class ImportanceCache:
    def __init__(self, uow: UnitOfWork, sync_max_trials: int) -> None:
        self._uow = uow
        self._sync_max = sync_max_trials
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._running: set[int] = set()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="importance")

    def get(self, study_id: int) -> ImportanceOut:
        """The study's importances; NotFound if it does not exist."""
        with self._uow.read() as conn:
            directions = study_directions(conn, study_id)
            if not directions:
                raise NotFound(f"study {study_id} does not exist")
            n_complete = repo.count_complete(conn, study_id)
        entry = self._cached(study_id)
        if entry is not None and entry.n_trials == n_complete:
            return _out(study_id, "fresh", entry)
        if n_complete < MIN_TRIALS:
            return _out(study_id, "fresh", _Entry(n_complete, _now(), []))
        if n_complete <= self._sync_max:
            return _out(study_id, "fresh", self._compute(study_id, directions))
        self._start(study_id, directions)
        if entry is None:
            return ImportanceOut(
                study_id=study_id,
                evaluator=EVALUATOR,
                status="pending",
                n_trials=0,
                computed_at=None,
                objectives=[],
            )
        return _out(study_id, "stale", entry)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def wait_idle(self, timeout_s: float) -> bool:
        """For tests and benchmarks: wait until no computation is running."""
        done = threading.Event()

        def check() -> None:
            done.set()

        self._executor.submit(check)
        return done.wait(timeout_s)

    def _cached(self, study_id: int) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(study_id)
            if entry is not None:
                self._entries.move_to_end(study_id)
            return entry

    def _start(self, study_id: int, directions: list[str]) -> None:
        with self._lock:
            if study_id in self._running:
                return
            self._running.add(study_id)
        self._executor.submit(self._compute_in_background, study_id, directions)

    def _compute_in_background(self, study_id: int, directions: list[str]) -> None:
        try:
            self._compute(study_id, directions)
        except Exception:
            logger.exception("computing importances of study %d failed", study_id)
        finally:
            with self._lock:
                self._running.discard(study_id)

    def _compute(self, study_id: int, directions: list[str]) -> _Entry:
        with self._uow.read() as conn:
            rows = repo.complete_trials(conn, study_id)
        entry = _Entry(len(rows), _now(), evaluate(study_id, directions, rows))
        with self._lock:
            current = self._entries.get(study_id)
            if current is None or current.n_trials <= entry.n_trials:
                self._entries[study_id] = entry
                self._entries.move_to_end(study_id)
            while len(self._entries) > _CAPACITY:
                self._entries.popitem(last=False)
        return entry


def evaluate(
    study_id: int, directions: Sequence[str], rows: Sequence[repo.CompleteTrial]
) -> list[ObjectiveImportanceOut]:
    """PED-ANOVA importances of each objective over complete trials. Empty with fewer than two
    trials or no parameters."""
    if len(rows) < MIN_TRIALS:
        return []
    study = _in_memory_study(study_id, directions, rows)
    if not any(t.params for t in study.get_trials(deepcopy=False)):
        return []
    out = []
    for k, direction in enumerate(directions):
        sign = -1.0 if direction == "maximize" else 1.0
        target = _objective(k, sign)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "fewer than 5 trials above the quantile" etc.
            importances = get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), target=target
            )
        out.append(
            ObjectiveImportanceOut(
                objective=k,
                direction="maximize" if sign < 0 else "minimize",
                importances={name: float(v) for name, v in importances.items()},
            )
        )
    return out


def _objective(k: int, sign: float) -> Callable[[FrozenTrial], float]:
    def target(trial: FrozenTrial) -> float:
        return sign * float(trial.values[k])

    return target


def _in_memory_study(
    study_id: int, directions: Sequence[str], rows: Sequence[repo.CompleteTrial]
) -> optuna.Study:
    storage = ViewStorage(
        study_id, f"importance-{study_id}", [StudyDirection[d.upper()] for d in directions]
    )
    for row in rows:
        if not row.values:
            continue
        params, distributions = decode_params(row.params)
        storage.put_trial(
            row.trial_id,
            FrozenTrial(
                number=row.number,
                state=TrialState.COMPLETE,
                value=None,
                values=list(row.values),
                datetime_start=row.datetime_start,
                datetime_complete=row.datetime_complete,
                params=params,
                distributions=distributions,
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=row.trial_id,
            ),
        )
    return optuna.Study(
        study_name=storage.study_name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )


def _out(study_id: int, status: ImportanceStatus, entry: _Entry) -> ImportanceOut:
    return ImportanceOut(
        study_id=study_id,
        evaluator=EVALUATOR,
        status=status,
        n_trials=entry.n_trials,
        computed_at=entry.computed_at,
        objectives=entry.objectives,
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
