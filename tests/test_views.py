"""The per-process study views stay exact: each holds its own study's trials and nothing else."""

from __future__ import annotations

import functools

from sqlalchemy import Engine

from service.sampling.registry import StudyViews
from service.studies.schemas import StudyCreate
from service.studies.service import StudyService, load_definition
from service.trials.handout import HandoutService
from service.trials.index import TrialStudyIndex
from service.trials.leases import Finish, LeaseService
from service.trials.schemas import LeasedTrialOut
from tests.api.helpers import study_body


class _Trials:
    """Hand-out and lease services of one simulated server process."""

    def __init__(self, engine: Engine, views: StudyViews) -> None:
        index = TrialStudyIndex(engine)
        self.handout = HandoutService(engine, views, index)
        self.leases = LeaseService(engine, views, index, self.handout)


def _services(engine: Engine) -> tuple[StudyService, _Trials, StudyViews]:
    views = StudyViews(functools.partial(load_definition, engine), 8)
    return StudyService(engine, views), _Trials(engine, views), views


def _trial(trials: _Trials, study_id: int) -> LeasedTrialOut:
    lease = trials.handout.ask(study_id, "w").trial
    assert lease is not None
    return lease


def test_reports_and_asks_only_see_their_own_study(engine: Engine) -> None:
    studies, trials, views = _services(engine)
    a = studies.create(StudyCreate.model_validate(study_body("a", max_trials=None)), team_id=None)
    b = studies.create(StudyCreate.model_validate(study_body("b", max_trials=None)), team_id=None)
    for _ in range(3):
        t = _trial(trials, a.id)
        trials.leases.report(t.id, t.lease.token, 0, 1.0)
        trials.leases.complete(t.id, t.lease.token, Finish("complete", [1.0]))
    t = _trial(trials, b.id)
    trials.leases.report(t.id, t.lease.token, 0, 2.0)
    # Study a changes after b's view last read: b's next refresh must not pick it up.
    extra = _trial(trials, a.id)
    trials.leases.report(extra.id, extra.lease.token, 0, 1.0)
    trials.leases.report(t.id, t.lease.token, 1, 2.0)
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
        service.leases.complete(t.id, t.lease.token, Finish("complete", [float(t.number)]))
    assert numbers == [0, 1, 2, 3, 4]
    view = views_two.get(sid)
    assert view.storage.n_trials == 4  # trial 4 (its own) comes back on the next refresh
    assert _trial(two, sid).number == 5
    assert [t.number for t in view.storage.trials()] == [0, 1, 2, 3, 4]
