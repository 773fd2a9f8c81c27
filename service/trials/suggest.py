"""Define-by-run: a parameter the study does not declare, sampled by the server for one trial.

An objective written for Optuna asks for its parameters as it runs (``trial.suggest_float``).
Declared parameters come with the lease; a name the search space does not declare (an open
space, ``{}`` or partly declared) is sampled here, for the running trial, under its lease, with
the study's sampler on the study's view (the same history as every hand-out):

* taken under the view lock and the study's ask lock, on a view refreshed in the same round
  trip, like a hand-out (``service.trials.handout``), so suggestions and hand-outs of one study
  never see different histories, in any process;
* idempotent: a name the trial holds already answers its stored value (a repeated request, a
  retried trial that suggested it before), provided the distribution is the same;
* stored in Optuna's ``trial_params`` with its distribution, the trial stamped changed
  (``hpo_trials.change_xid``): every process's view, every read, export and
  ``optuna.load_study`` see it; the lease is extended as by a heartbeat.

Refused (nothing changes): a token without a live lease (409 ``lease_lost``/``trial_finished``),
a name the space declares (its value is in the lease; 422), a distribution with ``when``
(conditions live in the objective's code) or other than the one the trial already has for the
name (422), and a study whose sampler cannot sample undeclared names (``grid``; 422).
"""

from __future__ import annotations

from typing import Any

from optuna.distributions import BaseDistribution, distribution_to_json

from service.db.unit_of_work import UnitOfWork
from service.errors import InvalidInput
from service.sampling import repository as view_repo
from service.sampling.registry import StudyViews
from service.sampling.rows import decode_attrs
from service.sampling.view import StudyView
from service.spec import ParamSpec, to_distribution
from service.trials import repository as repo
from service.trials.index import TrialStudyIndex
from service.trials.leases import raise_for_lease

# Samplers that only visit what the study declares.
_DECLARED_ONLY = {"grid": "the grid sampler visits the declared grid only"}


class Suggestions:
    """Samples undeclared parameters of running trials (see the module docstring).
    Thread-safe: the work on a study runs under its view lock."""

    def __init__(self, uow: UnitOfWork, views: StudyViews, index: TrialStudyIndex) -> None:
        self._uow = uow
        self._views = views
        self._index = index

    def suggest(self, trial_id: int, token: str, name: str, spec: ParamSpec) -> Any:
        """The value of parameter ``name`` in the trial leased with ``token``, sampled now
        from ``spec`` unless the trial holds it already (see the module docstring)."""
        if spec.when is not None:
            raise InvalidInput(
                "an undeclared parameter cannot carry 'when': write the condition in the "
                "objective (suggest the parameter only when it applies)",
                {"name": name},
            )
        distribution = to_distribution(spec)
        study_id = self._index.study_of(trial_id)
        return self._uow.run(lambda: self._suggest(study_id, trial_id, token, name, distribution))

    def _suggest(
        self, study_id: int, trial_id: int, token: str, name: str, distribution: BaseDistribution
    ) -> Any:
        with self._views.locked(study_id) as view, self._uow.begin() as conn:
            state, changed = view_repo.lock_and_read(conn, study_id, view.cursor)
            view.storage.replace_system_attrs(decode_attrs(state.system_attrs))
            view.apply_changes(changed, state.xmin)
            if trial_id not in view.leased:
                raise_for_lease(conn, trial_id, token)
            _check(view, trial_id, name, distribution)
            held = name in view.storage.get_trial(trial_id).params
            view.dirty = True
            value = view.suggest_param(trial_id, name, distribution)
            journal = view.storage.drain_journal()
            if not held:
                internal = distribution.to_internal_repr(value)
                if not repo.add_param(conn, trial_id, token, name, internal, distribution):
                    raise_for_lease(conn, trial_id, token)
            elif repo.heartbeat(conn, trial_id, token) is None:
                raise_for_lease(conn, trial_id, token)
            repo.flush_journal(conn, study_id, journal)
        return value


def _check(view: StudyView, trial_id: int, name: str, distribution: BaseDistribution) -> None:
    """Refuse a declared name, a sampler that cannot sample undeclared ones, or a distribution
    other than the one the trial already holds for ``name``."""
    if name in view.distributions:
        raise InvalidInput(
            f"parameter {name!r} is declared in the study's search space: its value comes with "
            "the lease (trial params); suggest it with the declared distribution",
            {"name": name, "declared": distribution_to_json(view.distributions[name])},
        )
    sampler = view.definition.sampler.name
    if sampler in _DECLARED_ONLY:
        raise InvalidInput(
            f"this study's sampler cannot sample undeclared parameters "
            f"({_DECLARED_ONLY[sampler]}); declare {name!r} in the search space",
            {"name": name, "sampler": sampler},
        )
    held = view.storage.get_trial(trial_id).distributions.get(name)
    if held is not None and held != distribution:
        raise InvalidInput(
            f"trial already holds {name!r} with another distribution; Optuna keeps one "
            "distribution per parameter and trial",
            {
                "name": name,
                "held": distribution_to_json(held),
                "asked": distribution_to_json(distribution),
            },
        )
