"""Checkpoints in PostgreSQL: the bytes in ``hpo_checkpoints.data`` (bytea)."""

from __future__ import annotations

from sqlalchemy import Connection

from service.checkpoints import repository as repo
from service.checkpoints.store import Checkpoint, CheckpointMeta


class PostgresCheckpointStore:
    """Bytes and metadata in one row, so a replace is one upsert and as atomic as the
    caller's transaction: a crash before the commit leaves the previous checkpoint intact.
    Needs no disk of its own; every server process sees the same checkpoints."""

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
        return repo.upsert(
            conn,
            trial_id=trial_id,
            study_id=study_id,
            step=step,
            size=len(data),
            sha256=sha256,
            data=data,
        )

    def read(self, conn: Connection, trial_id: int) -> Checkpoint | None:
        return repo.get_with_data(conn, trial_id)

    def copy(
        self, conn: Connection, *, study_id: int, from_trial_id: int, to_trial_id: int
    ) -> CheckpointMeta | None:
        """One ``INSERT ... SELECT``: the bytes are copied inside PostgreSQL."""
        return repo.copy_row(conn, from_trial_id=from_trial_id, to_trial_id=to_trial_id)

    def delete_study(self, study_id: int) -> None:
        """Nothing to do: the rows go with the study (``ON DELETE CASCADE``)."""
