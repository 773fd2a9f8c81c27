"""How the sampler's view presents trials of a study with constraints or infeasible failures.

Rows are fed to ``StudyView.apply_changes`` as the change query returns them (no database).
"""

from __future__ import annotations

import datetime as dt
import math

from optuna.distributions import FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from service.sampling.view import StudyDefinition, StudyView
from service.spec import PrunerSpec, SamplerSpec, parse_search_space
from tests.view_rows import change_row

SPACE = parse_search_space({"x": {"type": "float", "low": 0.0, "high": 1.0}})
START = dt.datetime(2026, 1, 1)


def _view(directions: list[str], constraints: tuple[str, ...], reasons: set[str]) -> StudyView:
    return StudyView(
        StudyDefinition(
            study_id=1,
            name="evidence",
            directions=directions,
            search_space=SPACE,
            sampler=SamplerSpec(name="tpe", options={"seed": 0}),
            pruner=PrunerSpec(),
            task=None,
            constraints=constraints,
            infeasible_failures=frozenset(reasons),
        )
    )


def _trial(
    number: int, state: TrialState, values: list[float] | None = None, **attrs: float
) -> FrozenTrial:
    return FrozenTrial(
        number=number,
        state=state,
        value=None,
        values=values,
        datetime_start=START,
        datetime_complete=START,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0.0, 1.0)},
        user_attrs={},
        system_attrs={f"constraints:{k}": v for k, v in attrs.items()},
        intermediate_values={0: 2.0} if state == TrialState.FAIL else {},
        trial_id=number + 10,
    )


def _apply(view: StudyView, *rows: tuple[FrozenTrial, str | None]) -> None:
    view.apply_changes(
        [change_row(t.number + 10, t, fail_reason=reason) for t, reason in rows], horizon=1
    )


def test_an_oom_failure_is_a_violated_complete_trial_with_the_worst_values() -> None:
    view = _view(["minimize", "maximize"], (), {"oom"})
    _apply(
        view, (_trial(0, TrialState.FAIL), "oom"), (_trial(1, TrialState.COMPLETE, [1, 2]), None)
    )
    evidence, complete = view.storage.get_trial(10), view.storage.get_trial(11)
    assert evidence.state == TrialState.COMPLETE
    assert evidence.values == [math.inf, -math.inf]
    assert evidence.constraints == {"hpo_failure": 1.0}
    assert evidence.intermediate_values == {}  # pruners do not count it
    # Every complete trial carries the same constraint, so GP sees consistent constraints.
    assert complete.constraints == {"hpo_failure": 0.0}


def test_declared_constraints_are_all_violated_by_evidence() -> None:
    view = _view(["minimize"], ("mem", "latency"), {"oom"})
    _apply(
        view,
        (_trial(0, TrialState.FAIL), "oom"),
        (_trial(1, TrialState.COMPLETE, [1.0], mem=-1.0, latency=0.5), None),
    )
    assert view.storage.get_trial(10).constraints == {"mem": 1.0, "latency": 1.0}
    assert view.storage.get_trial(11).constraints == {"mem": -1.0, "latency": 0.5}


def test_other_failures_and_studies_without_the_reason_stay_failed() -> None:
    for reasons, reason in [(set(), "oom"), ({"oom"}, "nan"), ({"oom"}, None)]:
        view = _view(["minimize"], (), reasons)
        _apply(
            view,
            (_trial(0, TrialState.FAIL), reason),
            (_trial(1, TrialState.COMPLETE, [1.0]), None),
        )
        assert view.storage.get_trial(10).state == TrialState.FAIL
    assert view.storage.get_trial(11).constraints == {"hpo_failure": 0.0}
    plain = _view(["minimize"], (), set())
    _apply(plain, (_trial(1, TrialState.COMPLETE, [1.0]), None))
    assert plain.storage.get_trial(11).constraints == {}  # nothing added to a plain study


def test_sampling_never_journals_evidence() -> None:
    view = _view(["minimize"], (), {"oom"})
    _apply(view, (_trial(0, TrialState.FAIL), "oom"), (_trial(1, TrialState.COMPLETE, [1.0]), None))
    view.storage.set_trial_system_attr(10, "constraints:hpo_failure", 1.0)
    view.storage.set_trial_system_attr(10, "constraints", [1.0])
    view.storage.set_trial_system_attr(10, "nsga:generation", 0)
    assert view.storage.drain_journal().trial_system_attrs == {10: {"nsga:generation": 0}}
    sampled = view.sample()
    assert 0.0 <= sampled.params["x"] <= 1.0
    written = [key for attrs in sampled.journal.trial_system_attrs.values() for key in attrs]
    assert not [key for key in written if key.startswith("constraints")]
    assert view.storage.get_trial(10).state == TrialState.COMPLETE
