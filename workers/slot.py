"""One worker slot: a small state machine that runs trials one after another.

    idle ──claim──▶ running ──task ends──▶ finishing ──delivered──▶ idle
                      │                        │
                      ├─ lease lost ──────────▶ (abandoned) ──▶ idle
                      └─ stop requested ─────▶ releasing ─────▶ idle (or exit)
    idle ──no trial, idle for HPO_EXIT_WHEN_IDLE_S──▶ exit

- **claim**: long-polls ``POST /trials/claim`` for the tasks this worker has; a slot of a
  several-slot worker gets its trial from the worker's dispatcher instead, which claims for
  all its idle slots in one request (``workers.dispatch``).
- **running**: the study's task trains on the slot's device; a :class:`Heartbeat` keeps the
  lease alive beside it; reports, checkpoints and the stop check go through the context.
- **finishing**: the result is written to the spool, then delivered (retried while the lease
  can still be alive), then removed from the spool.
- **exit when idle** (``HPO_EXIT_WHEN_IDLE_S``, ``workers.idle``): once the API answers "no
  trial" to a slot that has been idle that long, the slot stops (the worker exits 0 when all
  its slots stopped).
- **releasing**: on shutdown (or a stopped study) the task has checkpointed its last epoch;
  the lease is handed back so another worker resumes the trial where it stopped.

A trial's own failures (``TaskFailed``: oom, nan, bad params or spec, unknown dataset) and
unexpected exceptions in a task complete the trial as failed; the slot goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.client import (
    ApiError,
    ConflictError,
    HPOClient,
    Lease,
    LeaseLostError,
    NotFoundError,
    NoTrial,
    Unavailable,
)
from workers.connect import Backoff, raise_if_refused, unreachable
from workers.context import HttpTrialContext, TrialAbandoned, send_reports
from workers.dispatch import SlotInbox
from workers.heartbeat import Heartbeat
from workers.idle import IdleLimit
from workers.settings import WorkerSettings
from workers.spool import PendingResult, Spool
from workers.tasks import TaskFailed, TaskResult, available_tasks, get_task
from workers.tasks.failures import check_objective

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

_LEASE_MARGIN_S = 1.0


@dataclass(frozen=True)
class Outcome:
    trial_id: int
    state: str  # complete, pruned, failed, released, abandoned


class Slot:
    def __init__(
        self,
        settings: WorkerSettings,
        index: int,
        device: torch.device,
        shutdown: threading.Event,
        client: HPOClient | None = None,
        inbox: SlotInbox | None = None,
    ) -> None:
        """``inbox``: the slot of a several-slot worker gets its trials from the worker's
        dispatcher (one claim for all idle slots) instead of claiming itself."""
        self.settings = settings
        self._inbox = inbox
        self.worker_id = f"{settings.worker_name}:{index}"
        self.device = device
        self.shutdown = shutdown
        self.client = client or HPOClient(
            settings.api_url,
            token=settings.api_token.get_secret_value() if settings.api_token else None,
            retry_for_s=settings.api_retry_s,
        )
        self.spool = Spool(Path(settings.spool_dir) / self.worker_id.replace(":", "_"))
        self.tasks = task_names(settings)
        self._backoff = Backoff()
        self._claim_key: str | None = None  # of a claim that got no answer: retried with it

    # ---- the loop ----

    def run(self) -> None:
        """Claim and run trials until shutdown is requested, or (``exit_when_idle_s``) until
        the API has answered "no trial" after the slot was idle that long; an unreachable API
        does not count as having nothing to do."""
        logger.info("%s: on %s, tasks %s", self.worker_id, self.device, ", ".join(self.tasks))
        self.deliver_pending()
        idle = IdleLimit(self.settings.exit_when_idle_s)
        while not self.shutdown.is_set():
            got = self._claim()
            if isinstance(got, NoTrial) and idle.reached():
                logger.info("%s: no trial to claim for %gs: stopping", self.worker_id, idle.limit_s)
                return
            if not isinstance(got, Lease):
                continue
            if self.shutdown.is_set():  # claimed while stopping: hand it straight back
                self._release(got)
                break
            self.run_trial(got)
            idle.restart()

    def _claim(self) -> Lease | NoTrial | None:
        """One claim: a lease, NoTrial when the API has none, None when it did not answer.
        An unreachable API is said at once and retried with a visible backoff (the slot's own,
        so Ctrl-C ends the wait) under the same Idempotency-Key; a refused token raises
        AccessRefused."""
        if self._inbox is not None:
            return self._inbox.next_lease()
        self._claim_key = self._claim_key or uuid.uuid4().hex
        try:
            got = self.client.claim(
                self.worker_id,
                study_ids=self.settings.studies,
                tasks=self.tasks,
                wait_seconds=self.settings.poll_wait_s,
                retry_for_s=0,
                idempotency_key=self._claim_key,
                device=str(self.device),  # the server counts a cuda slot's time as GPU time
            )
        except Unavailable as exc:
            unreachable(self.worker_id, self.client.base_url, exc, self._backoff, self.shutdown)
            return None
        except ApiError as exc:
            self._claim_key = None
            raise_if_refused(exc, self.settings, self.client.base_url)
            raise
        self._claim_key = None
        if self._backoff.reset():
            logger.info("%s: the API at %s answers again", self.worker_id, self.client.base_url)
        return got

    def run_trial(self, lease: Lease) -> Outcome:
        """Run one leased trial to its end (complete, pruned, failed, released, abandoned)."""
        logger.info(
            "%s: trial %d (study %d #%d, attempt %d) %s",
            self.worker_id,
            lease.trial_id,
            lease.study_id,
            lease.number,
            lease.attempt,
            lease.params,
        )
        with Heartbeat(
            self.client, lease.trial_id, lease.token, lease.heartbeat_seconds, lease.lease_seconds
        ) as hb:
            ctx = HttpTrialContext(self.client, lease, self.device, hb, self.shutdown)
            try:
                result = self._run_task(lease, ctx)
            except TrialAbandoned as exc:
                logger.warning("%s: trial %d abandoned: %s", self.worker_id, lease.trial_id, exc)
                return Outcome(lease.trial_id, "abandoned")
            except TaskFailed as failure:
                logger.warning("%s: trial %d failed: %s", self.worker_id, lease.trial_id, failure)
                body = {
                    "state": "failed",
                    "reason": failure.reason,
                    "user_attrs": {**ctx.attrs, "fail_message": failure.message[:1000]},
                }
                return self._finish(lease, body, hb, ctx)
            except Exception as exc:  # a bug in a task: the trial fails, the worker goes on
                logger.exception("%s: trial %d raised", self.worker_id, lease.trial_id)
                body = {
                    "state": "failed",
                    "reason": "error",
                    "user_attrs": {**ctx.attrs, "fail_message": _summary(exc)},
                }
                return self._finish(lease, body, hb, ctx)
        if result.state == "interrupted" and hb.lost.is_set():
            logger.warning(
                "%s: trial %d abandoned: its lease was lost", self.worker_id, lease.trial_id
            )
            return Outcome(lease.trial_id, "abandoned")
        if result.state == "interrupted":
            self._flush_reports(lease, ctx)
            self._send_attrs(lease, ctx.attrs)
            return self._release(lease)
        if result.state == "pruned":
            return self._finish(lease, {"state": "pruned", "user_attrs": ctx.attrs}, hb, ctx)
        assert result.value is not None
        done: dict[str, Any] = {
            "state": "complete",
            "values": [result.value],
            "user_attrs": ctx.attrs,
        }
        return self._finish(lease, done, hb, ctx)

    def _run_task(self, lease: Lease, ctx: HttpTrialContext) -> TaskResult:
        name = (lease.task or {}).get("name")
        if not isinstance(name, str):
            raise TaskFailed("bad_task_spec", "the study's task has no name")
        return check_objective(get_task(name).run(ctx))

    # ---- finishing ----

    def _finish(
        self, lease: Lease, body: dict[str, Any], hb: Heartbeat, ctx: HttpTrialContext
    ) -> Outcome:
        """Spool the result (with reports the API has not taken yet), then deliver it while the
        lease can still be alive."""
        left = hb.lease_deadline - time.monotonic()
        pending = PendingResult(
            lease.trial_id, lease.token, body, Spool.deadline(left), list(ctx.unsent_reports)
        )
        path = self.spool.put(pending)
        delivered = self._deliver(pending, left)
        if delivered is not None:
            self.spool.done(path)
        state = body["state"] if delivered else "abandoned"
        return Outcome(lease.trial_id, state)

    def _deliver(self, pending: PendingResult, budget_s: float) -> bool | None:
        """True: delivered; False: the service will never take it (lease gone); None: the API
        stayed unreachable for the whole budget (the result stays in the spool)."""
        trial_id, token, body = pending.trial_id, pending.token, pending.body
        budget = max(1.0, budget_s - _LEASE_MARGIN_S)
        try:
            for step, value in pending.reports:  # idempotent per step
                self.client.report(trial_id, token, step, value, retry_for_s=budget)
            self.client.complete(
                trial_id,
                token,
                values=body.get("values"),
                state=body["state"],
                reason=body.get("reason"),
                user_attrs=body.get("user_attrs"),
                retry_for_s=budget,
            )
            return True
        except (LeaseLostError, NotFoundError, ConflictError) as exc:
            logger.warning("trial %d: result refused (%s); dropping it", trial_id, exc)
            return False
        except Unavailable as exc:
            logger.warning("trial %d: result not delivered yet: %s", trial_id, exc)
            return None

    def deliver_pending(self) -> None:
        """Results left in the spool by an earlier run (or an API outage)."""
        for path, pending in self.spool.pending():
            left = pending.deliver_until - time.time()
            if left <= 0:
                logger.warning("trial %d: its lease expired before delivery", pending.trial_id)
                self.spool.done(path)
                continue
            delivered = self._deliver(pending, left)
            if delivered is not None:
                self.spool.done(path)
            if delivered:
                logger.info("trial %d: spooled result delivered", pending.trial_id)

    def _flush_reports(self, lease: Lease, ctx: HttpTrialContext) -> None:
        try:
            send_reports(self.client, lease, ctx.unsent_reports, _LEASE_MARGIN_S * 5)
        except (ApiError, Unavailable) as exc:
            logger.warning(
                "trial %d: %d reports not sent: %s", lease.trial_id, len(ctx.unsent_reports), exc
            )

    def _release(self, lease: Lease) -> Outcome:
        try:
            self.client.release(lease.trial_id, lease.token)
            logger.info("%s: trial %d handed back", self.worker_id, lease.trial_id)
        except (ApiError, Unavailable) as exc:
            logger.warning(
                "trial %d: could not hand it back (%s); its lease will expire", lease.trial_id, exc
            )
        return Outcome(lease.trial_id, "released")

    def _send_attrs(self, lease: Lease, attrs: dict[str, Any]) -> None:
        if not attrs:
            return
        try:
            self.client.set_attrs(lease.trial_id, lease.token, attrs)
        except (ApiError, Unavailable) as exc:
            logger.warning("trial %d: attributes not saved: %s", lease.trial_id, exc)


def task_names(settings: WorkerSettings) -> list[str]:
    """The tasks this worker runs: ``HPO_TASKS``, or every task it has."""
    known = available_tasks()
    if settings.tasks is None:
        return sorted(known)
    missing = sorted(set(settings.tasks) - set(known))
    if missing:
        raise SystemExit(f"this worker has no task named {', '.join(missing)}")
    return sorted(settings.tasks)


def _summary(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()[:1000]
