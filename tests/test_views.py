"""The per-process study views stay exact: each holds its own study's trials and nothing else."""

from __future__ import annotations

import functools

from sqlalchemy import Engine

from service.db.unit_of_work import UnitOfWork
from service.notify import WorkSignal
from service.sampling.registry import StudyViews
from service.studies.schemas import StudyCreate
from service.studies.service import StudyService, load_definition
from service.trials.index import TrialStudyIndex
from service.trials.leases import Finish
from service.trials.schemas import LeasedTrialOut
from service.trials.service import ClaimTiming, TrialService
from tests.api.helpers import study_body


def _trials(engine: Engine, views: StudyViews) -> TrialService:
    """The trial service of one simulated server process."""
    timing = ClaimTiming(max_wait_s=0, repoll_s=1)
    uow = UnitOfWork(engine)
    return TrialService(uow, views, TrialStudyIndex(uow), WorkSignal(), timing)


def _services(engine: Engine) -> tuple[StudyService, TrialService, StudyViews]:
    uow = UnitOfWork(engine)
    views = StudyViews(functools.partial(load_definition, uow), 8)
    return StudyService(uow, views), _trials(engine, views), views


def _trial(trials: TrialService, study_id: int) -> LeasedTrialOut:
    lease = trials.ask(study_id, "w").trial
    assert lease is not None
    return lease


def test_reports_and_asks_only_see_their_own_study(engine: Engine) -> None:
    studies, trials, views = _services(engine)
    a = studies.create(StudyCreate.model_validate(study_body("a", max_trials=None)), team_id=None)
    b = studies.create(StudyCreate.model_validate(study_body("b", max_trials=None)), team_id=None)
    for _ in range(3):
        t = _trial(trials, a.id)
        trials.report(t.id, t.lease.token, 0, 1.0)
        trials.complete(t.id, t.lease.token, Finish("complete", [1.0]))
    t = _trial(trials, b.id)
    trials.report(t.id, t.lease.token, 0, 2.0)
    # Study a changes after b's view last read: b's next refresh must not pick it up.
    extra = _trial(trials, a.id)
    trials.report(extra.id, extra.lease.token, 0, 1.0)
    trials.report(t.id, t.lease.token, 1, 2.0)
    assert views.get(b.id).storage.n_trials == 1
    assert views.get(a.id).storage.n_trials == 4
    assert _trial(trials, b.id).number == 1
    assert _trial(trials, a.id).number == 4


def test_a_second_process_view_catches_up(engine: Engine) -> None:
    """Two independent service instances (as in two server processes) on one database."""
    studies, one, _ = _services(engine)
    _, two, views_two = _services(engine)
    sid = studies.create(
        StudyCreate.model_validate(study_body("shared", max_trials=None)), team_id=None
    ).id
    numbers = []
    for service in (one, two, one, one, two):
        t = _trial(service, sid)
        numbers.append(t.number)
        service.complete(t.id, t.lease.token, Finish("complete", [float(t.number)]))
    assert numbers == [0, 1, 2, 3, 4]
    view = views_two.get(sid)
    assert view.storage.n_trials == 4  # trial 4 (its own) comes back on the next refresh
    assert _trial(two, sid).number == 5
    assert [t.number for t in view.storage.trials()] == [0, 1, 2, 3, 4]
