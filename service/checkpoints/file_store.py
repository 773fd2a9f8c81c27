"""Checkpoints as files: ``<root>/<study_id>/<trial_id>.ckpt``, metadata in PostgreSQL.

A write stages the bytes in a temporary file in the same directory (fsynced), writes the
metadata row (``data`` NULL), then ``os.replace``s the file into place and fsyncs the
directory; the caller commits after that. The row therefore only becomes visible once the file
is in place, and upserting it before the rename takes the row lock that readers share, so a
reader never pairs one checkpoint's metadata with another's bytes.

Crashes:

- before the rename: the previous file and row are intact; a ``.<trial_id>.*.tmp`` file may be
  left behind (``delete_study`` removes it with the study's directory);
- between the rename and the commit: the file holds newer bytes than the committed row
  describes. ``read`` checks size and sha256 against the row and answers ``None`` (no usable
  checkpoint, the trial starts afresh) instead of bytes that do not match their metadata; the
  next write of the trial repairs it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import Connection

from service.checkpoints import repository as repo
from service.checkpoints.store import Checkpoint, CheckpointMeta

logger = logging.getLogger(__name__)


class FileCheckpointStore:
    """Bytes on a local or shared file system under ``root``; see the module docstring.

    Every server process that serves the same database must see the same ``root``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, study_id: int, trial_id: int) -> Path:
        return self.root / str(study_id) / f"{trial_id}.ckpt"

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
        target = self.path(study_id, trial_id)
        staged = _stage(target, data)
        try:
            meta = repo.upsert(
                conn,
                trial_id=trial_id,
                study_id=study_id,
                step=step,
                size=len(data),
                sha256=sha256,
                data=None,
            )
            os.replace(staged, target)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return meta

    def read(self, conn: Connection, trial_id: int) -> Checkpoint | None:
        meta = repo.get_meta(conn, trial_id, lock=True)
        if meta is None:
            return None
        path = self.path(meta.study_id, trial_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            logger.warning("checkpoint of trial %s: %s is missing", trial_id, path)
            return None
        if len(data) != meta.size or hashlib.sha256(data).hexdigest() != meta.sha256:
            logger.warning("checkpoint of trial %s: %s does not match its metadata", trial_id, path)
            return None
        return Checkpoint(meta, data)

    def delete_study(self, study_id: int) -> None:
        """Remove the study's directory (checkpoints and stray temporary files); idempotent."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.root / str(study_id))


def _stage(target: Path, data: bytes) -> Path:
    """Write ``data`` to a new fsynced temporary file next to ``target``; its path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    staged = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    return staged


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable before the metadata commits."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
