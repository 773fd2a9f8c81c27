"""The trial service: every use case of a trial's life under a lease.

Hand-outs (:meth:`TrialService.ask`, :meth:`~TrialService.claim`, :meth:`~TrialService.enqueue`),
and the calls under a lease (:meth:`~TrialService.heartbeat`, :meth:`~TrialService.report`,
:meth:`~TrialService.set_attrs`, :meth:`~TrialService.complete`, :meth:`~TrialService.release`).

Contracts:

* Every use case is one transaction (``service.db.unit_of_work``), committed before it returns,
  and run again from the start when PostgreSQL aborts it as a deadlock or serialisation failure.
* Decisions on a study (a hand-out, a pruning decision) are taken under the study's view lock in
  this process and its advisory ask lock across processes, on a view refreshed in the same
  transaction: no two hand-outs of one study ever see the same state.
* Ask, claim and complete-with-next are idempotent per ``Idempotency-Key`` (complete-with-next
  per finishing token): a repeated request gets the first answer, never a second trial. A
  repeated complete with the same token returns the same finished trial.
* A token that holds no live lease changes nothing (``service.trials.leases``).
* A study whose first ``fail_fast_trials`` finished trials all failed for one reason is paused
  by the failing complete, in its transaction, with the reason in ``state_reason``.
* ``asha`` (pause and promote, ``service.sampling.asha``): a report's continue-or-pause decision
  is taken under the view lock and the ask lock, like a hand-out; a pause is stored with the
  report (``paused_step``) and takes effect when the lease is released or expires. A study's
  paused trials that nothing more can happen to (budget spent, nothing leased, none promotable)
  are finished as pruned by :meth:`TrialService.settle`, run after every complete and release
  and by a hand-out that finds the budget spent (each under the ask lock, so processes agree).
* ``pbt`` (population-based training, ``service.sampling.pbt``): a report at a decision step
  is decided on under the view and ask locks too; a trial of the bottom is answered
  ``should_prune`` and, in the same transaction, replaced by a queued child of a trial of the
  top, with a server-side copy of that trial's checkpoint (``service.trials.exploit``). Once the
  sampler has made ``population`` trials and nothing runs or waits, :meth:`settle` marks the
  study spent: it is completed.
* GPU-hours (``max_gpu_hours``, ``service.usage``): each lease is an attempt on the device the
  worker said (:class:`~service.trials.handout.Device`). Once the study's GPU time (ended
  attempts plus running ones up to now) reaches its budget, read under the ask lock, nothing is
  handed out or promoted, heartbeats and reports answer ``should_stop``, and
  :meth:`TrialService.settle` finishes every trial that waits without a lease (released,
  queued, paused) as pruned at its last value, so the study completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection

from service import idempotency
from service.checkpoints.postgres_store import PostgresCheckpointStore
from service.checkpoints.store import CheckpointStore
from service.db.unit_of_work import UnitOfWork
from service.errors import InvalidInput, NotFound, StateConflict
from service.idempotency import IdempotencyKey, KeyRace
from service.notify import WorkSignal
from service.observability.metrics import count_claim
from service.sampling import repository as view_repo
from service.sampling.registry import StudyViews
from service.sampling.view import StudyView
from service.spec import check_params
from service.studies import repository as study_repo
from service.trials import repository as repo
from service.trials.exploit import replace
from service.trials.handout import NO_DEVICE, Batch, Device, HandOut, Handouts, NoTrial, next_key
from service.trials.index import TrialStudyIndex
from service.trials.leases import Finish, check_replay, raise_for_lease
from service.trials.read_model import to_trial_out
from service.trials.repository import TrialRow
from service.trials.schemas import LeasedTrialOut, TrialOut

_CLAIM_CANDIDATES = 8
_Answer = TypeVar("_Answer", HandOut, Batch)
_SAVEPOINT = "hpo_next_trial"


@dataclass(frozen=True)
class ClaimTiming:
    """How long a claim may wait (long poll), and how often it looks again without a wake-up
    (a notification may be lost while the listener reconnects)."""

    max_wait_s: float
    repoll_s: float


@dataclass(frozen=True)
class Claim:
    """What a worker claims: any running study of its team, or only these studies or tasks."""

    worker_id: str
    study_ids: Sequence[int] | None = None
    tasks: Sequence[str] | None = None
    wait_seconds: float = 0.0
    count: int | None = None  # a batch: up to this many trials in one answer
    device: Device = NO_DEVICE  # what the trials will run on (every slot of a worker alike)


@dataclass(frozen=True)
class Decision:
    """The answer to a report: prune the trial, pause it (``asha``), or stop it (the study
    was stopped)."""

    should_prune: bool
    should_stop: bool
    should_pause: bool = False


@dataclass(frozen=True)
class Renewal:
    """The answer to a heartbeat: the lease's new expiry; stop if the study was stopped or its
    GPU-hour budget is used."""

    expires_at: dt.datetime
    should_stop: bool


@dataclass(frozen=True)
class Completed:
    """A finished trial, and the study's next trial when the complete asked for one."""

    trial: TrialOut
    following: HandOut | None = None


class TrialService:
    """The one service for trials under leases (see the module docstring). Thread-safe; the
    long poll of :meth:`claim` runs on the event loop, everything else in worker threads."""

    def __init__(
        self,
        uow: UnitOfWork,
        views: StudyViews,
        index: TrialStudyIndex,
        signal: WorkSignal,
        timing: ClaimTiming,
        *,
        fail_fast_trials: int = 0,
        checkpoints: CheckpointStore | None = None,
    ) -> None:
        self._uow = uow
        self._checkpoints = checkpoints or PostgresCheckpointStore()
        self._fail_fast_trials = fail_fast_trials
        self._views = views
        self._index = index
        self._signal = signal
        self._timing = timing
        self._handouts = Handouts(self._checkpoints)

    # ---- hand-outs ----

    def ask(
        self,
        study_id: int,
        worker_id: str,
        idem: IdempotencyKey | None = None,
        device: Device = NO_DEVICE,
    ) -> HandOut:
        """Lease the study's next trial to ``worker_id`` (to run on ``device``), or say why
        there is none now."""
        return self._idempotent(
            idem, idem, lambda: self._ask(study_id, worker_id, idem, device), HandOut.stored
        )

    def ask_many(
        self,
        study_id: int,
        worker_id: str,
        count: int,
        idem: IdempotencyKey | None = None,
        device: Device = NO_DEVICE,
    ) -> Batch:
        """Lease up to ``count`` trials of the study to ``worker_id`` in one transaction:
        atomic against ``max_parallel`` and the budget, idempotent as a whole."""

        def work() -> Batch:
            with self._views.locked(study_id) as view, self._uow.begin() as conn:
                batch = self._handouts.hand_out_many(conn, view, worker_id, count, device=device)
                if idem is not None and batch.found:
                    idempotency.record(conn, idem, 200, batch.body().model_dump(mode="json"))
            for trial in batch.trials:
                self._index.remember(trial.id, study_id)
            if batch.reason == "budget_spent":
                self.settle(study_id)
            return batch

        return self._idempotent(idem, idem, lambda: self._uow.run(work), Batch.stored)

    async def claim(
        self,
        claim: Claim,
        idem: IdempotencyKey | None,
        *,
        team_id: int | None,
        gone: Callable[[], Awaitable[bool]],
    ) -> HandOut | Batch:
        """Lease one trial from any eligible study of the team (of any team for None), least
        recently served first; with ``wait_seconds``, wait (long poll) until one is available.
        With ``claim.count``, a :class:`Batch` of up to that many (see :meth:`_claim_batch`).

        A trial finishing, a study created or resumed anywhere wakes the wait at once. ``gone``
        tells whether the caller hung up (the wait then ends with no trial). Only the first
        attempt can find an answer stored under ``idem``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(claim.wait_seconds, self._timing.max_wait_s)
        first = True
        while True:
            woken = self._signal.waiter()  # subscribe before trying, so no notification is missed
            try:
                attempt = functools.partial(self._claim_attempt, claim, idem, first, team_id)
                result = await anyio.to_thread.run_sync(attempt)
                first = False
                remaining = deadline - loop.time()
                if result.found or remaining <= 0 or await gone():
                    return result
                await self._signal.wait(woken, min(remaining, self._timing.repoll_s))
            finally:
                self._signal.forget(woken)

    def enqueue(
        self, study_id: int, params: Mapping[str, Any], user_attrs: Mapping[str, Any]
    ) -> TrialOut:
        """Queue a configuration (some or all parameters fixed) ahead of new samples; refused
        when the study's trial budget is already spoken for."""

        def work() -> TrialOut:
            with self._views.locked(study_id) as view, self._uow.begin() as conn:
                fixed = check_params(view.definition.search_space, params, partial=True)
                view_repo.lock_study_for_ask(conn, study_id)
                _check_budget(conn, study_id)
                trial_id = repo.enqueue_trial(conn, study_id, fixed, user_attrs)
                row = repo.get_trial(conn, trial_id)
            assert row is not None
            self._index.remember(trial_id, study_id)
            return to_trial_out(row, intermediate=False)

        return self._uow.run(work)

    # ---- calls under a lease ----

    def heartbeat(self, trial_id: int, token: str) -> Renewal:
        """Extend the lease by the study's ``lease_seconds``."""

        def work(conn: Connection) -> Renewal:
            renewed = repo.heartbeat(conn, trial_id, token)
            if renewed is None:
                raise_for_lease(conn, trial_id, token)
            assert renewed is not None
            stop = renewed.study_state == "stopped" or renewed.gpu_spent
            return Renewal(renewed.expires_at, stop)

        return self._uow.transaction(work)

    def report(self, trial_id: int, token: str, step: int, value: float) -> Decision:
        """Store an intermediate value and ask the study's pruner.

        Reporting a step again keeps the first value and answers the same question again. With
        ``asha`` or ``pbt`` the ask lock is taken first, so the rung's (or the step's)
        population is the same in every process; a pause is stored with the report, and so is a
        ``pbt`` child that replaces the trial (the answer is then ``should_prune``).
        """
        study_id = self._index.study_of(trial_id)

        def work() -> Decision:
            with self._views.locked(study_id) as view:
                if len(view.definition.directions) > 1:
                    raise InvalidInput(
                        "intermediate values cannot be reported for a multi-objective study "
                        "(Optuna prunes single-objective studies only)"
                    )
                with self._uow.begin() as conn:
                    state = None
                    if view.multi_fidelity:
                        state, changed = view_repo.lock_and_read(conn, study_id, view.cursor)
                        view.apply_changes(changed, state.xmin)
                    reported = repo.report(conn, trial_id, token, step, value, view.cursor)
                    if reported is None:
                        raise_for_lease(conn, trial_id, token)
                    assert reported is not None
                    view.dirty = True
                    view.gpu_budget = view.gpu_budget or reported.gpu_spent
                    view.apply_changes(reported.changed, reported.horizon)
                    if reported.inserted:
                        view.add_intermediate_value(trial_id, step, value)
                    prune, journal = view.should_prune(trial_id)
                    repo.flush_journal(conn, study_id, journal)
                    pause, grant = (False, None)
                    if state is not None:
                        pause, grant = view.rung_decision(trial_id, step, state)
                        exploit = view.pbt_decision(trial_id, step)
                        if exploit == "pause":
                            pause = True  # waits for the members behind it
                        elif exploit is not None and (
                            exploit.again
                            or replace(conn, view, state, exploit, self._checkpoints) is not None
                        ):
                            prune = True  # stopped: its lineage goes on in its child
                    if pause:
                        repo.mark_paused(conn, trial_id, token, step)
                    elif grant is not None:
                        repo.grant_resource(conn, trial_id, token, grant)
            stop = reported.study_state == "stopped" or reported.gpu_spent
            return Decision(prune, stop, pause)

        return self._uow.run(work)

    def set_attrs(self, trial_id: int, token: str, attrs: Mapping[str, Any]) -> None:
        """Set user attributes of a running trial (the lease is extended too)."""

        def work(conn: Connection) -> None:
            if repo.heartbeat(conn, trial_id, token) is None:
                raise_for_lease(conn, trial_id, token)
            repo.upsert_trial_attrs(conn, trial_id, attrs)
            repo.touch_trial(conn, trial_id)

        self._uow.transaction(work)

    def complete(
        self,
        trial_id: int,
        token: str,
        finish: Finish,
        next_for: str | None = None,
        next_device: Device = NO_DEVICE,
    ) -> Completed:
        """Finish the trial. With ``next_for`` (a worker id), also lease the study's next trial
        to that worker in the same transaction (one commit for both), to run on ``next_device``.

        Repeating the call with the same token returns the same finished trial (and the same
        next trial). If the hand-out of the next trial fails, the finish still commits and the
        error is raised after it: the client's retry then gets the finished trial again.

        A complete trial of a study that declares constraints must give exactly their values
        (422 otherwise, before anything changes).
        """
        study_id = self._index.study_of(trial_id)
        finish = finish.checked(self._views.get(study_id).definition.constraints)
        if next_for is None:
            done = Completed(self._uow.run(lambda: self._finish(trial_id, token, finish)[0]))
            self.settle(study_id)
            return done
        both = self._uow.run(
            lambda: self._finish_and_hand_out(
                study_id, trial_id, token, finish, next_for, next_device
            )
        )
        if both is not None:
            self.settle(study_id)
            return both
        # Nothing finished: a repetition (or a lost lease, raised here).
        finished, replayed = self._uow.run(lambda: self._finish(trial_id, token, finish))
        idem = next_key(study_id, token, next_for)
        lookup = idem if replayed else None
        following = self._idempotent(
            lookup, idem, lambda: self._ask(study_id, next_for, idem, next_device), HandOut.stored
        )
        return Completed(finished, following)

    def release(self, trial_id: int, token: str) -> None:
        """Hand the lease back: the trial waits in the queue again, no retry used up (or, told
        to pause by ``asha``, it is paused)."""

        def work(conn: Connection) -> repo.Released | None:
            released = repo.release(conn, trial_id, token)
            if released is None:
                raise_for_lease(conn, trial_id, token)
            return released

        released = self._uow.transaction(work)
        if released is not None:
            self.settle(released.study_id, check=released.gpu_budget)

    def settle(self, study_id: int, *, check: bool = False) -> list[int]:
        """Finish as pruned, at their last value, the study's paused trials nothing more can
        happen to (``StudyView.leftover_paused``), so the study ends; their ids. When its
        ``max_resource_total`` is what ended it, mark it spent (the study is then completed).
        Once its ``max_gpu_hours`` is used, every trial that waits without a lease is finished
        so (``repository.finish_waiting``) and the study is marked spent. Under the view and ask
        locks on a refreshed view, in its own transaction. Nothing for other studies (neither
        asha nor a GPU budget known to this process), unless ``check`` (the caller saw a GPU
        budget, or cannot tell: the reaper)."""

        def work() -> list[int]:
            with self._views.locked(study_id) as view, self._uow.begin() as conn:
                state, changed = view_repo.lock_and_read(conn, study_id, view.cursor)
                view.apply_changes(changed, state.xmin)
                view.gpu_budget = state.max_gpu_hours is not None
                if state.gpu_spent and state.state == "running":
                    return self._settle_gpu(conn, view, state)
                if not view.multi_fidelity or not view.budget_finished(state):
                    return []
                trials_left = state.max_trials is None or state.n_started < state.max_trials
                if trials_left and not state.resource_spent:
                    study_repo.mark_resource_spent(conn, study_id)
                leftover = view.leftover_paused(state)
                if not leftover:
                    return []
                view.dirty = True
                return repo.finish_paused(conn, study_id, leftover)

        try:
            view = self._views.get(study_id)
            if not view.multi_fidelity and not view.gpu_budget and not check:
                return []
            return self._uow.run(work)
        except NotFound:  # deleted meanwhile
            return []

    def _settle_gpu(
        self, conn: Connection, view: StudyView, state: view_repo.StudyState
    ) -> list[int]:
        """The GPU-hour budget is used: mark the study spent (claims pass it by; it completes
        once nothing runs) and finish its waiting trials; running ones were told to stop."""
        if not state.resource_spent:
            study_repo.mark_resource_spent(conn, view.study_id)
        finished = repo.finish_waiting(conn, view.study_id)
        if finished:
            view.dirty = True
        return finished

    # ---- internals ----

    def _ask(
        self, study_id: int, worker_id: str, idem: IdempotencyKey | None, device: Device
    ) -> HandOut:
        """One hand-out of the study in its own transaction (retried on an abort)."""

        def work() -> HandOut:
            try:
                return HandOut(self._hand_out(study_id, worker_id, idem, device=device))
            except NoTrial as none:
                return HandOut(None, none.reason)

        return self._uow.run(work)

    def _hand_out(
        self,
        study_id: int,
        worker_id: str,
        idem: IdempotencyKey | None,
        *,
        touch: bool = True,
        device: Device = NO_DEVICE,
    ) -> LeasedTrialOut:
        try:
            with self._views.locked(study_id) as view, self._uow.begin() as conn:
                out = self._handouts.hand_out(
                    conn, view, worker_id, idem, touch=touch, device=device
                )
        except NoTrial as none:
            if none.reason == "budget_spent":
                self.settle(study_id)
            raise
        self._index.remember(out.id, study_id)
        return out

    def _claim_attempt(
        self, claim: Claim, idem: IdempotencyKey | None, first: bool, team_id: int | None
    ) -> HandOut | Batch:
        lookup = idem if first else None
        result: HandOut | Batch
        if claim.count is None:
            once = functools.partial(self._claim_once, claim, idem, team_id)
            result = self._idempotent(lookup, idem, once, HandOut.stored)
        else:
            batch = functools.partial(self._claim_batch, claim, claim.count, idem, team_id)
            result = self._idempotent(lookup, idem, batch, Batch.stored)
        count_claim(result.found)
        return result

    def _candidates(self, claim: Claim, team_id: int | None) -> list[int]:
        """The studies a claim may take from, fairest first (the worker is recorded too)."""

        def work(conn: Connection) -> list[int]:
            found = repo.claim_candidates(
                conn, claim.study_ids, claim.tasks, _CLAIM_CANDIDATES, team_id=team_id
            )
            self._handouts.touch_worker(conn, claim.worker_id, claim.tasks, team_id=team_id)
            return found

        return self._uow.transaction(work)

    def _claim_batch(
        self, claim: Claim, count: int, idem: IdempotencyKey | None, team_id: int | None
    ) -> Batch:
        """Up to ``count`` trials from the candidate studies in one transaction, spread across
        them (one from each in fairness order, then round again over those that gave one).

        The first study's locks are awaited; the others are taken only when free at once (a
        study another hand-out holds is skipped), so two batch claims never wait on each other
        in a cycle. Every view stays locked until the transaction has committed."""
        study_ids = self._candidates(claim, team_id)

        def work() -> Batch:
            with contextlib.ExitStack() as held:
                first = _first_lockable(held, self._views, study_ids)
                if first is None:
                    return Batch([])
                with self._uow.begin() as conn:
                    batch = self._spread(conn, held, first, study_ids, claim, count)
                    if idem is not None and batch.found:
                        body = batch.body().model_dump(mode="json")
                        idempotency.record(conn, idem, 200, body)
            for trial in batch.trials:
                self._index.remember(trial.id, trial.study_id)
            return batch

        return self._uow.run(work) if study_ids else Batch([])

    def _spread(
        self,
        conn: Connection,
        held: contextlib.ExitStack,
        first: StudyView,
        study_ids: Sequence[int],
        claim: Claim,
        count: int,
    ) -> Batch:
        leased: list[LeasedTrialOut] = []
        giving: list[StudyView] = []  # the studies that gave a trial in the first round
        for study_id in study_ids[study_ids.index(first.study_id) :]:
            if len(leased) == count:
                break
            view = first if study_id == first.study_id else None
            if view is None:
                view = held.enter_context(self._views.try_locked(study_id))
                if view is None or not view_repo.try_lock_study_for_ask(conn, study_id):
                    continue
            got = self._take(conn, view, claim, 1)
            if got:
                leased.extend(got)
                giving.append(view)
        while len(leased) < count and giving:
            for view in list(giving):
                got = self._take(conn, view, claim, 1)
                if not got:
                    giving.remove(view)
                leased.extend(got)
                if len(leased) == count:
                    break
        return Batch(leased)

    def _take(
        self, conn: Connection, view: StudyView, claim: Claim, count: int
    ) -> list[LeasedTrialOut]:
        """Up to ``count`` trials of a locked study; none when it has none or was deleted."""
        try:
            return self._handouts.hand_out_many(
                conn, view, claim.worker_id, count, touch=False, device=claim.device
            ).trials
        except NotFound:
            return []

    def _claim_once(
        self, claim: Claim, idem: IdempotencyKey | None, team_id: int | None
    ) -> HandOut:
        for study_id in self._candidates(claim, team_id):
            try:
                # The worker was recorded (for its team) with the candidate query.
                hand_out = functools.partial(
                    self._hand_out,
                    study_id,
                    claim.worker_id,
                    idem,
                    touch=False,
                    device=claim.device,
                )
                leased = self._uow.run(hand_out)
                return HandOut(leased)
            except (NotFound, NoTrial):  # deleted, or taken by others since the candidate query
                continue
        return HandOut(None)

    def _finish(self, trial_id: int, token: str, finish: Finish) -> tuple[TrialOut, bool]:
        """Finish the trial, or recognise a repetition; (the finished trial, repeated?)."""
        with self._uow.begin() as conn:
            row = finish.run(conn, trial_id, token)
            replayed = row is None
            if row is not None:
                self._pause_if_failing(conn, row)
            else:
                check_replay(conn, trial_id, token, finish)
                row = repo.get_trial(conn, trial_id)
        assert row is not None
        return to_trial_out(row, intermediate=True), replayed

    def _finish_and_hand_out(
        self,
        study_id: int,
        trial_id: int,
        token: str,
        finish: Finish,
        worker_id: str,
        device: Device,
    ) -> Completed | None:
        """Finish the trial and lease the next one in one transaction; None, with nothing done,
        when the finish changed nothing. The hand-out runs under a savepoint set in the ask
        lock's round trip: if it fails, the finish still commits, and the error is raised."""
        idem = next_key(study_id, token, worker_id)
        failure: Exception | None = None
        with self._views.locked(study_id) as view:
            with self._uow.begin() as conn:
                row = finish.run(conn, trial_id, token)
                if row is None:
                    return None
                self._pause_if_failing(conn, row)
                try:
                    following = HandOut(
                        self._handouts.hand_out(
                            conn, view, worker_id, idem, savepoint=_SAVEPOINT, device=device
                        )
                    )
                except NoTrial as none:
                    following = HandOut(None, none.reason)
                except Exception as exc:  # the sampler or a statement of the hand-out failed
                    conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                    failure = exc
            if failure is not None:
                view.dirty = True  # the view may hold part of the failed hand-out: rebuild it
                raise failure
        if following.trial is not None:
            self._index.remember(following.trial.id, study_id)
        return Completed(to_trial_out(row, intermediate=True), following)

    def _pause_if_failing(self, conn: Connection, finished: TrialRow) -> None:
        """A failed trial may be the ``fail_fast_trials``-th failure of a study in which nothing
        else finished, all for one reason: then the study is paused with that reason (its
        budget would only be burnt on the same failure)."""
        if finished.state == "FAIL" and self._fail_fast_trials > 0:
            study_repo.pause_if_all_failed(conn, finished.study_id, self._fail_fast_trials)

    def _idempotent(
        self,
        lookup: IdempotencyKey | None,
        idem: IdempotencyKey | None,
        run: Callable[[], _Answer],
        parse: Callable[[Any], _Answer],
    ) -> _Answer:
        """Replay the answer stored under ``lookup`` if any (``parse`` reads it back), else
        ``run`` (which records its answer under ``idem``); a concurrent duplicate gets the
        answer that won."""
        if lookup is not None:
            stored = self._stored(lookup)
            if stored is not None:
                return parse(stored)
        try:
            return run()
        except KeyRace:
            assert idem is not None
            return parse(self._stored(idem))

    def _stored(self, idem: IdempotencyKey) -> Any:
        with self._uow.read() as conn:
            stored = idempotency.find(conn, idem)
        return None if stored is None else stored.body


def _first_lockable(
    held: contextlib.ExitStack, views: StudyViews, study_ids: Sequence[int]
) -> StudyView | None:
    """Lock (waiting) the view of the first candidate that still exists; None if none does."""
    for study_id in study_ids:
        try:
            return held.enter_context(views.locked(study_id))
        except NotFound:
            continue
    return None


def _check_budget(conn: Connection, study_id: int) -> None:
    """Refuse a new queued trial when started plus waiting trials already fill ``max_trials``."""
    state = view_repo.read_study_state(conn, study_id)
    if state.gpu_spent:
        raise StateConflict(
            f"the study's budget of {state.max_gpu_hours:g} GPU-hours is used; raise"
            " max_gpu_hours first"
        )
    if state.max_trials is None:
        return
    pending = repo.count_unstarted_queued(conn, study_id)
    if state.n_started + pending >= state.max_trials:
        raise StateConflict(
            f"the study's budget of {state.max_trials} trials is already spoken for "
            f"({state.n_started} started, {pending} waiting); raise max_trials first"
        )
