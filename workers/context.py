"""The worker's :class:`~workers.tasks.base.TrialContext`: a leased trial seen by a task.

Every call goes to the service under the trial's lease. A lost lease raises
:class:`TrialAbandoned` out of the task at its next call, so the slot drops the trial at once.

While the API is unreachable, training goes on: reports are kept in order and sent (they are
idempotent per step) as soon as it answers again, checkpoints are skipped, and the trial is
abandoned only once its lease must have expired. Reports still unsent when the task ends go
with the result (see ``workers.slot``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.client import (
    ApiError,
    ConflictError,
    HPOClient,
    Lease,
    LeaseLostError,
    NotFoundError,
    ObjectStoreError,
    Unavailable,
)
from workers.heartbeat import Heartbeat

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


_REPORT_RETRY_S = 5.0


def send_reports(
    client: HPOClient, lease: Lease, pending: list[tuple[int, float]], retry_for_s: float
) -> dict[str, Any]:
    """Send ``pending`` reports in order, removing each once taken; the last answer."""
    answer: dict[str, Any] = {"should_prune": False}
    while pending:
        step, value = pending[0]
        answer = client.report(lease.trial_id, lease.token, step, value, retry_for_s=retry_for_s)
        pending.pop(0)
    return answer


class TrialAbandoned(Exception):
    """The lease is gone: drop the trial without completing it."""


def trial_seed(lease: Lease) -> int:
    """The same seed for every attempt of a trial, different across trials and studies."""
    return (lease.study_id * 1_000_003 + lease.number * 7_919) % (2**31 - 1)


class HttpTrialContext:
    """One attempt at one trial; used by one task run in one thread."""

    def __init__(
        self,
        client: HPOClient,
        lease: Lease,
        device: torch.device,
        heartbeat: Heartbeat,
        shutdown: threading.Event,
    ) -> None:
        self._client = client
        self._lease = lease
        self._device = device
        self._heartbeat = heartbeat
        self._shutdown = shutdown
        self.attrs: dict[str, Any] = {}
        self.unsent_reports: list[tuple[int, float]] = []
        self._checkpoints_enabled = True
        # The asha pruner paused the trial: the task checkpoints and stops, the slot releases.
        self.paused_at: int | None = None

    @property
    def trial_id(self) -> int:
        return self._lease.trial_id

    @property
    def params(self) -> Mapping[str, Any]:
        return self._lease.params

    @property
    def task(self) -> Mapping[str, Any]:
        return self._lease.task or {}

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def seed(self) -> int:
        return trial_seed(self._lease)

    @property
    def started_from_step(self) -> int | None:
        return self._lease.started_from_step

    def report(self, step: int, value: float) -> bool:
        """Send the value (and any the API missed before); without an answer, go on training."""
        self._check_lease()
        self.unsent_reports.append((step, value))
        try:
            answer = send_reports(self._client, self._lease, self.unsent_reports, _REPORT_RETRY_S)
        except (LeaseLostError, NotFoundError) as exc:
            raise TrialAbandoned(str(exc)) from exc
        except Unavailable as exc:
            if time.monotonic() > self._heartbeat.lease_deadline:
                raise TrialAbandoned(f"the API stayed away past the lease: {exc}") from exc
            logger.warning("trial %d: step %d not reported yet (%s)", self.trial_id, step, exc)
            return False
        self._heartbeat.extend()
        if answer.get("should_stop"):
            self._heartbeat.stop_requested.set()
        if answer.get("should_pause") and self.paused_at is None:
            self.paused_at = step
            logger.info("trial %d: paused at step %d; it is handed back", self.trial_id, step)
        return bool(answer["should_prune"])

    def stop_requested(self) -> bool:
        """The worker is shutting down, the study was stopped, the lease is gone, or the asha
        pruner paused the trial (its task then checkpoints the step it reported and returns
        "interrupted": the slot hands the lease back, and the trial is paused)."""
        return (
            self.paused_at is not None
            or self._shutdown.is_set()
            or self._heartbeat.stop_requested.is_set()
            or self._heartbeat.lost.is_set()
        )

    def load_checkpoint(self) -> bytes | None:
        """The trial's checkpoint for a retried attempt or a promoted (paused) trial."""
        if self._lease.attempt <= 1 and self._lease.resume_from_step is None:
            return None  # a first attempt has nothing to resume from
        try:
            found = self._client.get_checkpoint(self.trial_id, self._lease.token)
        except (LeaseLostError, NotFoundError) as exc:
            raise TrialAbandoned(str(exc)) from exc
        except (ApiError, Unavailable) as exc:
            logger.warning("trial %d: cannot fetch its checkpoint (%s)", self.trial_id, exc)
            return None
        if found is None:
            return None
        step, data = found
        logger.info("trial %d: resuming from the checkpoint of step %d", self.trial_id, step)
        wanted = self._lease.resume_from_step
        if wanted is not None and step + 1 != wanted:
            logger.warning(
                "trial %d: promoted to resume at step %d, its checkpoint is of step %d",
                self.trial_id,
                wanted,
                step,
            )
        return data

    def save_checkpoint(self, step: int, data: bytes) -> None:
        """Upload the checkpoint (through the API, or to the server's object storage). Too
        large for the server: logged once, training goes on without checkpoints. Unreachable
        API or bucket, or a bucket refusing the upload: this one is skipped (the next epoch
        tries again)."""
        self._check_lease()
        if not self._checkpoints_enabled:
            return
        try:
            self._client.save_checkpoint(
                self.trial_id, self._lease.token, step, data, retry_for_s=_REPORT_RETRY_S
            )
        except (LeaseLostError, NotFoundError) as exc:
            raise TrialAbandoned(str(exc)) from exc
        except ObjectStoreError as exc:
            logger.warning(
                "trial %d: checkpoint of step %d not saved: %s", self.trial_id, step, exc
            )
            return
        except ApiError as exc:
            if exc.status == 413:
                logger.warning("trial %d: checkpoints disabled: %s", self.trial_id, exc.message)
                self._checkpoints_enabled = False
                return
            raise
        except Unavailable as exc:
            logger.warning(
                "trial %d: checkpoint of step %d not saved: %s", self.trial_id, step, exc
            )
            return
        self._heartbeat.extend()

    def save_artifact(self, name: str, data: bytes | Path, step: int | None = None) -> bool:
        """Keep ``data`` (bytes, or a file's contents) as the trial's artifact ``name`` in the
        server's object storage (``GET /trials/{id}/artifacts`` lists it). False, logged, when
        it was not kept: a server without object storage (at info level: nothing is wrong), one
        older than artifacts, or API or bucket unreachable."""
        self._check_lease()
        try:
            self._client.upload_artifact(
                self.trial_id, self._lease.token, name, data, step=step, retry_for_s=_REPORT_RETRY_S
            )
        except LeaseLostError as exc:
            raise TrialAbandoned(str(exc)) from exc
        except (ConflictError, NotFoundError, ObjectStoreError, Unavailable) as exc:
            # 409 artifacts_off: a server without object storage, nothing wrong; 404: an older one
            off = isinstance(exc, ConflictError) and exc.code == "artifacts_off"
            level = logging.INFO if off else logging.WARNING
            logger.log(level, "trial %d: artifact %r not kept: %s", self.trial_id, name, exc)
            return False
        self._heartbeat.extend()
        return True

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Collected here; sent with the completion (or before the lease is handed back)."""
        self.attrs.update(attrs)

    def _check_lease(self) -> None:
        if self._heartbeat.lost.is_set():
            raise TrialAbandoned(f"the lease of trial {self.trial_id} was lost")
