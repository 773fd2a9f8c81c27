"""The checkpoint store of a server with object storage.

Checkpoint bytes never reach it (``PUT /checkpoint`` answers ``use_presigned``); the PostgreSQL
``hpo_checkpoints`` keeps the metadata row of each trial's current checkpoint (``data`` NULL,
written by ``service.artifacts.service``), and deleting
a study deletes its objects under ``<prefix>/<study_id>/``.
"""

from __future__ import annotations

from sqlalchemy import Connection

from service.artifacts.errors import UsePresigned
from service.artifacts.location import ArtifactLocation
from service.artifacts.objects import ObjectStore
from service.checkpoints.store import Checkpoint, CheckpointMeta


class ObjectCheckpointStore:
    """Keeps :class:`~service.checkpoints.store.CheckpointStore`'s contract: ``read`` finds no
    bytes here (``None``), ``delete_study`` is idempotent."""

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

    def delete_study(self, study_id: int) -> None:
        """Delete every object of the study (rows went by cascade)."""
        self._objects.delete_prefix(self._location.study_prefix(study_id))
