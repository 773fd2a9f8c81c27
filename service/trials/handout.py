"""Handing out trials: ask (one study), claim (any eligible study), enqueue.

Every hand-out is one transaction under the study's advisory lock, decided on the study's
in-memory view (``service.sampling``): a queued trial first (a retry, or one a user enqueued),
else a newly sampled one, unless the study is paused or stopped, at ``max_parallel``, or out
of budget. With an ``Idempotency-Key`` the answer is stored in the same transaction, so a
retried request gets the same trial instead of a second one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from service import idempotency
from service.errors import NotFound, StateConflict
from service.idempotency import IdempotencyKey, KeyRace
from service.observability.metrics import count_claim
from service.sampling import repository as view_repo
from service.sampling.registry import StudyViews
from service.sampling.rows import decode_attrs
from service.sampling.view import PROVISIONAL, Handout, NoHandout, NoTrialReason, StudyView
from service.spec import check_params
from service.trials import repository as repo
from service.trials.index import TrialStudyIndex
from service.trials.read_model import to_trial_out
from service.trials.schemas import LeasedTrialOut, LeaseOut, TrialOut

_CLAIM_CANDIDATES = 8
_SAVEPOINT = "hpo_next_trial"
_T = TypeVar("_T")
_WORKER_TOUCH_S = 10.0


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


@dataclass(frozen=True)
class _Leased:
    trial_id: int
    number: int
    attempt: int
    expires_at: Any
    params: dict[str, Any]


class HandoutService:
    def __init__(self, engine: Engine, views: StudyViews, index: TrialStudyIndex) -> None:
        self._engine = engine
        self._views = views
        self._index = index
        self._worker_seen: dict[tuple[str, int | None, int | None], float] = {}  # → last touch

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

    def ask_next(self, finished: TrialOut, token: str, worker_id: str, replayed: bool) -> HandOut:
        """The study's next trial right after ``finished`` completed. Keyed by the finishing
        token, so a repeated complete gets the same next trial instead of a second one."""
        idem = _next_key(finished.study_id, token, worker_id)
        return self.ask(finished.study_id, worker_id, idem, maybe_replay=replayed)

    def finish_and_ask(
        self,
        study_id: int,
        finish: Callable[[Connection], _T | None],
        token: str,
        worker_id: str,
    ) -> tuple[_T, HandOut] | None:
        """``finish`` a trial of the study and lease its next trial to ``worker_id`` in one
        transaction (one commit for both); None, with nothing done, when ``finish`` changed
        nothing (a repeated complete: the caller replays it).

        The hand-out runs under a savepoint set in the ask lock's round trip: if it fails, the
        finish still commits, and the error is raised after.
        """
        idem = _next_key(study_id, token, worker_id)
        failure: Exception | None = None
        with self._views.locked(study_id) as view:
            with self._engine.begin() as conn:
                finished = finish(conn)
                if finished is None:
                    return None
                try:
                    result = HandOut(self._hand_out_on(conn, view, worker_id, idem, _SAVEPOINT))
                except NoTrial as none:
                    result = HandOut(None, none.reason)
                except Exception as exc:  # the sampler or a statement of the hand-out failed
                    conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                    failure = exc
            if failure is not None:
                view.dirty = True  # the view may hold part of the failed hand-out: rebuild it
                raise failure
        if result.trial is not None:
            self._index.remember(result.trial.id, study_id)
        return finished, result

    def claim(
        self,
        worker_id: str,
        study_ids: Sequence[int] | None,
        tasks: Sequence[str] | None,
        idem: IdempotencyKey | None = None,
        *,
        maybe_replay: bool = True,
        team_id: int | None,
    ) -> HandOut:
        """One attempt to lease a trial from any eligible study of the team (of any team for
        None), least recently served first.

        A long poll calls this repeatedly; only its first attempt can find a stored answer.
        """
        result = self._idempotent(
            idem if maybe_replay else None,
            lambda: self._claim_once(worker_id, study_ids, tasks, idem, team_id),
            idem,
        )
        count_claim(result.trial is not None)
        return result

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
        self._index.remember(trial_id, study_id)
        return to_trial_out(row, intermediate=False)

    # ---- internals ----

    def _claim_once(
        self,
        worker_id: str,
        study_ids: Sequence[int] | None,
        tasks: Sequence[str] | None,
        idem: IdempotencyKey | None,
        team_id: int | None,
    ) -> HandOut:
        with self._engine.begin() as conn:
            candidates = repo.claim_candidates(
                conn, study_ids, tasks, _CLAIM_CANDIDATES, team_id=team_id
            )
            self._touch_worker(conn, worker_id, tasks, team_id=team_id)
        for study_id in candidates:
            try:
                # The worker was recorded (for its team) with the candidate query.
                return HandOut(self._hand_out(study_id, worker_id, idem, touch=False))
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
        self, study_id: int, worker_id: str, idem: IdempotencyKey | None, *, touch: bool = True
    ) -> LeasedTrialOut:
        """Lease a trial of the study; raises NoTrial (nothing to give) or NotFound."""
        with self._views.locked(study_id) as view, self._engine.begin() as conn:
            out = self._hand_out_on(conn, view, worker_id, idem, touch=touch)
        self._index.remember(out.id, study_id)
        return out

    def _hand_out_on(
        self,
        conn: Connection,
        view: StudyView,
        worker_id: str,
        idem: IdempotencyKey | None,
        savepoint: str | None = None,
        *,
        touch: bool = True,
    ) -> LeasedTrialOut:
        """The hand-out on the caller's transaction and locked view (see ``_hand_out``)."""
        study_id = view.study_id
        token = secrets.token_urlsafe(24)
        state, changed = view_repo.lock_and_read(conn, study_id, view.cursor, savepoint=savepoint)
        view.storage.replace_system_attrs(decode_attrs(state.system_attrs))
        view.apply_changes(changed, state.xmin)
        handout = view.next_handout(state)
        if isinstance(handout, NoHandout):
            raise NoTrial(handout.reason)
        view.dirty = True
        if handout.kind == "new":
            leased = self._lease_new(conn, view, state, token, worker_id)
        else:
            leased = self._lease_queued(conn, view, handout, state, token, worker_id)
        if touch:
            self._touch_worker(conn, worker_id, None, study_id=study_id)
        out = LeasedTrialOut(
            id=leased.trial_id,
            study_id=study_id,
            number=leased.number,
            attempt=leased.attempt,
            params={n: leased.params[n] for n in view.distributions if n in leased.params},
            task=view.definition.task,
            lease=LeaseOut(
                token=token,
                expires_at=leased.expires_at,
                heartbeat_seconds=heartbeat_interval(state.lease_seconds),
                lease_seconds=state.lease_seconds,
            ),
        )
        if idem is not None:
            idempotency.record(conn, idem, 200, out.model_dump(mode="json"))
        return out

    def _lease_new(
        self,
        conn: Connection,
        view: StudyView,
        state: view_repo.StudyState,
        token: str,
        worker_id: str,
    ) -> _Leased:
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
        repo.flush_journal(conn, view.study_id, sampled.journal)
        return _Leased(new.trial_id, new.number, new.attempt, new.expires_at, sampled.params)

    def _lease_queued(
        self,
        conn: Connection,
        view: StudyView,
        handout: Handout,
        state: view_repo.StudyState,
        token: str,
        worker_id: str,
    ) -> _Leased:
        """A retry keeps its parameters; a user's enqueued trial gets the missing ones sampled
        (its ``fixed_params`` are kept, as Optuna's ``enqueue_trial`` does)."""
        assert handout.trial_id is not None
        trial_id = handout.trial_id
        before = dict(view.storage.get_trial(trial_id).params)
        new_params: dict[str, Any] = {}
        system_attrs: dict[str, Any] = {}
        journal = None
        if handout.needs_sampling:
            sampled = view.sample(trial_id)
            new_params = {k: v for k, v in sampled.params.items() if k not in before}
            journal = sampled.journal
            system_attrs = journal.trial_system_attrs.pop(trial_id, {})
        queued = repo.lease_queued_trial(
            conn,
            study_id=view.study_id,
            trial_id=trial_id,
            new_params=new_params,
            distributions=view.distributions,
            system_attrs=system_attrs,
            token=token,
            worker_id=worker_id,
            lease_seconds=state.lease_seconds,
        )
        assert queued is not None, "the ask lock guarantees the queued trial is still queued"
        if journal is not None:
            repo.flush_journal(conn, view.study_id, journal)
        params = {**before, **new_params}
        return _Leased(queued.trial_id, queued.number, queued.attempt, queued.expires_at, params)

    def _touch_worker(
        self,
        conn: Connection,
        worker_id: str,
        tasks: Sequence[str] | None,
        *,
        team_id: int | None = None,
        study_id: int | None = None,
    ) -> None:
        """Record that a worker asked (for the team, or the study's team); at most once per
        worker, team or study, and interval per process."""
        now = time.monotonic()
        seen = (worker_id, team_id, study_id)
        if now - self._worker_seen.get(seen, -_WORKER_TOUCH_S) < _WORKER_TOUCH_S:
            return
        repo.touch_worker(conn, worker_id, tasks, team_id=team_id, study_id=study_id)
        self._worker_seen[seen] = now
        if len(self._worker_seen) > 100_000:
            self._worker_seen.clear()


def _next_key(study_id: int, token: str, worker_id: str) -> IdempotencyKey:
    """The key of "the next trial after the one finished with ``token``"."""
    return IdempotencyKey.of(f"complete-next {study_id}", token, worker_id)


def heartbeat_interval(lease_seconds: int) -> int:
    """Workers heartbeat four times per lease, so one lost heartbeat never costs the lease."""
    return max(1, lease_seconds // 4)
