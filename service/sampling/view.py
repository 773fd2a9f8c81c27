"""The warm in-memory view of one study, on which the server samples and prunes.

Plain Optuna on PostgreSQL re-reads the study through its storage layer on every ask; here each
server process keeps every study it serves in memory (``ViewStorage``) and brings it up to date
with one incremental query (trials changed since the last read) before each decision. Asks on a
study are serialised across processes by an advisory lock taken before that refresh, so the view
a sampler sees always includes every trial handed out before, by any process.

Thread safety: callers hold ``view.lock`` (``StudyViews.locked``) around ``apply_changes`` and
everything that follows it.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from service.observability.metrics import time_sampling
from service.sampling import asha, pbt
from service.sampling import repository as repo
from service.sampling.rows import (
    Evidence,
    decode_attrs,
    decode_intermediate,
    decode_params,
    decode_values,
)
from service.sampling.view_storage import Journal, ViewStorage
from service.spec import (
    ActiveSpace,
    PrunerSpec,
    SamplerSpec,
    SearchSpace,
    build_pruner,
    build_sampler,
    to_distributions,
)
from service.spec.pruners import build_schedule
from service.spec.schedulers import PbtOptions, SchedulerSpec
from service.states import FINISHED_STATES

_DUPLICATE_RETRIES = 3
_DONE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_RANDOM_TRIES = 16


@dataclass(frozen=True)
class StudyDefinition:
    """The immutable part of a study: enough to build its sampler and pruner."""

    study_id: int
    name: str
    directions: list[str]
    search_space: SearchSpace
    sampler: SamplerSpec
    pruner: PrunerSpec
    task: dict[str, Any] | None
    # Declared constraint names, and failure reasons the sampler sees as infeasible points.
    constraints: tuple[str, ...] = ()
    infeasible_failures: frozenset[str] = frozenset()
    scheduler: SchedulerSpec | None = None


@dataclass(frozen=True)
class Handout:
    """What the next ask on a study gets: a paused trial promoted (``asha``, ``pbt``), a queued
    trial, or a newly sampled one."""

    kind: Literal["promoted", "queued", "new"]
    trial_id: int | None = None
    needs_sampling: bool = True
    # A promoted trial, or a pbt child's first attempt: the first step it runs.
    resume_from_step: int | None = None
    granted: int | None = None  # asha: the units the trial may reach (None: keep its grant)


NoTrialReason = Literal["paused", "stopped", "max_parallel", "budget_spent"]


@dataclass(frozen=True)
class NoHandout:
    """Why a study has no trial to give right now."""

    reason: NoTrialReason


@dataclass(frozen=True)
class Sampled:
    number: int
    params: dict[str, Any]
    distributions: dict[str, BaseDistribution]
    journal: Journal


class StudyView:
    """One study in memory: its trials, its sampler, its pruner, its queue."""

    def __init__(self, definition: StudyDefinition) -> None:
        self.definition = definition
        self.lock = threading.Lock()
        directions = [StudyDirection[d.upper()] for d in definition.directions]
        self.storage = ViewStorage(definition.study_id, definition.name, directions)
        self.sampler = build_sampler(
            definition.sampler, definition.search_space, definition.directions
        )
        self.pruner = build_pruner(definition.pruner, definition.directions)
        self.schedule = build_schedule(definition.pruner)  # asha's rungs, None for others
        scheduler = definition.scheduler
        self.pbt: PbtOptions | None = None if scheduler is None else scheduler.options
        self.distributions = to_distributions(definition.search_space)
        self.active = ActiveSpace(definition.search_space)
        # Draws a new trial at random when the sampler keeps repeating a running trial's
        # configuration (never for grid: it visits its grid points itself).
        self._fallback: optuna.samplers.BaseSampler | None = (
            None
            if definition.sampler.name == "grid"
            else optuna.samplers.RandomSampler(seed=definition.sampler.options.get("seed"))
        )
        self._continuous = any(
            isinstance(d, FloatDistribution) and d.step is None for d in self.distributions.values()
        )
        self.cursor = 0
        self.valid = True
        # True while the view may hold data of a transaction that has not committed yet.
        self.dirty = False
        self.queued: dict[int, dt.datetime] = {}
        self.leased: set[int] = set()
        self.attempts: dict[int, int] = {}
        # Trials the asha pruner paused (id -> paused step), leased ones too while they pause.
        self.paused_steps: dict[int, int] = {}
        # asha's resource units each trial holds (see resource_left).
        self.costs: dict[int, int] = {}
        # Every parameter combination in the view, to spot exact repeats in O(1).
        self._points: set[tuple[tuple[str, Any], ...]] = set()
        # Names of parameters some trial holds that the space does not declare (define-by-run).
        self.undeclared: set[str] = set()
        # pbt: each child's (parent, first step it runs); the trials children replaced.
        self.lineage: dict[int, tuple[int | None, int]] = {}
        self.replaced: set[int] = set()
        # Whether the study had a max_gpu_hours when this process last read it under the ask
        # lock (then complete and release settle it: service.trials.service.settle).
        self.gpu_budget = False

    @property
    def study_id(self) -> int:
        return self.definition.study_id

    # ---- keeping in step with the database ----

    def apply_changes(self, rows: Iterable[Mapping[str, Any]], horizon: int) -> None:
        """Apply the trials changed since ``cursor`` (read by the caller's statement, see
        ``service.sampling.repository``); ``horizon``, read no later than them, becomes the
        new cursor."""
        for row in rows:
            self._apply(row)
        self.cursor = horizon

    def add_intermediate_value(self, trial_id: int, step: int, value: float) -> None:
        """This process's own report, applied without reading it back."""
        self.storage.set_trial_intermediate_value(trial_id, step, value)

    def _apply(self, row: Mapping[str, Any]) -> None:
        trial_id = row["trial_id"]
        paused_step = row.get("paused_step")
        trial = _frozen_trial(row, self.definition)
        if paused_step is not None and row["state"] not in FINISHED_STATES:
            self.paused_steps[trial_id] = paused_step
        else:
            self.paused_steps.pop(trial_id, None)
        self.costs[trial_id] = _resource_cost(row)
        started_from = row.get("started_from_step")
        if started_from is not None:
            self.lineage[trial_id] = (row.get("parent_trial_id"), started_from)
        if row.get("replaced_trial_id") is not None:
            self.replaced.add(row["replaced_trial_id"])
        self.storage.put_trial(trial_id, trial)
        if trial.params:
            self._points.add(_point(trial.params))
            self.undeclared.update(n for n in trial.params if n not in self.distributions)
        self.attempts[trial_id] = row["attempt"]
        queued_at = _timestamp(row["queued_at"])
        if queued_at is not None:
            self.queued[trial_id] = queued_at
        else:
            self.queued.pop(trial_id, None)
        if row["leased"]:
            self.leased.add(trial_id)
        else:
            self.leased.discard(trial_id)

    # ---- decisions ----

    def next_handout(self, state: repo.StudyState) -> Handout | NoHandout:
        """A promotion first (``asha``: see :meth:`promotions`), then the queue (retries,
        enqueued trials and pbt children, oldest first), then a new trial; with ``pbt`` the
        paused members come last, once nobody is behind them (:meth:`pbt_promotions`).

        Nothing when the study is not running, ``max_parallel`` trials hold a lease, or the budget
        (``max_trials`` trials ever started; a retried trial counts once) is spent. A promotion
        needs no ``max_trials`` budget: the trial was counted when it first started. With
        ``max_resource_total`` (``asha``), a promotion, an enqueued trial's first start or a new
        trial is handed out only if the units it is granted fit in what is left (a retry keeps
        its grant, counted already). Nothing either, not even a promotion or a retry, once the
        study's ``max_gpu_hours`` is used (``state.gpu_spent``, read under the ask lock).
        """
        if state.state in ("paused", "stopped"):
            return NoHandout(state.state)
        if state.gpu_spent:
            return NoHandout("budget_spent")
        if state.max_parallel is not None and len(self.leased) >= state.max_parallel:
            return NoHandout("max_parallel")
        left = self.resource_left(state)
        if self.pbt is None and (promoted := self._asha_promotion(left)) is not None:
            return promoted
        budget_left = state.max_trials is None or state.n_started < state.max_trials
        if (queued := self._from_queue(budget_left, left)) is not None:
            return queued
        grant = self._first_grant(self.storage.next_number)
        if budget_left and _fits(grant, left) and not self._population_full():
            return Handout("new", granted=grant)
        for trial_id, step in self.pbt_promotions():  # pbt: the members behind went first
            return Handout("promoted", trial_id, needs_sampling=False, resume_from_step=step + 1)
        return NoHandout("budget_spent")

    def _asha_promotion(self, left: int | None) -> Handout | None:
        """The first promotion (``asha``) whose grant fits in what is left."""
        for promotion in self.promotions():
            if left is None or promotion.grant - promotion.resume_from_step <= left:
                return Handout(
                    "promoted",
                    promotion.trial_id,
                    needs_sampling=False,
                    resume_from_step=promotion.resume_from_step,
                    granted=promotion.grant,
                )
        return None

    def _from_queue(self, budget_left: bool, left: int | None) -> Handout | None:
        """The oldest queued trial that may start: a retry, or a first start (an enqueued
        trial, a pbt child) within ``max_trials`` and whose first grant fits (``asha``). A
        child's first attempt resumes from the checkpoint copied from its parent."""
        for trial_id in sorted(self.queued, key=lambda tid: (self.queued[tid], tid)):
            never_started = self.attempts.get(trial_id, 0) == 0
            trial = self.storage.get_trial(trial_id)
            grant = self._first_grant(trial.number) if never_started else None
            if never_started and (not budget_left or not _fits(grant, left)):
                continue
            child = never_started and trial_id in self.lineage
            resume = self.lineage[trial_id][1] if child else None
            needs_sampling = self.active.incomplete(trial.params)
            return Handout(
                "queued", trial_id, needs_sampling, resume_from_step=resume, granted=grant
            )
        return None

    def pbt_promotions(self) -> list[tuple[int, int]]:
        """``pbt``: the paused members (id, paused step) that no live member is behind, lowest
        step first, then best value there, then number (the population is made); none for
        other studies."""
        if self.pbt is None or not self._population_full():
            return []
        slowest = self._slowest()
        ready = [
            (tid, step) for tid, step in self.paused().items() if not _behind_of(slowest, tid, step)
        ]

        def order(item: tuple[int, int]) -> tuple[int, float, int]:
            trial = self.storage.get_trial(item[0])
            value = trial.intermediate_values.get(item[1], math.nan)
            key = math.inf if math.isnan(value) else (-value if self._maximize else value)
            return item[1], key, trial.number

        return sorted(ready, key=order)

    def _behind(self, trial_id: int, step: int) -> bool:
        """``pbt``: whether a member other than ``trial_id`` that is still training (running,
        queued, paused; not replaced) has not reached ``step`` yet, or the population is not
        made: then a member that reaches a decision step waits (pauses) for it."""
        return not self._population_full() or _behind_of(self._slowest(), trial_id, step)

    def _slowest(self) -> list[tuple[int, int]]:
        """The two members still training that are furthest behind: (progress, id), slowest
        first (one pass over the trials)."""
        found: list[tuple[int, int]] = []
        for tid, trial in self.storage.trials_by_id():
            if tid in self.replaced or trial.state in _DONE:
                continue
            found.append((self._progress(tid, trial), tid))
            found = sorted(found)[:2]
        return found

    def _progress(self, trial_id: int, trial: FrozenTrial) -> int:
        """The last step the member reached (a child not started: the one before its first)."""
        if trial.intermediate_values:
            return max(trial.intermediate_values)
        return self.lineage[trial_id][1] - 1 if trial_id in self.lineage else -1

    def _population_full(self) -> bool:
        """pbt: the sampler has made ``population`` trials (every other one is a child)."""
        if self.pbt is None:
            return False
        return self.storage.next_number - len(self.lineage) >= self.pbt.population

    def paused(self) -> dict[int, int]:
        """The trials that are paused now (id -> paused step): not leased, not queued."""
        return {
            tid: step
            for tid, step in self.paused_steps.items()
            if tid not in self.leased and tid not in self.queued
        }

    def promotions(self) -> list[asha.Promotion]:
        """The paused trials in the top of their rung now, in promotion order (``asha``)."""
        paused = self.paused()
        if self.schedule is None or not paused:
            return []
        trials = dict(self.storage.trials_by_id())
        return asha.promotions(self.schedule, trials, paused, maximize=self._maximize)

    def rung_decision(
        self, trial_id: int, step: int, state: repo.StudyState
    ) -> tuple[bool, int | None]:
        """The ``asha`` decision on the trial's report of ``step`` (already in the view):
        (pause?, the units granted to a trial that continues at a rung, else None). A trial in
        the top of its rung continues only if its next grant fits in ``max_resource_total``;
        a trial already told to pause is told so again (a repeated report). (False, None) for
        other pruners and for steps that are no rung."""
        if self.schedule is None:
            return False, None
        if trial_id in self.paused_steps:
            return True, None
        number = self.storage.get_trial(trial_id).number
        if self.schedule.rung_of(number, step) is None:
            return False, None
        trials = self.storage.trials_by_id()
        if asha.should_pause(
            self.schedule, trials, trial_id, number, step, maximize=self._maximize
        ):
            return True, None
        grant = self.schedule.next_stop(number, step + 1)
        left = self.resource_left(state)
        if left is not None and grant - self.costs.get(trial_id, step + 1) > left:
            return True, None  # in the top, but the resource budget cannot take its next rung
        return False, grant

    def resource_left(self, state: repo.StudyState) -> int | None:
        """``max_resource_total`` less the units every trial holds: its grant while it is not
        finished (running, queued, paused), the steps it reported once finished. None without
        that budget."""
        if state.max_resource_total is None or self.schedule is None:
            return None
        return state.max_resource_total - sum(self.costs.values())

    def budget_finished(self, state: repo.StudyState) -> bool:
        """Nothing more can happen in the study (``asha``): it runs, no trial holds a lease,
        and nothing can be handed out for lack of budget (trials or resource units); no retry
        waits, and no paused trial can be promoted."""
        if not self.multi_fidelity or self.leased:
            return False
        return self.next_handout(state) == NoHandout("budget_spent")

    @property
    def multi_fidelity(self) -> bool:
        """Whether the study's trials are paused, promoted or replaced (asha or pbt): its
        reports are decided on under the ask lock, and it is settled after each finish."""
        return self.schedule is not None or self.pbt is not None

    def pbt_decision(self, trial_id: int, step: int) -> pbt.Exploit | Literal["pause"] | None:
        """The ``pbt`` decision on the trial's report of ``step`` (already in the view): None
        to go on; ``"pause"`` while another member is behind (the decision is then taken when
        it is resumed, on the whole population: :meth:`pbt_exploit`); else it is stopped, and
        replaced as the answer says. A trial replaced or paused already is told so again (a
        repeated report)."""
        if self.pbt is None or not pbt.decides_at(self.pbt, step):
            return None
        if trial_id in self.replaced:
            return pbt.Exploit(trial_id, step, parents=[], again=True)
        if trial_id in self.paused_steps or self._behind(trial_id, step):
            return "pause"
        return self.pbt_exploit(trial_id, step)

    def pbt_exploit(self, trial_id: int, step: int) -> pbt.Exploit | None:
        """Whether the member is in the bottom at ``step`` (an Exploit naming the top), else
        None."""
        assert self.pbt is not None
        top = pbt.bottom_and_top(
            self.pbt,
            self.storage.trials_by_id(),
            self.replaced,
            trial_id,
            step,
            maximize=self._maximize,
        )
        return None if top is None else pbt.Exploit(trial_id, step, parents=top)

    def leftover_paused(self, state: repo.StudyState) -> list[int]:
        """The paused trials nothing more can happen to (:meth:`budget_finished`): to be
        finished as pruned, so the study ends."""
        paused = self.paused()
        if not paused or not self.budget_finished(state):
            return []
        return sorted(paused)

    def _first_grant(self, number: int) -> int | None:
        return None if self.schedule is None else self.schedule.first_stop(number)

    @property
    def _maximize(self) -> bool:
        return self.definition.directions[0] == "maximize"

    def sample(self, trial_id: int | None = None) -> Sampled:
        """Sample every parameter of a new trial (``trial_id`` None) or fill in a queued one.

        A queued trial enqueued by a user keeps its ``fixed_params``. A new trial is provisional:
        it is removed from the view again, and comes back from the database on the next refresh.
        """
        with time_sampling(self.definition.sampler.name):
            for _ in range(_DUPLICATE_RETRIES):
                sampled = self._sample_once(trial_id, self.sampler)
                if trial_id is not None or not self._repeats(sampled.params):
                    return sampled
            if self._fallback is None or not self._repeats_pending(sampled.params):
                return sampled
            for _ in range(_RANDOM_TRIES):
                other = self._sample_once(None, self._fallback)
                if not self._repeats_pending(other.params):
                    return other
        return sampled  # the space has hardly a configuration that is not running already

    def _sample_once(self, trial_id: int | None, sampler: optuna.samplers.BaseSampler) -> Sampled:
        study = optuna.Study(
            study_name=self.definition.name,
            storage=self.storage,
            sampler=sampler,
            pruner=self.pruner,
        )
        if trial_id is None:
            working_id = self.storage.create_new_trial(self.study_id)
        else:
            working_id = trial_id
            self.storage.set_trial_state_values(trial_id, TrialState.RUNNING)
        # Parents first; a conditional parameter only when its condition holds for the values
        # already suggested (a queued trial's fixed values included).
        trial = optuna.Trial(study, working_id)
        self.active.suggest(trial)
        if self.undeclared:
            self._keep_relative(trial, working_id)
        frozen = self.storage.get_trial(working_id)
        if trial_id is None:
            self.storage.drop_trial(working_id)
        journal = self.storage.drain_journal()
        _rekey(journal, working_id)
        return Sampled(frozen.number, dict(frozen.params), dict(frozen.distributions), journal)

    def _keep_relative(self, trial: optuna.Trial, working_id: int) -> None:
        """Keep what the sampler's relative (joint) sample drew for undeclared parameters, as
        the system attribute :data:`RELATIVE_KEY`: a later ``suggest_param`` of one of them
        takes that value, as an Optuna trial takes its relative params (one relative sample
        per trial, at hand-out)."""
        relative = trial.relative_params  # drawn once per trial (cached by Optuna)
        space = trial.relative_search_space or {}
        kept = {
            name: [float(space[name].to_internal_repr(value)), distribution_to_json(space[name])]
            for name, value in relative.items()
            if name not in self.distributions and name in space
        }
        if kept:
            self.storage.set_trial_system_attr(working_id, RELATIVE_KEY, kept)

    def suggest_param(self, trial_id: int, name: str, distribution: BaseDistribution) -> Any:
        """The value of an undeclared parameter of the running trial ``trial_id`` (define-by-run),
        set on the view (the caller stores it, and the journal, in its transaction).

        A name the trial holds already keeps its value (the caller checks the distribution is
        the same). Otherwise the value is the trial's relative sample if the sampler drew one
        for this name and distribution at hand-out (the name is in the sampler's relative
        search space, e.g. every finished trial has it), else the sampler's independent sample
        on the view's history, as ``optuna.Trial.suggest_*`` does.
        """
        trial = self.storage.get_trial(trial_id)
        if name in trial.params:
            return trial.params[name]
        with time_sampling(self.definition.sampler.name):
            value = _kept_relative(trial, name, distribution)
            if value is _NONE:
                value = self._independent(trial, name, distribution)
        self.storage.set_trial_param(
            trial_id, name, distribution.to_internal_repr(value), distribution
        )
        return self.storage.get_trial(trial_id).params[name]

    def _independent(self, trial: FrozenTrial, name: str, distribution: BaseDistribution) -> Any:
        if distribution.single():
            return _single_value(distribution)
        study = optuna.Study(
            study_name=self.definition.name,
            storage=self.storage,
            sampler=self.sampler,
            pruner=self.pruner,
        )
        return self.sampler.sample_independent(study, trial, name, distribution)

    def _repeats(self, params: Mapping[str, Any]) -> bool:
        """Resampled: an exact repeat of a continuous point (that only comes from twin RNG
        streams, for example two server processes with the same seed), and a configuration
        that a running trial is evaluating already (a batch, or parallel workers: a model
        that has concentrated on one discrete point repeats it even with pending points).
        Discrete repeats of finished trials are legitimate."""
        point = _point(params)
        if self._continuous and point in self._points:
            return True
        return self._fallback is not None and self._repeats_pending(params)

    def _repeats_pending(self, params: Mapping[str, Any]) -> bool:
        point = _point(params)
        return any(_point(self.storage.get_trial(t).params) == point for t in self.leased)

    def should_prune(self, trial_id: int) -> tuple[bool, Journal]:
        """The study's pruner on the view (which already holds the new intermediate value)."""
        study = optuna.Study(
            study_name=self.definition.name,
            storage=self.storage,
            sampler=self.sampler,
            pruner=self.pruner,
        )
        decision = bool(self.pruner.prune(study, self.storage.get_trial(trial_id)))
        return decision, self.storage.drain_journal()


PROVISIONAL = 0  # the key journals use for "the trial being created"
# The trial system attribute holding a hand-out's relative sample of undeclared parameters:
# name -> [internal value, distribution JSON].
RELATIVE_KEY = "hpo:relative_params"
_NONE = object()


def _behind_of(slowest: list[tuple[int, int]], trial_id: int, step: int) -> bool:
    """Whether a member other than ``trial_id`` among the two slowest is short of ``step``."""
    return any(progress < step for progress, tid in slowest if tid != trial_id)


def _kept_relative(trial: FrozenTrial, name: str, distribution: BaseDistribution) -> Any:
    """The relative sample kept for ``name`` at hand-out, if it was drawn for ``distribution``."""
    kept = trial.system_attrs.get(RELATIVE_KEY)
    entry = kept.get(name) if isinstance(kept, dict) else None
    if entry is None or json_to_distribution(entry[1]) != distribution:
        return _NONE
    return distribution.to_external_repr(entry[0])


def _single_value(distribution: BaseDistribution) -> Any:
    """The only value of a one-point distribution (``low == high``, or one choice)."""
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[0]
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    return distribution.low


def _fits(grant: int | None, left: int | None) -> bool:
    return grant is None or left is None or grant <= left


def _resource_cost(row: Mapping[str, Any]) -> int:
    """The resource units a trial holds: the steps it reported once finished, else its grant."""
    if row["state"] in FINISHED_STATES:
        steps = [int(entry[0]) for entry in row["intermediate"] or ()]
        return max(steps) + 1 if steps else 0
    return int(row.get("resource_granted") or 0)


def _rekey(journal: Journal, working_id: int) -> None:
    if working_id < 0:
        for attrs in (journal.trial_system_attrs, journal.trial_user_attrs):
            if working_id in attrs:
                attrs[PROVISIONAL] = attrs.pop(working_id)


def _point(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def _frozen_trial(row: Mapping[str, Any], definition: StudyDefinition | None = None) -> FrozenTrial:
    """The trial as the study's sampler sees it. With ``definition``, a FAIL trial whose reason
    the study counts as infeasible becomes infeasible evidence (see
    :class:`~service.sampling.rows.Evidence`; in this view only)."""
    params, distributions = decode_params(row["params"])
    state = TrialState[row["state"]]
    if state == TrialState.WAITING and row.get("paused_step") is not None and not row.get("leased"):
        # Paused by asha: the sampler learns from it as from a pruned trial (TPE ranks those by
        # their last step, then value). In this view only; Optuna's tables keep it WAITING.
        state = TrialState.PRUNED
    values = decode_values(row["trial_values"]) if state == TrialState.COMPLETE else None
    system_attrs = decode_attrs(row["system_attrs"])
    intermediate = decode_intermediate(row["intermediate"])
    if definition is not None and (definition.constraints or definition.infeasible_failures):
        evidence = Evidence(
            tuple(definition.directions), definition.constraints, definition.infeasible_failures
        )
        if evidence.is_evidence(row["state"], row.get("fail_reason")):
            state, values, intermediate = TrialState.COMPLETE, evidence.worst_values(), {}
            system_attrs = {**system_attrs, **evidence.violated()}
        elif state == TrialState.COMPLETE:
            system_attrs = {**evidence.synthetic_feasible(), **system_attrs}
    return FrozenTrial(
        number=row["number"],
        state=state,
        value=None,
        values=values,
        datetime_start=_timestamp(row["datetime_start"]),
        datetime_complete=(
            _timestamp(row["datetime_complete"] or row["datetime_start"])
            if state.is_finished()
            else None
        ),
        params=params,
        distributions=distributions,
        user_attrs=decode_attrs(row["user_attrs"]),
        system_attrs=system_attrs,
        intermediate_values=intermediate,
        trial_id=row["trial_id"],
    )


def _timestamp(value: dt.datetime | str | None) -> dt.datetime | None:
    """Rows come as Python values or, aggregated with json_agg, as ISO strings."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value
