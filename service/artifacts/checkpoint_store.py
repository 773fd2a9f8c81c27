"""The checkpoint store of a server with object storage.

Checkpoint bytes never reach it (``PUT /checkpoint`` answers ``use_presigned``); the PostgreSQL
``hpo_checkpoints`` keeps the metadata row of each trial's current checkpoint (``data`` NULL,
written by ``service.artifacts.service``), and deleting
a study deletes its objects under ``<prefix>/<study_id>/``.

``copy`` (a PBT child starting from its parent's checkpoint) copies the parent's newest stored
checkpoint object to a new key of the child inside the bucket, then records it as the child's
stored ``checkpoint`` artifact and current checkpoint, all in the caller's transaction. The
object is written before the rows commit: if the caller's transaction rolls back, or the process
dies before the commit, the new object is left unreferenced under the study's prefix (no row
points at it, so no reader ever sees it) until the study is deleted. A copy run again after a
rollback makes another object under another key.
"""

from __future__ import annotations

import logging
from contextlib import suppress

from sqlalchemy import Connection

from service.artifacts import repository as repo
from service.artifacts.errors import ObjectStoreUnavailable, UsePresigned
from service.artifacts.location import CHECKPOINT, ArtifactLocation
from service.artifacts.objects import ObjectStore
from service.artifacts.repository import ArtifactRow
from service.checkpoints import repository as checkpoints_repo
from service.checkpoints.store import Checkpoint, CheckpointMeta

logger = logging.getLogger(__name__)


class ObjectCheckpointStore:
    """Keeps :class:`~service.checkpoints.store.CheckpointStore`'s contract: ``read`` finds no
    bytes here (``None``), ``copy`` copies inside the bucket, ``delete_study`` is idempotent."""

    def __init__(self, objects: ObjectStore, location: ArtifactLocation) -> None:
        self._objects = objects
        self._location = location

    def write(
        self,
        conn: Connection,
        *,
        study_id: int,
        trial_id: int,
        step: int,
        data: bytes,
        sha256: str,
    ) -> CheckpointMeta:
        raise UsePresigned("checkpoints are uploaded through presigned URLs on this server")

    def read(self, conn: Connection, trial_id: int) -> Checkpoint | None:
        return None

    def copy(
        self, conn: Connection, *, study_id: int, from_trial_id: int, to_trial_id: int
    ) -> CheckpointMeta | None:
        """Copy the parent's newest stored checkpoint to a new object of the child (see the
        module docstring); ``None`` when the parent has none, or its object is gone. Holds share
        locks on the parent's checkpoint rows until commit, so a checkpoint the parent stores
        meanwhile, or retention, waits instead of deleting the object being copied (retention
        takes them in the other order; it runs only on studies with nothing running or waiting,
        and should the two meet, PostgreSQL aborts one as a deadlock, which its caller retries).
        Raises ObjectStoreUnavailable when the bucket does not answer."""
        checkpoints_repo.get_meta(conn, from_trial_id, lock=True)  # a parent's confirm waits
        source = repo.latest_checkpoint(conn, from_trial_id, lock=True)
        if source is None:
            return None
        assert source.step is not None and source.sha256 is not None  # checked at upload
        key = self._location.new_key(study_id, to_trial_id, CHECKPOINT, source.step)
        if not self._objects.copy(source.object_key, key, source.size):
            logger.warning(
                "checkpoint of trial %s: %s is missing", from_trial_id, source.object_key
            )
            return None
        try:
            return _record(conn, source, study_id=study_id, trial_id=to_trial_id, key=key)
        except BaseException:
            with suppress(ObjectStoreUnavailable):  # else it goes with the study
                self._objects.delete([key])
            raise

    def delete_study(self, study_id: int) -> None:
        """Delete every object of the study (rows went by cascade)."""
        self._objects.delete_prefix(self._location.study_prefix(study_id))


def _record(
    conn: Connection, source: ArtifactRow, *, study_id: int, trial_id: int, key: str
) -> CheckpointMeta:
    """The child's stored artifact row for the copied object, and its checkpoint metadata."""
    assert source.step is not None and source.sha256 is not None
    repo.insert_stored(
        conn,
        study_id=study_id,
        trial_id=trial_id,
        name=CHECKPOINT,
        step=source.step,
        size=source.size,
        sha256=source.sha256,
        object_key=key,
        lease_token=f"copy-of-{source.artifact_id}",
    )
    return checkpoints_repo.upsert(
        conn,
        trial_id=trial_id,
        study_id=study_id,
        step=source.step,
        size=source.size,
        sha256=source.sha256,
        data=None,
    )
