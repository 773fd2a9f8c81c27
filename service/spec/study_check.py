"""Can this sampler and this pruner run this study? Checked once, when a study is created.

:func:`check_study` applies the rules we know (objective counts, grid budgets) and then asks
Optuna itself with a *dry run*: an in-memory study with the real sampler and pruner asks a
trial over the real distributions, tells it a value, asks again, and (single-objective only)
reports an intermediate value and asks the pruner. Each trial suggests its parameters as the
server does (:class:`~service.spec.conditions.ActiveSpace`: parents first, only the active
ones). Whatever Optuna refuses there becomes a
:class:`~service.errors.SpecError` carrying Optuna's message.

The dry run is silent: Optuna's log records from the calling
thread (or task) and Optuna's experimental and deprecation warnings are suppressed while it
runs. Log silencing is per thread; warning filters are process-global in Python 3.11, so dry
runs are serialized by a lock and the filters are restored afterwards (another thread
changing warning filters at the same moment can race with this, as with any use of
:func:`warnings.catch_warnings`).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection

from service.spec.conditions import ActiveSpace, parse_search_space
from service.spec.details import fail
from service.spec.pruners import PrunerSpec, build_pruner
from service.spec.samplers import SamplerSpec, build_sampler, grid_point_count
from service.spec.search_space import ParamSpec

Direction = Literal["minimize", "maximize"]
_DIRECTIONS = {"minimize": StudyDirection.MINIMIZE, "maximize": StudyDirection.MAXIMIZE}
# What Optuna raises when a sampler or pruner cannot handle a study (third-party libraries
# such as cmaes check their arguments with assert). Anything else is a bug and propagates.
_REFUSALS = (
    AssertionError,
    ValueError,
    TypeError,
    ArithmeticError,
    RuntimeError,
    NotImplementedError,
    ImportError,
)


def check_study(
    sampler: SamplerSpec,
    pruner: PrunerSpec,
    space: Mapping[str, ParamSpec],
    directions: Sequence[Direction],
    max_trials: int | None,
) -> None:
    """Refuse (SpecError) a study that its sampler or pruner cannot run; else return None.

    Refusals: a space whose conditions are unsound (see :mod:`service.spec.conditions`); no
    or unknown directions; ``max_trials`` below 1; everything
    :func:`~service.spec.samplers.build_sampler` and
    :func:`~service.spec.pruners.build_pruner` refuse (``cmaes`` or any pruner but ``none``
    with several objectives, bad options, a non-finite or conditional space for ``grid``, a
    conditional space for ``cmaes``...); ``grid`` with
    ``max_trials`` above the number of grid points; and whatever Optuna raises in the dry
    run. Pure: nothing is stored, and the built objects are discarded.
    """
    space = parse_search_space(space)
    _check_directions(directions)
    _check_max_trials(max_trials)
    points = grid_point_count(sampler, space) if sampler.name == "grid" else None
    if points is not None and max_trials is not None and max_trials > points:
        raise fail(
            ["max_trials"],
            f"max_trials ({max_trials}) is larger than the grid ({points} points); "
            "the grid sampler would evaluate points again",
        )
    with _quiet():
        built_sampler = build_sampler(sampler, space, directions)
        built_pruner = build_pruner(pruner, directions)
        study = _dry_run_study(built_sampler, built_pruner, directions)
        _dry_run_sampler(study, space, asks=1 if points == 1 else 2)
        if len(directions) == 1:
            _dry_run_pruner(study, space)


def _check_directions(directions: Sequence[str]) -> None:
    if not directions:
        raise fail(["directions"], "at least one direction is required")
    for index, direction in enumerate(directions):
        if direction not in _DIRECTIONS:
            raise fail(["directions", index], "must be 'minimize' or 'maximize'")


def _check_max_trials(max_trials: int | None) -> None:
    if max_trials is None:
        return
    if isinstance(max_trials, bool) or not isinstance(max_trials, int) or max_trials < 1:
        raise fail(["max_trials"], "max_trials must be a positive integer or null")


def _dry_run_study(
    sampler: BaseSampler, pruner: BasePruner, directions: Sequence[str]
) -> optuna.Study:
    """A throw-away in-memory study (built without create_study, which logs)."""
    storage = InMemoryStorage()
    storage.create_new_study([_DIRECTIONS[d] for d in directions], study_name="dry-run")
    return optuna.Study(study_name="dry-run", storage=storage, sampler=sampler, pruner=pruner)


def _dry_run_sampler(study: optuna.Study, space: Mapping[str, ParamSpec], asks: int) -> None:
    """Ask, tell, ask again. With ``asks=1`` only ask: a one-point grid sampler calls
    ``study.stop()`` after its only point, which Optuna refuses outside ``optimize``."""
    active = ActiveSpace(space)
    zeros = [0.0] * len(study.directions)
    try:
        trial = study.ask()
        active.suggest(trial)
        if asks > 1:
            if len(zeros) == 1:
                trial.report(0.0, step=0)
            study.tell(trial, zeros)
            active.suggest(study.ask())
    except _REFUSALS as exc:
        raise fail(["sampler"], f"Optuna cannot run this study with this sampler: {exc}") from exc


def _dry_run_pruner(study: optuna.Study, space: Mapping[str, ParamSpec]) -> None:
    """Report one intermediate value on a fresh trial and ask the pruner about it."""
    try:
        trial = study.ask()
        ActiveSpace(space).suggest(trial)
        trial.report(1.0, step=0)
        trial.should_prune()
    except _REFUSALS as exc:
        raise fail(["pruner"], f"Optuna cannot run this study with this pruner: {exc}") from exc


_SILENCED: ContextVar[bool] = ContextVar("service_spec_dry_run_silenced", default=False)
_WARNINGS_LOCK = threading.Lock()


class _DryRunLogFilter(logging.Filter):
    """Drops records emitted while the current context runs a dry run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _SILENCED.get()


_LOG_FILTER = _DryRunLogFilter()


def _filter_optuna_loggers() -> None:
    """Attach the filter to every Optuna logger that exists (idempotent, cheap)."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "optuna" or name.startswith("optuna.")):
            logger.addFilter(_LOG_FILTER)


@contextmanager
def _quiet() -> Iterator[None]:
    _filter_optuna_loggers()
    token = _SILENCED.set(True)
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        _SILENCED.reset(token)
