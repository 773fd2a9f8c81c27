"""The rules of trials: hand-out, leases, reports with pruning, completion, reads.

Every public method is one use case and one transaction, committed before it returns.
Hand-outs (ask, claim, enqueue) on a study are serialised across processes by the study's
advisory lock and decided on the study's in-memory view (``service.sampling``).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine

from service import idempotency
from service.errors import InvalidInput, LeaseLost, NotFound, StateConflict, TrialFinished
from service.idempotency import IdempotencyKey, KeyRace
from service.pagination import DEFAULT_LIMIT, Page, decode_cursor, encode_cursor
from service.sampling import repository as view_repo
from service.sampling.registry import StudyViews
from service.sampling.rows import decode_attrs
from service.sampling.view import PROVISIONAL, Handout, NoHandout, NoTrialReason, StudyView
from service.spec import check_params
from service.studies.repository import OPTUNA_STATE
from service.trials import repository as repo
from service.trials.read_model import to_trial_out
from service.trials.schemas import BestOut, LeasedTrialOut, LeaseOut, TrialOut

_FINISHED = {"COMPLETE", "PRUNED", "FAIL"}


class NoTrial(Exception):
    """Internal: the study has no trial to hand out now (``reason`` says why)."""

    def __init__(self, reason: NoTrialReason) -> None:
        super().__init__(reason)
        self.reason: NoTrialReason = reason


@dataclass(frozen=True)
class HandOut:
    """The result of ask/claim: a leased trial, or why there is none."""

    trial: LeasedTrialOut | None
    reason: NoTrialReason | None = None


_CLAIM_CANDIDATES = 8
_WORKER_TOUCH_S = 10.0


class TrialService:
    def __init__(self, engine: Engine, views: StudyViews) -> None:
        self._engine = engine
        self._views = views
        self._study_of: OrderedDict[int, int] = OrderedDict()  # trial id → study id (immutable)
        self._study_of_lock = threading.Lock()
        self._worker_seen: dict[str, float] = {}  # worker id → when hpo_workers was last updated

    # ---- hand-out ----

    def ask(
        self,
        study_id: int,
        worker_id: str,
        idem: IdempotencyKey | None = None,
        *,
        maybe_replay: bool = True,
    ) -> HandOut:
        """Lease the study's next trial to ``worker_id``, or say why there is none now.

        With ``idem``, a repeated request gets the first answer; ``maybe_replay=False`` skips
        looking for one when the caller knows the key is new.
        """

        def run() -> HandOut:
            try:
                return HandOut(self._hand_out(study_id, worker_id, idem))
            except NoTrial as none:
                return HandOut(None, none.reason)

        return self._idempotent(idem if maybe_replay else None, run, idem)

    def claim(
        self,
        worker_id: str,
        study_ids: Sequence[int] | None,
        tasks: Sequence[str] | None,
        idem: IdempotencyKey | None = None,
    ) -> HandOut:
        """One attempt to lease a trial from any eligible study, least recently served first."""
        return self._idempotent(
            idem, lambda: self._claim_once(worker_id, study_ids, tasks, idem), idem
        )

    def _claim_once(
        self,
        worker_id: str,
        study_ids: Sequence[int] | None,
        tasks: Sequence[str] | None,
        idem: IdempotencyKey | None,
    ) -> HandOut:
        with self._engine.begin() as conn:
            candidates = repo.claim_candidates(conn, study_ids, tasks, _CLAIM_CANDIDATES)
            self._touch_worker(conn, worker_id, tasks)
        for study_id in candidates:
            try:
                return HandOut(self._hand_out(study_id, worker_id, idem))
            except (NotFound, NoTrial):  # deleted, or taken by others since the candidate query
                continue
        return HandOut(None)

    def _idempotent(
        self,
        lookup: IdempotencyKey | None,
        run: Callable[[], HandOut],
        idem: IdempotencyKey | None,
    ) -> HandOut:
        """Replay the answer stored under ``lookup`` if any, else ``run`` (which records its
        answer under ``idem``); a concurrent duplicate gets the answer that won."""
        if lookup is not None:
            stored = self._stored(lookup)
            if stored is not None:
                return HandOut(stored)
        try:
            return run()
        except KeyRace:
            assert idem is not None
            return HandOut(self._stored(idem))

    def _stored(self, idem: IdempotencyKey) -> LeasedTrialOut | None:
        with self._engine.connect() as conn:
            stored = idempotency.find(conn, idem)
        return None if stored is None else LeasedTrialOut.model_validate(stored.body)

    def _hand_out(
        self, study_id: int, worker_id: str, idem: IdempotencyKey | None
    ) -> LeasedTrialOut:
        """Lease a trial of the study; raises NoTrial (nothing to give) or NotFound."""
        token = secrets.token_urlsafe(24)
        with self._views.locked(study_id) as view, self._engine.begin() as conn:
            view_repo.lock_study_for_ask(conn, study_id)
            state, changed = view_repo.read_state_and_changes(conn, study_id, view.cursor)
            view.storage.replace_system_attrs(decode_attrs(state.system_attrs))
            view.apply_changes(changed, state.xmin)
            handout = view.next_handout(state)
            if isinstance(handout, NoHandout):
                raise NoTrial(handout.reason)
            view.dirty = True
            lease = self._lease(conn, view, handout, state, token, worker_id)
            self._touch_worker(conn, worker_id, None)
            leased = LeasedTrialOut(
                id=lease.trial_id,
                study_id=study_id,
                number=lease.number,
                attempt=lease.attempt,
                params=dict(lease_params(view, lease.trial_id, lease.params)),
                task=view.definition.task,
                lease=LeaseOut(
                    token=token,
                    expires_at=lease.expires_at,
                    heartbeat_seconds=heartbeat_interval(state.lease_seconds),
                ),
            )
            if idem is not None:
                idempotency.record(conn, idem, 200, leased.model_dump(mode="json"))
        self._remember(lease.trial_id, study_id)
        return leased

    def _lease(
        self,
        conn: Connection,
        view: StudyView,
        handout: Handout,
        state: view_repo.StudyState,
        token: str,
        worker_id: str,
    ) -> _Lease:
        if handout.kind == "new":
            sampled = view.sample()
            new = repo.insert_leased_trial(
                conn,
                study_id=view.study_id,
                number=sampled.number,
                params=sampled.params,
                distributions=sampled.distributions,
                system_attrs=sampled.journal.trial_system_attrs.pop(PROVISIONAL, {}),
                token=token,
                worker_id=worker_id,
                lease_seconds=state.lease_seconds,
            )
            repo.upsert_trial_attrs(
                conn, new.trial_id, sampled.journal.trial_user_attrs.pop(PROVISIONAL, {})
            )
            self._flush_journal(conn, view.study_id, sampled.journal)
            return _Lease(new.trial_id, new.number, new.attempt, new.expires_at, sampled.params)
        assert handout.trial_id is not None
        trial_id = handout.trial_id
        before = dict(view.storage.get_trial(trial_id).params)
        new_params: dict[str, Any] = {}
        distributions = view.distributions
        system_attrs: dict[str, Any] = {}
        journal = None
        if handout.needs_sampling:
            sampled = view.sample(trial_id)
            new_params = {k: v for k, v in sampled.params.items() if k not in before}
            distributions = sampled.distributions
            journal = sampled.journal
            system_attrs = journal.trial_system_attrs.pop(trial_id, {})
        queued = repo.lease_queued_trial(
            conn,
            study_id=view.study_id,
            trial_id=trial_id,
            new_params=new_params,
            distributions=distributions,
            system_attrs=system_attrs,
            token=token,
            worker_id=worker_id,
            lease_seconds=state.lease_seconds,
        )
        assert queued is not None, "the ask lock guarantees the queued trial is still queued"
        if journal is not None:
            self._flush_journal(conn, view.study_id, journal)
        return _Lease(
            queued.trial_id,
            queued.number,
            queued.attempt,
            queued.expires_at,
            {**before, **new_params},
        )

    @staticmethod
    def _flush_journal(conn: Connection, study_id: int, journal: Any) -> None:
        repo.upsert_study_system_attrs(conn, study_id, journal.study_system_attrs)
        for trial_id, attrs in journal.trial_system_attrs.items():
            repo.upsert_trial_attrs(conn, trial_id, attrs, system=True)
        for trial_id, attrs in journal.trial_user_attrs.items():
            repo.upsert_trial_attrs(conn, trial_id, attrs)

    def enqueue(
        self, study_id: int, params: Mapping[str, Any], user_attrs: Mapping[str, Any]
    ) -> TrialOut:
        """Queue a configuration (some or all parameters fixed) ahead of new samples."""
        with self._views.locked(study_id) as view, self._engine.begin() as conn:
            fixed = check_params(view.definition.search_space, params, partial=True)
            view_repo.lock_study_for_ask(conn, study_id)
            state = view_repo.read_study_state(conn, study_id)
            if state.max_trials is not None:
                pending = repo.count_unstarted_queued(conn, study_id)
                if state.n_started + pending >= state.max_trials:
                    raise StateConflict(
                        f"the study's budget of {state.max_trials} trials is already spoken for "
                        f"({state.n_started} started, {pending} waiting); raise max_trials first"
                    )
            trial_id = repo.enqueue_trial(conn, study_id, fixed, user_attrs)
            row = repo.get_trial(conn, trial_id)
        assert row is not None
        self._remember(trial_id, study_id)
        return to_trial_out(row, intermediate=False)

    # ---- leases ----

    def heartbeat(self, trial_id: int, token: str) -> tuple[Any, bool]:
        """Extend the lease; returns (new expiry, should_stop)."""
        with self._engine.begin() as conn:
            result = repo.heartbeat(conn, trial_id, token)
            if result is None:
                self._raise_for_lease(conn, trial_id, token)
        assert result is not None
        expires_at, study_state = result
        return expires_at, study_state == "stopped"

    def report(self, trial_id: int, token: str, step: int, value: float) -> tuple[bool, bool]:
        """Store an intermediate value and ask the study's pruner; (should_prune, should_stop).

        Reporting a step again keeps the first value and answers the same question again.
        """
        study_id = self._study_id_of(trial_id)
        with self._views.locked(study_id) as view:
            if len(view.definition.directions) > 1:
                raise InvalidInput(
                    "intermediate values cannot be reported for a multi-objective study "
                    "(Optuna prunes single-objective studies only)"
                )
            with self._engine.begin() as conn:
                reported = repo.report(conn, trial_id, token, step, value, view.cursor)
                if reported is None:
                    self._raise_for_lease(conn, trial_id, token)
                assert reported is not None
                view.dirty = True
                view.apply_changes(reported.changed, reported.horizon)
                if reported.inserted:
                    view.add_intermediate_value(trial_id, step, value)
                prune, journal = view.should_prune(trial_id)
                self._flush_journal(conn, study_id, journal)
        return prune, reported.study_state == "stopped"

    def set_attrs(self, trial_id: int, token: str, attrs: Mapping[str, Any]) -> None:
        with self._engine.begin() as conn:
            if repo.heartbeat(conn, trial_id, token) is None:
                self._raise_for_lease(conn, trial_id, token)
            repo.upsert_trial_attrs(conn, trial_id, attrs)
            repo.touch_trial(conn, trial_id)

    def complete(
        self,
        trial_id: int,
        token: str,
        state: str,
        values: Sequence[float] | None,
        reason: str | None,
        user_attrs: Mapping[str, Any],
    ) -> tuple[TrialOut, bool]:
        """Finish the trial. Repeating it with the same token returns the same trial.

        Returns the finished trial and whether this call was such a repetition.
        """
        optuna_state = OPTUNA_STATE[state if state != "failed" else "failed"]
        with self._engine.begin() as conn:
            row = repo.finish(
                conn,
                trial_id=trial_id,
                token=token,
                state=optuna_state,
                values=values,
                fail_reason=reason if state == "failed" else None,
                user_attrs=user_attrs,
            )
            replayed = row is None
            if replayed:
                self._check_replay(conn, trial_id, token, state, values)
                row = repo.get_trial(conn, trial_id)
        assert row is not None
        return to_trial_out(row, intermediate=True), replayed

    def complete_and_ask(
        self, finished: TrialOut, token: str, worker_id: str, replayed: bool
    ) -> tuple[LeasedTrialOut | None, NoTrialReason | None]:
        """Ask the finished trial's study for the next trial. Keyed by the finishing token, so a
        repeated complete gets the same next trial instead of a second one."""
        idem = IdempotencyKey.of(f"complete-next {finished.study_id}", token, worker_id)
        result = self.ask(finished.study_id, worker_id, idem, maybe_replay=replayed)
        return result.trial, result.reason

    def release(self, trial_id: int, token: str) -> None:
        """Hand the lease back: the trial waits in the queue again, no retry used up."""
        with self._engine.begin() as conn:
            if repo.release(conn, trial_id, token) is None:
                self._raise_for_lease(conn, trial_id, token)

    def _check_replay(
        self,
        conn: Connection,
        trial_id: int,
        token: str,
        state: str,
        values: Sequence[float] | None,
    ) -> None:
        lease = repo.lease_state(conn, trial_id)
        if lease is None:
            raise NotFound(f"trial {trial_id} does not exist")
        if lease.finish_token == token and lease.trial_state in _FINISHED:
            return  # the same completion again: answer with the finished trial
        if lease.lease_token == token and lease.lease_live and state == "complete":
            n = len(values or ())
            raise InvalidInput(
                f"the study has {lease.directions} objective(s) but {n} value(s) were given",
                {"expected": lease.directions, "got": n},
            )
        self._raise_for_lease(conn, trial_id, token)

    def _raise_for_lease(self, conn: Connection, trial_id: int, token: str) -> None:
        lease = repo.lease_state(conn, trial_id)
        if lease is None:
            raise NotFound(f"trial {trial_id} does not exist")
        if lease.trial_state in _FINISHED and lease.finish_token == token:
            raise TrialFinished(f"trial {trial_id} is already finished")
        raise LeaseLost(
            f"the lease on trial {trial_id} is no longer held by this token "
            "(expired, handed to another worker, or the trial finished)",
            {"trial_id": trial_id, "state": lease.trial_state.lower()},
        )

    # ---- reads ----

    def get(self, trial_id: int) -> TrialOut:
        with self._engine.connect() as conn:
            row = repo.get_trial(conn, trial_id)
        if row is None:
            raise NotFound(f"trial {trial_id} does not exist")
        return to_trial_out(row, intermediate=True)

    def list(
        self,
        study_id: int,
        *,
        states: Sequence[str] | None,
        sort: str,
        cursor: str | None,
        limit: int = DEFAULT_LIMIT,
        intermediate: bool = False,
    ) -> Page[TrialOut]:
        kind = f"trials:{study_id}:{sort}:{','.join(sorted(states or []))}"
        after = decode_cursor(cursor, kind)
        with self._engine.connect() as conn:
            _require_study(conn, study_id)
            rows = repo.list_trials(
                conn,
                study_id=study_id,
                states=[OPTUNA_STATE[s] for s in states] if states else None,
                sort=sort,
                after=after,
                limit=limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more:
            last = rows[-1]
            key: Any = last["number"]
            if sort.lstrip("-") != "number":
                key = [last["sort_value"], last["number"]]
            next_cursor = encode_cursor(kind, key)
        items = [to_trial_out(r, intermediate=intermediate) for r in rows]
        return Page[TrialOut](items=items, next_cursor=next_cursor)

    def best(self, study_id: int) -> BestOut:
        with self._engine.connect() as conn:
            directions = _require_study(conn, study_id)
            if len(directions) == 1:
                best_id = repo.best_trial_id(conn, study_id, directions[0] == "maximize")
                rows = [] if best_id is None else repo.get_trials(conn, [best_id])
                return BestOut(best=to_trial_out(rows[0], intermediate=False) if rows else None)
            front = pareto_front(repo.complete_values(conn, study_id), directions)
            rows = repo.get_trials(conn, front)
        return BestOut(pareto_front=[to_trial_out(r, intermediate=False) for r in rows])

    # ---- helpers ----

    def _touch_worker(self, conn: Connection, worker_id: str, tasks: Sequence[str] | None) -> None:
        """Record that a worker asked; at most once per worker and interval per process."""
        now = time.monotonic()
        if now - self._worker_seen.get(worker_id, -_WORKER_TOUCH_S) < _WORKER_TOUCH_S:
            return
        repo.touch_worker(conn, worker_id, tasks)
        self._worker_seen[worker_id] = now
        if len(self._worker_seen) > 100_000:
            self._worker_seen.clear()

    def _study_id_of(self, trial_id: int) -> int:
        with self._study_of_lock:
            study_id = self._study_of.get(trial_id)
        if study_id is None:
            with self._engine.connect() as conn:
                study_id = repo.study_of_trial(conn, trial_id)
            if study_id is None:
                raise NotFound(f"trial {trial_id} does not exist")
            self._remember(trial_id, study_id)
        return study_id

    def _remember(self, trial_id: int, study_id: int) -> None:
        with self._study_of_lock:
            self._study_of[trial_id] = study_id
            self._study_of.move_to_end(trial_id)
            while len(self._study_of) > 100_000:
                self._study_of.popitem(last=False)


class _Lease:
    __slots__ = ("attempt", "expires_at", "number", "params", "trial_id")

    def __init__(
        self, trial_id: int, number: int, attempt: int, expires_at: Any, params: dict[str, Any]
    ) -> None:
        self.trial_id = trial_id
        self.number = number
        self.attempt = attempt
        self.expires_at = expires_at
        self.params = params


def lease_params(view: StudyView, trial_id: int, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Parameters in the order of the study's search space."""
    return {name: params[name] for name in view.distributions if name in params}


def heartbeat_interval(lease_seconds: int) -> int:
    """Workers heartbeat four times per lease, so one lost heartbeat never costs the lease."""
    return max(1, lease_seconds // 4)


def _require_study(conn: Connection, study_id: int) -> list[str]:
    directions = repo.study_directions(conn, study_id)
    if not directions:
        raise NotFound(f"study {study_id} does not exist")
    return directions


def pareto_front(trials: Sequence[tuple[int, list[float]]], directions: Sequence[str]) -> list[int]:
    """Ids of the non-dominated trials (every objective turned into one to minimise)."""
    if not trials:
        return []
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    points = np.array([values for _, values in trials], dtype=float) * signs
    front = []
    for i, point in enumerate(points):
        dominated = np.any(np.all(points <= point, axis=1) & np.any(points < point, axis=1))
        if not dominated:
            front.append(trials[i][0])
    return front
