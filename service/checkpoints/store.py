"""What a checkpoint store is: the contract both backends keep.

A trial has at most one checkpoint, the last one written. Its metadata (step, size, sha256,
time) always lives in ``hpo_checkpoints``; its bytes live next to it (PostgreSQL store) or in a
file (file store). Stores work inside the caller's transaction: the service locks the trial's
lease, calls the store, and commits.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Connection


@dataclass(frozen=True)
class CheckpointMeta:
    """What is known about a stored checkpoint without reading its bytes."""

    trial_id: int
    study_id: int
    step: int
    size: int
    sha256: str
    updated_at: dt.datetime


@dataclass(frozen=True)
class Checkpoint:
    meta: CheckpointMeta
    data: bytes


class CheckpointStore(Protocol):
    """Where the bytes of checkpoints live.

    Contract, for every implementation:

    - ``write`` replaces the trial's checkpoint atomically: once the caller's transaction
      commits, readers see the new metadata with the new bytes; if it rolls back, or the
      process dies before the commit, they see the previous checkpoint (or none). A reader
      never sees metadata for bytes that are not there, nor half-written bytes.
    - ``write`` may be called again for the same trial after the caller's transaction rolled
      back (the service retries a transaction the database aborted as a deadlock); the second
      write replaces the checkpoint as the first would have.
    - ``read`` answers the metadata and bytes of one committed checkpoint, or ``None``.
    - ``copy`` is atomic as ``write`` is, and may be run again after a rollback as well.
    - Rows go with their trial or study (``ON DELETE CASCADE``); ``delete_study`` removes
      whatever else the store keeps for a study and is idempotent. Call it after the study's
      deletion has committed.

    Implementations are shared by all request threads and keep no per-request state.
    """

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
        """Replace the trial's checkpoint within the caller's transaction (the caller holds
        the lock of the trial's lease row)."""
        ...

    def read(self, conn: Connection, trial_id: int) -> Checkpoint | None:
        """The trial's checkpoint, or ``None`` when it has none (or none that can be read)."""
        ...

    def copy(
        self, conn: Connection, *, study_id: int, from_trial_id: int, to_trial_id: int
    ) -> CheckpointMeta | None:
        """Make ``to_trial_id``'s checkpoint a copy of ``from_trial_id``'s current one, within
        the caller's transaction and without the bytes leaving the storage (a PBT child starts
        from its parent's checkpoint). The copy is the child's own: a later write of either
        trial never changes the other's. ``None`` when ``from_trial_id`` has none."""
        ...

    def delete_study(self, study_id: int) -> None:
        """Remove what the store keeps outside ``hpo_checkpoints`` for the study."""
        ...
