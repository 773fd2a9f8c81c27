"""Warm starts: finished trials imported into a study, from a request or from another study.

Rules (``POST /studies/{id}/trials/import`` and the fork of ``POST /studies``):

* Each trial is checked against the target study before anything is stored: the shape of
  :class:`~service.trials.import_schemas.ImportTrialIn`, then its parameters (exactly the
  parameters its values make active, each in its range or among its choices:
  :func:`~service.spec.check_params`), one value per objective for a complete trial, the
  study's declared constraint values, no intermediate values in a multi-objective study, and
  source numbers unique within the request. The first bad trial refuses the whole request (422
  naming its index and what is wrong); nothing is stored.
* Imported trials are stored as the service's own complete stores a finished trial (Optuna's
  tables and ``hpo_trials``), with new consecutive numbers after the study's last one, under the
  study's ask lock, so that numbering never races with hand-outs; every study view re-reads them
  on its next refresh, so the next suggestion already uses them. They never held a lease: they
  count neither against ``max_trials`` (``n_trials_started``) nor against ``max_parallel``.
* Each carries the system attribute ``hpo:imported_from`` (where it came from: ``source``,
  ``study_id``/``study``, ``number``), visible through ``optuna.load_study``.

A fork (:func:`fork_trials`) keeps each source trial that fits the new study: parameters the new
space does not hold for the trial's values (removed, or inactive there) are dropped and named in
the answer; a parameter the new space makes active that the trial lacks takes its value from
``defaults`` if given, else the trial is skipped; every value must fit the new ranges and
choices. Skipped trials are listed with their number and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection

from service import idempotency
from service.db.unit_of_work import UnitOfWork
from service.errors import InvalidInput, SpecError
from service.idempotency import IdempotencyKey
from service.sampling import repository as view_repo
from service.sampling.registry import StudyViews
from service.sampling.rows import IMPORTED_FROM, constraint_attrs, constraint_values
from service.sampling.view import StudyDefinition
from service.spec import (
    ActiveSpace,
    SearchSpace,
    check_params,
    param_spec_json,
    to_distribution,
)
from service.spec.details import Detail, detail, summarize, validation_details
from service.spec.search_space import check_values
from service.states import OPTUNA_STATE, OptunaTrialState
from service.trials.import_schemas import (
    ImportIn,
    ImportOut,
    ImportState,
    ImportTrialIn,
    naive_utc,
)
from service.trials.index import TrialStudyIndex
from service.trials.leases import Finish
from service.trials.repository import imports as repo
from service.trials.repository.imports import FinishedTrial, StoredTrial

MAX_FORK_TRIALS = 100_000

_ITEM: TypeAdapter[ImportTrialIn] = TypeAdapter(ImportTrialIn)


@dataclass(frozen=True)
class ImportTarget:
    """What an imported trial must fit: the study's space, objectives and constraints."""

    search_space: SearchSpace
    n_objectives: int
    constraints: tuple[str, ...]

    @classmethod
    def of(cls, definition: StudyDefinition) -> ImportTarget:
        return cls(definition.search_space, len(definition.directions), definition.constraints)

    def active_space(self) -> ActiveSpace:
        return ActiveSpace(self.search_space)


class TrialRefused(Exception):
    """One trial does not fit its study: ``details`` say where (``loc`` within the trial) and
    why. :func:`check_request` turns it into the request's 422; a fork skips the trial."""

    def __init__(self, details: list[Detail]) -> None:
        super().__init__(summarize(details))
        self.details = details


def check_trial(
    target: ImportTarget, active: ActiveSpace, item: ImportTrialIn, origin: Mapping[str, Any]
) -> FinishedTrial:
    """``item`` as it will be stored (``origin`` becomes its ``hpo:imported_from``), or
    :class:`TrialRefused` saying why it does not fit. ``active`` is ``target``'s space."""
    undeclared = _undeclared(target, item)
    declared = {k: v for k, v in item.params.items() if k not in undeclared}
    try:
        params = check_params(target.search_space, declared, partial=False)
        extra = check_values(item.distributions, {k: item.params[k] for k in undeclared})
    except SpecError as exc:
        raise TrialRefused(list(exc.details)) from None
    if item.state == "complete" and len(item.values or ()) != target.n_objectives:
        n = len(item.values or ())
        message = f"the study has {target.n_objectives} objective(s); {n} value(s) were given"
        raise TrialRefused([detail(["values"], message)])
    if item.intermediate_values and target.n_objectives > 1:
        message = "a multi-objective study takes no intermediate values (Optuna prunes none)"
        raise TrialRefused([detail(["intermediate_values"], message)])
    constraints = _constraints(target, item)
    system_attrs: dict[str, Any] = {**constraint_attrs(constraints), IMPORTED_FROM: dict(origin)}
    return FinishedTrial(
        state=OPTUNA_STATE[item.state],
        params={**{name: params[name] for name in active.order if name in params}, **extra},
        undeclared={name: to_distribution(item.distributions[name]) for name in undeclared},
        values=item.values,
        intermediate={
            i.step: float("nan") if i.value is None else i.value for i in item.intermediate_values
        },
        user_attrs=item.user_attrs,
        system_attrs=system_attrs,
        fail_reason=item.reason if item.state == "failed" else None,
        datetime_start=naive_utc(item.datetime_start),
        datetime_complete=naive_utc(item.datetime_complete),
    )


def _undeclared(target: ImportTarget, item: ImportTrialIn) -> list[str]:
    """The parameters of ``item`` the study does not declare, each with its distribution in
    ``item.distributions`` (define-by-run); TrialRefused if one has none, or if
    ``distributions`` names a declared parameter, one the trial does not hold, or a ``when``."""
    problems: list[Detail] = []
    for name, spec in item.distributions.items():
        if name in target.search_space:
            problems.append(
                detail(
                    ["distributions", name],
                    "declared by the study: its distribution is the study's",
                )
            )
        elif name not in item.params:
            problems.append(detail(["distributions", name], "the trial holds no such parameter"))
        elif spec.when is not None:
            problems.append(
                detail(["distributions", name, "when"], "an undeclared parameter has no 'when'")
            )
    for name in item.params:
        if name not in target.search_space and name not in item.distributions:
            message = (
                f"unknown parameter {name!r}: the study does not declare it; give its"
                " distribution in 'distributions' (a define-by-run parameter), or leave it out"
            )
            problems.append(detail(["params", name], message))
    if problems:
        raise TrialRefused(problems)
    return [name for name in item.params if name in item.distributions]


def _constraints(target: ImportTarget, item: ImportTrialIn) -> dict[str, float]:
    """Exactly the study's declared constraint values for a complete trial (the rule of
    complete), none otherwise."""
    finish = Finish(item.state, item.values, constraints=item.constraints)
    try:
        checked = finish.checked(target.constraints)
    except InvalidInput as exc:
        raise TrialRefused([detail(["constraints"], exc.message)]) from None
    return dict(checked.constraints or {})


def check_request(
    target: ImportTarget, items: Sequence[Mapping[str, Any]], source: str | None
) -> list[FinishedTrial]:
    """Every item checked in order; the first that does not fit raises ``InvalidInput``
    whose ``details`` give its ``index``, its source ``number`` and the ``problems``."""
    active = target.active_space()
    seen: dict[int, int] = {}
    checked: list[FinishedTrial] = []
    for index, raw in enumerate(items):
        try:
            item = _parse(raw)
            if item.number is not None and item.number in seen:
                message = f"number {item.number} is also trial {seen[item.number]}'s"
                raise TrialRefused([detail(["number"], message)])
            origin = {"source": source, "number": item.number}
            checked.append(check_trial(target, active, item, _without_none(origin)))
        except TrialRefused as refused:
            raise _refusal(index, raw, refused.details) from None
        if item.number is not None:
            seen[item.number] = index
    return checked


def _parse(raw: Mapping[str, Any]) -> ImportTrialIn:
    try:
        return _ITEM.validate_python(raw)
    except ValidationError as exc:
        raise TrialRefused(validation_details(exc)) from None


def _refusal(index: int, raw: Mapping[str, Any], details: list[Detail]) -> InvalidInput:
    number = raw.get("number") if isinstance(raw, Mapping) else None
    problems = [detail(["trials", index, *d["loc"]], d["msg"]) for d in details]
    return InvalidInput(
        f"trials[{index}]: {summarize(details)}; nothing was imported",
        {"index": index, "number": number, "problems": problems},
    )


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class TrialImports:
    """``POST /studies/{id}/trials/import``. Thread-safe."""

    def __init__(self, uow: UnitOfWork, views: StudyViews, index: TrialStudyIndex) -> None:
        self._uow = uow
        self._views = views
        self._index = index

    def import_trials(
        self,
        study_id: int,
        body: ImportIn,
        idem: IdempotencyKey | None = None,
        *,
        dry_run: bool = False,
    ) -> ImportOut:
        """Check every trial (outside any lock: the definition never changes), then store them
        all in one transaction under the view lock and the study's ask lock, as enqueue does.
        NotFound for an unknown study; InvalidInput naming the first trial that does not fit.
        ``dry_run``: check only. With ``idem`` seen before, the first answer again (the lock
        serialises duplicates, so the second finds the first's answer)."""
        target = ImportTarget.of(self._views.get(study_id).definition)
        trials = check_request(target, body.trials, body.source)
        if dry_run:
            return ImportOut(study_id=study_id, imported=len(trials), dry_run=True)

        def work() -> ImportOut:
            with self._views.locked(study_id) as view, self._uow.begin() as conn:
                view_repo.lock_study_for_ask(conn, study_id)
                view_repo.read_study_state(conn, study_id)  # NotFound once deleted
                if idem is not None and (stored := idempotency.find(conn, idem)) is not None:
                    return ImportOut.model_validate(stored.body)
                distributions = view.active.distributions
                rows = repo.insert_finished_trials(conn, study_id, trials, distributions)
                out = ImportOut(
                    study_id=study_id,
                    imported=len(rows),
                    first_number=rows[0][1],
                    last_number=rows[-1][1],
                )
                if idem is not None:
                    idempotency.record(conn, idem, 201, out.model_dump(mode="json"))
            for trial_id, _ in rows:
                self._index.remember(trial_id, study_id)
            return out

        return self._uow.run(work)


# ---- forks ----


@dataclass(frozen=True)
class Skipped:
    """A source trial that does not fit the new study, and why."""

    number: int
    state: ImportState
    reason: str


@dataclass(frozen=True)
class Forked:
    """What a fork imported, what it skipped, and which source parameters it left out."""

    imported: int
    skipped: list[Skipped]
    dropped_params: list[str]


_API_STATE: dict[OptunaTrialState, ImportState] = {
    "COMPLETE": "complete",
    "PRUNED": "pruned",
    "FAIL": "failed",
}


def fork_trials(
    conn: Connection,
    *,
    study_id: int,
    target: ImportTarget,
    source: Mapping[str, Any],
    source_study_id: int,
    source_space: Mapping[str, Any],
    states: Sequence[ImportState],
    defaults: Mapping[str, Any],
) -> Forked:
    """Import the source study's trials in ``states`` that fit ``target`` into the new study
    ``study_id`` on the caller's transaction (the study was created in it: no other
    transaction can hand out its trials yet). ``source`` is what ``hpo:imported_from``
    records besides the number; ``source_space`` is the source study's declared space (its
    other parameters were suggested define-by-run: they are kept). SpecError for ``defaults``
    that are not values of the space."""
    fill = _checked_defaults(target, defaults)
    wanted = [OPTUNA_STATE[s] for s in states]
    if repo.count_trials(conn, source_study_id, wanted) > MAX_FORK_TRIALS:
        raise InvalidInput(
            f"the source study has more than {MAX_FORK_TRIALS} trials in {', '.join(states)};"
            " export them and import them in parts instead"
        )
    active = target.active_space()
    kept: list[FinishedTrial] = []
    skipped: list[Skipped] = []
    dropped: set[str] = set()
    for trial in repo.finished_trials(conn, source_study_id, wanted, MAX_FORK_TRIALS):
        item, left_out = _fitted(target, active, trial, fill, source_space)
        try:
            if isinstance(item, str):
                raise TrialRefused([detail([], item)])
            kept.append(check_trial(target, active, item, {**source, "number": trial.number}))
            dropped |= left_out
        except TrialRefused as refused:
            state = _API_STATE[trial.state]
            skipped.append(Skipped(trial.number, state, summarize(refused.details)))
    repo.insert_finished_trials(conn, study_id, kept, active.distributions)
    return Forked(len(kept), skipped, sorted(dropped))


def _checked_defaults(target: ImportTarget, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Each default checked alone: a parameter of the new space, a value in its range."""
    try:
        return check_values(target.search_space, defaults)
    except SpecError as exc:
        details = [detail(["from", "defaults", *d["loc"][1:]], d["msg"]) for d in exc.details]
        raise SpecError(summarize(details), details) from None


def _fitted(
    target: ImportTarget,
    active: ActiveSpace,
    trial: StoredTrial,
    defaults: Mapping[str, Any],
    source_space: Mapping[str, Any],
) -> tuple[ImportTrialIn | str, set[str]]:
    """The source trial as an import into ``target`` (or why it cannot be one), and the names
    of its parameters left out (declared by the source but not in the new space, or inactive
    there for its values). Parameters neither study declares (define-by-run) are kept, with
    the trial's own distributions."""
    known = {n: v for n, v in trial.params.items() if n in target.search_space}
    free = {
        n: v
        for n, v in trial.params.items()
        if n not in target.search_space and n not in source_space
    }
    while True:  # a default may make further parameters active
        missing = [n for n in active.active(known) if n not in known]
        filled = [n for n in missing if n in defaults]
        if not filled:
            break
        known.update({n: defaults[n] for n in filled})
    if missing:
        name = missing[0]
        return (
            f"the trial has no {name!r}, which the new space makes active; give a value in"
            f" from.defaults.{name} to keep such trials",
            set(),
        )
    holds = set(active.active(known))
    state = _API_STATE[trial.state]
    declared = constraint_values(trial.system_attrs)
    raw: dict[str, Any] = {
        "number": trial.number,
        "state": state,
        "params": {**{n: v for n, v in known.items() if n in holds}, **free},
        "distributions": {n: param_spec_json(trial.distributions[n]) for n in free},
        "values": trial.values,
        "reason": trial.fail_reason if state == "failed" else None,
        "intermediate_values": [
            {"step": step, "value": value} for step, value in sorted(trial.intermediate.items())
        ],
        "user_attrs": trial.user_attrs,
        "datetime_start": trial.datetime_start,
        "datetime_complete": trial.datetime_complete,
    }
    if state == "complete" and target.constraints:
        raw["constraints"] = {n: declared[n] for n in target.constraints if n in declared}
    try:
        return _ITEM.validate_python(raw), {n for n in trial.params if n not in holds | set(free)}
    except ValidationError as exc:
        return summarize(validation_details(exc)), set()
