"""What the reaper does for artifacts each round: retention of finished studies and the sweep of
stale uploads.

- **Retention** (only with ``HPO_ARTIFACT_KEEP_TOP_K``): every finished study (stopped, or
  completed: budget spent; nothing running or waiting) whose artifacts sit on more than k
  trials, or on a trial that is not complete, gets :meth:`ArtifactService.apply_retention`.
- **Sweep**: ``pending`` rows older than ``STALE_AFTER_TTLS`` URL lifetimes are deleted, then
  their multipart uploads aborted and their objects deleted. A presigned URL is usable for one
  lifetime after the upload request, and a transfer begun just before it expires may take up
  to as long again to finish and be confirmed; a confirm that comes later answers 404.

Both are idempotent, so several server processes may run them at once: retention runs on one
study take turns under the study's row lock and the second finds nothing left; the sweep skips
rows another transaction holds (``SKIP LOCKED``); deleting an object twice is no error.
Thread-safe; one instance per server process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.artifacts import repository as repo
from service.artifacts.service import ArtifactService
from service.db.unit_of_work import UnitOfWork
from service.errors import NotFound, StateConflict

logger = logging.getLogger(__name__)

STALE_AFTER_TTLS = 2
_BATCH = 200


@dataclass(frozen=True)
class MaintenanceDone:
    retained_studies: list[int]
    deleted_objects: int
    swept_uploads: int


class ArtifactMaintenance:
    def __init__(self, uow: UnitOfWork, artifacts: ArtifactService) -> None:
        self._uow = uow
        self._artifacts = artifacts
        self.keep_top_k = artifacts.keep_top_k
        self.stale_after_s = STALE_AFTER_TTLS * artifacts.objects.url_ttl_s

    def run_once(self) -> MaintenanceDone:
        """One round of both; raises DatabaseUnavailable when the database is away (a bucket
        away is logged: the objects stay unreferenced)."""
        studies, deleted = self.apply_retention()
        return MaintenanceDone(studies, deleted, self.sweep_stale_uploads())

    def apply_retention(self) -> tuple[list[int], int]:
        """Retention on every finished study it would change; the studies done and how many
        objects went."""
        if self.keep_top_k is None:
            return [], 0
        with self._uow.read() as conn:
            studies = repo.studies_over_retention(conn, self.keep_top_k, _BATCH)
        done, deleted = [], 0
        for study_id in studies:
            try:
                retention = self._artifacts.apply_retention(study_id, self.keep_top_k)
            except (NotFound, StateConflict):  # deleted, or given a trial, since the query
                continue
            done.append(study_id)
            deleted += retention.deleted_objects
            logger.info(
                "retention of finished study %d: kept trials %s, deleted %d objects",
                study_id,
                retention.kept_trials,
                retention.deleted_objects,
            )
        return done, deleted

    def sweep_stale_uploads(self) -> int:
        """Delete pending uploads older than ``stale_after_s``; how many went."""
        swept = 0
        while True:
            orphans = self._uow.transaction(
                lambda conn: repo.delete_stale_pending(conn, self.stale_after_s, _BATCH)
            )
            self._artifacts.forget(orphans)
            swept += len(orphans)
            if len(orphans) < _BATCH:
                break
        if swept:
            logger.info("swept %d uploads never confirmed", swept)
        return swept


def artifact_maintenance(
    uow: UnitOfWork, artifacts: ArtifactService | None
) -> ArtifactMaintenance | None:
    """The reaper's artifact step when object storage is configured, else None."""
    return None if artifacts is None else ArtifactMaintenance(uow, artifacts)
