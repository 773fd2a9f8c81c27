"""Handing out one trial: the rules and statements, on the caller's transaction and locked view.

A hand-out is decided on the study's in-memory view (``service.sampling``), refreshed in the
same round trip that takes the study's ask lock: a paused trial the ``asha`` pruner promotes
first (``service.sampling.asha``), then a queued trial (a retry, or one a user enqueued), else
a newly sampled one, unless the study is paused or stopped, at
``max_parallel``, or out of budget (trials, asha's resource units, or GPU-hours: see
``service.usage``). Every lease starts an attempt on the device the worker said
(:class:`Device`). With an ``Idempotency-Key`` the answer is stored in the same
transaction, so a retried request gets the same trial instead of a second one.

:class:`~service.trials.service.TrialService` owns the transactions and the view locks; nothing
here commits.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection

from service import idempotency
from service.checkpoints.store import CheckpointStore
from service.idempotency import IdempotencyKey
from service.sampling import repository as view_repo
from service.sampling.rows import decode_attrs
from service.sampling.view import PROVISIONAL, Handout, NoHandout, NoTrialReason, StudyView
from service.trials import repository as repo
from service.trials.exploit import replace
from service.trials.schemas import LeasedTrialOut, LeasedTrialsOut, LeaseOut

_WORKER_TOUCH_S = 10.0
_WORKER_SEEN_MAX = 100_000


class NoTrial(Exception):
    """The study has no trial to hand out now (``reason`` says why)."""

    def __init__(self, reason: NoTrialReason) -> None:
        super().__init__(reason)
        self.reason: NoTrialReason = reason


@dataclass(frozen=True)
class HandOut:
    """The result of ask/claim: a leased trial, or why there is none."""

    trial: LeasedTrialOut | None
    reason: NoTrialReason | None = None

    @property
    def found(self) -> bool:
        return self.trial is not None

    @classmethod
    def stored(cls, body: Any) -> HandOut:
        return cls(LeasedTrialOut.model_validate(body))


@dataclass(frozen=True)
class Batch:
    """The result of ask/claim with ``count``: the trials leased (each under its own lease),
    and why there are fewer than asked for when the study said why."""

    trials: list[LeasedTrialOut]
    reason: NoTrialReason | None = None

    @property
    def found(self) -> bool:
        return bool(self.trials)

    def body(self) -> LeasedTrialsOut:
        return LeasedTrialsOut(trials=self.trials, no_trial_reason=self.reason)

    @classmethod
    def stored(cls, body: Any) -> Batch:
        out = LeasedTrialsOut.model_validate(body)
        return cls(out.trials, cast(NoTrialReason | None, out.no_trial_reason))


@dataclass(frozen=True)
class Device:
    """The device a worker runs an attempt on, as it said in its claim or ask: ``name`` (e.g.
    ``cuda:0``, ``cpu``; None when it said nothing) and the GPUs it holds, whose wall time
    counts against ``max_gpu_hours``."""

    name: str | None = None
    gpus: int = 0

    @classmethod
    def of(cls, name: str | None, gpus: int | None) -> Device:
        """``gpus`` as given, else one for a ``cuda`` device (one worker slot is one GPU) and
        none for anything else (a CPU, or a device not said)."""
        if gpus is None:
            gpus = 1 if name is not None and name.split(":")[0] == "cuda" else 0
        return cls(name, gpus)


NO_DEVICE = Device()


@dataclass(frozen=True)
class _Leased:
    trial_id: int
    number: int
    attempt: int
    expires_at: dt.datetime
    params: dict[str, Any]


class Handouts:
    """Leases trials on locked views. Thread-safe: the per-view work runs under the view's lock,
    and the worker sightings are a best-effort cache."""

    def __init__(self, checkpoints: CheckpointStore) -> None:
        self._worker_seen: dict[tuple[str, int | None, int | None], float] = {}  # → last touch
        self._checkpoints = checkpoints  # pbt: a child gets a copy of its parent's checkpoint

    def hand_out(
        self,
        conn: Connection,
        view: StudyView,
        worker_id: str,
        idem: IdempotencyKey | None,
        *,
        savepoint: str | None = None,
        touch: bool = True,
        device: Device = NO_DEVICE,
    ) -> LeasedTrialOut:
        """Lease the study's next trial to ``worker_id`` on ``conn``; raises :class:`NoTrial`,
        or ``NotFound`` for a deleted study. With ``savepoint``, that savepoint is set first
        (in the same round trip as the ask lock). ``touch=False``: the caller recorded the
        worker already. The attempt starts on ``device``."""
        study_id = view.study_id
        token = secrets.token_urlsafe(24)
        state, changed = view_repo.lock_and_read(conn, study_id, view.cursor, savepoint=savepoint)
        view.storage.replace_system_attrs(decode_attrs(state.system_attrs))
        view.apply_changes(changed, state.xmin)
        view.gpu_budget = state.max_gpu_hours is not None
        handout = view.next_handout(state)
        while _pbt_resume(handout, view):
            assert isinstance(handout, Handout) and handout.trial_id is not None
            assert handout.resume_from_step is not None
            # A paused pbt member is resumed only if it is not in the bottom of its step, now
            # that every member got there; else a child replaces it, handed out next.
            exploit = view.pbt_exploit(handout.trial_id, handout.resume_from_step - 1)
            if exploit is None or replace(conn, view, state, exploit, self._checkpoints) is None:
                break
            repo.finish_paused(conn, study_id, [exploit.trial_id], reason="replaced")
            state, changed = view_repo.lock_and_read(conn, study_id, view.cursor)
            view.apply_changes(changed, state.xmin)
            handout = view.next_handout(state)
        if isinstance(handout, NoHandout):
            raise NoTrial(handout.reason)
        view.dirty = True
        if handout.kind == "new":
            leased = _lease_new(conn, view, handout, state, token, worker_id, device)
        elif handout.kind == "promoted":
            leased = _lease_promoted(conn, view, handout, state, token, worker_id, device)
        else:
            leased = _lease_queued(conn, view, handout, state, token, worker_id, device)
        if touch:
            self.touch_worker(conn, worker_id, None, study_id=study_id)
        out = LeasedTrialOut(
            id=leased.trial_id,
            study_id=study_id,
            number=leased.number,
            attempt=leased.attempt,
            params={n: leased.params[n] for n in view.distributions if n in leased.params}
            | {n: v for n, v in leased.params.items() if n not in view.distributions},
            task=view.definition.task,
            lease=LeaseOut(
                token=token,
                expires_at=leased.expires_at,
                heartbeat_seconds=heartbeat_interval(state.lease_seconds),
                lease_seconds=state.lease_seconds,
            ),
            resume_from_step=handout.resume_from_step,
        )
        if leased.trial_id in view.lineage:
            out.parent_trial_id, out.started_from_step = view.lineage[leased.trial_id]
        if idem is not None:
            idempotency.record(conn, idem, 200, out.model_dump(mode="json"))
        return out

    def hand_out_many(
        self,
        conn: Connection,
        view: StudyView,
        worker_id: str,
        count: int,
        *,
        touch: bool = True,
        device: Device = NO_DEVICE,
    ) -> Batch:
        """Lease up to ``count`` trials of the study, one after the other on ``conn``: each
        hand-out re-reads the study under its ask lock, so it counts the ones before it against
        ``max_parallel`` and the budget, and the sampler sees them as running trials (TPE's
        constant liar, GP's pending points). Nothing is recorded under an idempotency key."""
        leased: list[LeasedTrialOut] = []
        for i in range(count):
            try:
                first = touch and i == 0
                leased.append(
                    self.hand_out(conn, view, worker_id, None, touch=first, device=device)
                )
            except NoTrial as none:
                return Batch(leased, none.reason)
        return Batch(leased)

    def touch_worker(
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
        if len(self._worker_seen) > _WORKER_SEEN_MAX:
            self._worker_seen.clear()


def _lease_new(
    conn: Connection,
    view: StudyView,
    handout: Handout,
    state: view_repo.StudyState,
    token: str,
    worker_id: str,
    device: Device,
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
        granted=handout.granted,
        device=device.name,
        gpus=device.gpus,
    )
    repo.upsert_trial_attrs(
        conn, new.trial_id, sampled.journal.trial_user_attrs.pop(PROVISIONAL, {})
    )
    repo.flush_journal(conn, view.study_id, sampled.journal)
    return _Leased(new.trial_id, new.number, new.attempt, new.expires_at, sampled.params)


def _lease_queued(
    conn: Connection,
    view: StudyView,
    handout: Handout,
    state: view_repo.StudyState,
    token: str,
    worker_id: str,
    device: Device,
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
        granted=handout.granted,
        device=device.name,
        gpus=device.gpus,
    )
    assert queued is not None, "the ask lock guarantees the queued trial is still queued"
    if journal is not None:
        repo.flush_journal(conn, view.study_id, journal)
    params = {**before, **new_params}
    return _Leased(queued.trial_id, queued.number, queued.attempt, queued.expires_at, params)


def _lease_promoted(
    conn: Connection,
    view: StudyView,
    handout: Handout,
    state: view_repo.StudyState,
    token: str,
    worker_id: str,
    device: Device,
) -> _Leased:
    """A paused trial promoted (``asha``) or resumed (``pbt``): the same trial, its parameters
    and attempt kept."""
    assert handout.trial_id is not None and handout.resume_from_step is not None
    promoted = repo.lease_paused_trial(
        conn,
        study_id=view.study_id,
        trial_id=handout.trial_id,
        resume_from_step=handout.resume_from_step,
        granted=handout.granted,
        token=token,
        worker_id=worker_id,
        lease_seconds=state.lease_seconds,
        device=device.name,
        gpus=device.gpus,
    )
    assert promoted is not None, "the ask lock guarantees the paused trial is still paused"
    params = dict(view.storage.get_trial(handout.trial_id).params)
    return _Leased(
        promoted.trial_id, promoted.number, promoted.attempt, promoted.expires_at, params
    )


def _pbt_resume(handout: Handout | NoHandout, view: StudyView) -> bool:
    return isinstance(handout, Handout) and handout.kind == "promoted" and view.pbt is not None


def next_key(study_id: int, token: str, worker_id: str) -> IdempotencyKey:
    """The key of "the next trial after the one finished with ``token``"."""
    return IdempotencyKey.of(f"complete-next {study_id}", token, worker_id)


def heartbeat_interval(lease_seconds: int) -> int:
    """Workers heartbeat four times per lease, so one lost heartbeat never costs the lease."""
    return max(1, lease_seconds // 4)
