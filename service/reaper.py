"""The reaper: expired leases go back to the queue (or fail after ``max_retries``); a trial the
``asha`` pruner told to pause becomes paused instead (the next hand-out may promote it).

Every server process runs one; they cooperate through ``FOR UPDATE SKIP LOCKED``, so each
expired lease is handled exactly once however many processes run. An expired attempt's GPU time
counts up to the lease's expiry; a study with ``max_gpu_hours`` is then settled (once that
budget is used, its waiting trials are finished: ``TrialService.settle``). It also drops idempotency
records and events older than their retention, and, with object storage, applies artifact
retention to finished studies and sweeps stale uploads (``service.artifacts.maintenance``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from service.db.unit_of_work import UnitOfWork
from service.errors import DatabaseUnavailable
from service.observability.metrics import count_reaped
from service.trials import repository as repo

if TYPE_CHECKING:
    from service.artifacts.maintenance import ArtifactMaintenance

logger = logging.getLogger(__name__)

_PURGE_EVERY_S = 300.0
THREAD_NAME = "lease-reaper"


class Reaper:
    def __init__(
        self,
        uow: UnitOfWork,
        interval_s: float,
        idempotency_ttl_s: int,
        event_retention_s: int,
        artifacts: ArtifactMaintenance | None = None,
    ) -> None:
        self._uow = uow
        self._interval = interval_s
        self._ttl = idempotency_ttl_s
        self._event_retention = event_retention_s
        self._artifacts = artifacts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._last_purge = 0.0
        self._settle: Callable[[int], object] | None = None

    def settle_with(self, settle: Callable[[int], object]) -> None:
        """Call ``settle(study_id)`` after reaping leases of a study with ``max_gpu_hours``."""
        self._settle = settle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def run_once(self) -> list[repo.Reaped]:
        """Handle every lease expired by now (in batches of one transaction each); returns what
        was done. Raises DatabaseUnavailable when the database is away."""
        done: list[repo.Reaped] = []
        while True:
            batch = self._uow.transaction(repo.reap_expired)
            done.extend(batch)
            if len(batch) < 100:
                break
        for reaped in done:
            count_reaped(reaped.requeued or reaped.paused)
            logger.info(
                "lease of trial %d expired: %s",
                reaped.trial_id,
                "paused (asha)"
                if reaped.paused
                else "requeued"
                if reaped.requeued
                else "failed (max_retries reached)",
            )
        if self._settle is not None:
            for study_id in sorted({r.study_id for r in done if r.gpu_budget}):
                self._settle(study_id)
        return done

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.run_once()
                if self._artifacts is not None:
                    self._artifacts.run_once()
                if time.monotonic() - self._last_purge > _PURGE_EVERY_S:
                    self._uow.transaction(self._purge)
                    self._last_purge = time.monotonic()
            except DatabaseUnavailable as exc:  # the database is away: try again next round
                logger.warning("reaper: %s", exc)

    def _purge(self, conn: Connection) -> None:
        repo.purge_idempotency_keys(conn, self._ttl)
        repo.purge_events(conn, self._event_retention)
