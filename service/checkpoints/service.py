"""The rules of checkpoints: who may write and read a trial's checkpoint, and how big it may be.

- Writing needs the trial's live lease; the lease row stays locked while the checkpoint is
  written, so a release, completion or expiry cannot slip in between. On any error nothing is
  written.
- Reading the bytes of a trial that is still running or waiting needs the token of its current
  live lease (the worker resuming it); a finished trial's checkpoint, its trained model, is
  readable by anyone who may use the API. Metadata is readable by anyone.
- With object storage (``HPO_ARTIFACT_URL``) the bytes never pass through the API: ``put``
  refuses with ``use_presigned`` (workers upload through ``service.artifacts``) and ``get``
  answers a presigned link to the trial's current checkpoint, under the same read rule.

Every public method is one transaction, committed before it returns.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from sqlalchemy import Connection

from service.checkpoints import repository as repo
from service.checkpoints.file_store import FileCheckpointStore
from service.checkpoints.postgres_store import PostgresCheckpointStore
from service.checkpoints.store import Checkpoint, CheckpointMeta, CheckpointStore
from service.db.unit_of_work import UnitOfWork
from service.errors import LeaseLost, NotFound, PayloadTooLarge
from service.states import FINISHED_STATES, OptunaTrialState
from service.trials import repository as trials_repo

if TYPE_CHECKING:
    from service.artifacts.service import ArtifactService, Download

_MIB = 1024 * 1024


def build_store(checkpoint_dir: Path | None) -> CheckpointStore:
    """``HPO_CHECKPOINT_DIR`` set: files under it; unset: PostgreSQL."""
    if checkpoint_dir is not None:
        return FileCheckpointStore(checkpoint_dir)
    return PostgresCheckpointStore()


class CheckpointService:
    """Thread-safe; one instance per server process."""

    def __init__(
        self,
        uow: UnitOfWork,
        store: CheckpointStore,
        max_bytes: int,
        artifacts: ArtifactService | None = None,
    ) -> None:
        self._uow = uow
        self.store = store
        self.max_bytes = max_bytes
        self.artifacts = artifacts  # set: checkpoints live in object storage

    def check_accepts_bytes(self) -> None:
        """Raise UsePresigned when checkpoints go to object storage (before any body is read)."""
        if self.artifacts is not None:
            self.artifacts.refuse_bytes()

    def too_large(self) -> PayloadTooLarge:
        """The error for a checkpoint over the size limit (raised before or while reading)."""
        return PayloadTooLarge(
            f"a checkpoint may be at most {self.max_bytes} bytes "
            f"({self.max_bytes / _MIB:.3g} MiB; HPO_CHECKPOINT_MAX_BYTES sets the limit)",
            {"max_bytes": self.max_bytes},
        )

    def put(self, trial_id: int, token: str, step: int, data: bytes) -> CheckpointMeta:
        """Replace the trial's checkpoint with ``data`` taken after ``step``.

        Raises LeaseLost when ``token`` holds no live lease on the trial (the trial is left as
        it is), NotFound for an unknown trial, PayloadTooLarge over the size limit.
        """
        self.check_accepts_bytes()
        if len(data) > self.max_bytes:
            raise self.too_large()
        digest = hashlib.sha256(data).hexdigest()

        def work(conn: Connection) -> CheckpointMeta:
            study_id = repo.lock_live_lease(conn, trial_id, token)
            if study_id is None:
                raise_for_lease(conn, trial_id)
            return self.store.write(
                conn, study_id=study_id, trial_id=trial_id, step=step, data=data, sha256=digest
            )

        return self._uow.transaction(work)  # a store's write may run again (see its contract)

    def get(self, trial_id: int, token: str | None) -> Checkpoint | Download:
        """The trial's checkpoint (with object storage: a presigned link to it). A trial not
        finished yet needs the token of its live lease."""
        if self.artifacts is not None:
            return self.artifacts.checkpoint_link(trial_id, token)
        with self._uow.begin() as conn:
            check_readable(conn, trial_id, token)
            checkpoint = self.store.read(conn, trial_id)
        if checkpoint is None:
            raise NotFound(f"trial {trial_id} has no checkpoint", {"trial_id": trial_id})
        return checkpoint

    def meta(self, trial_id: int) -> CheckpointMeta:
        """The metadata of the trial's checkpoint; no lease needed."""
        with self._uow.read() as conn:
            meta = repo.get_meta(conn, trial_id)
            if meta is None and trials_repo.study_of_trial(conn, trial_id) is None:
                raise NotFound(f"trial {trial_id} does not exist")
        if meta is None:
            raise NotFound(f"trial {trial_id} has no checkpoint", {"trial_id": trial_id})
        return meta


def check_readable(conn: Connection, trial_id: int, token: str | None) -> None:
    """The read rule: NotFound for an unknown trial; LeaseLost for a trial not finished yet
    unless ``token`` holds its live lease."""
    lease = trials_repo.lease_state(conn, trial_id)
    if lease is None:
        raise NotFound(f"trial {trial_id} does not exist")
    if lease.trial_state not in FINISHED_STATES and not (
        token is not None and lease.lease_live and lease.lease_token == token
    ):
        raise lease_lost(trial_id, lease.trial_state)


def raise_for_lease(conn: Connection, trial_id: int) -> NoReturn:
    """Why a lease check failed: NotFound for an unknown trial, else LeaseLost."""
    lease = trials_repo.lease_state(conn, trial_id)
    if lease is None:
        raise NotFound(f"trial {trial_id} does not exist")
    raise lease_lost(trial_id, lease.trial_state)


def lease_lost(trial_id: int, trial_state: OptunaTrialState) -> LeaseLost:
    return LeaseLost(
        f"the lease on trial {trial_id} is not held by this token "
        "(missing, expired, handed to another worker, or the trial finished)",
        {"trial_id": trial_id, "state": trial_state.lower()},
    )
