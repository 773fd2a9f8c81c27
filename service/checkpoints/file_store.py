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
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection

from service.checkpoints import repository as repo
from service.checkpoints.store import Checkpoint, CheckpointMeta

logger = logging.getLogger(__name__)
_Meta = TypeVar("_Meta", CheckpointMeta, CheckpointMeta | None)


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
        return _put_in_place(
            _stage(target, data),
            target,
            lambda: repo.upsert(
                conn,
                trial_id=trial_id,
                study_id=study_id,
                step=step,
                size=len(data),
                sha256=sha256,
                data=None,
            ),
        )

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

    def copy(
        self, conn: Connection, *, study_id: int, from_trial_id: int, to_trial_id: int
    ) -> CheckpointMeta | None:
        """A hard link of the source file staged next to the target (a copy where the file
        system has no hard links), the row copied, then renamed into place as ``write`` does.
        Writes replace a file by renaming a new one over it, so a link shares no later bytes:
        the parent's next checkpoint never reaches the child's, nor the child's the parent's."""
        source = repo.get_meta(conn, from_trial_id, lock=True)
        if source is None:
            return None
        target = self.path(study_id, to_trial_id)
        staged = _stage_link(self.path(source.study_id, from_trial_id), target)
        if staged is None:
            logger.warning("checkpoint of trial %s: its file is missing", from_trial_id)
            return None
        return _put_in_place(
            staged,
            target,
            lambda: repo.copy_row(conn, from_trial_id=from_trial_id, to_trial_id=to_trial_id),
        )

    def delete_study(self, study_id: int) -> None:
        """Remove the study's directory (checkpoints and stray temporary files); idempotent."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.root / str(study_id))


def _put_in_place(staged: Path, target: Path, record: Callable[[], _Meta]) -> _Meta:
    """Write the metadata row (``record``, which takes the row lock readers share), then rename
    the staged file over ``target`` and make the rename durable; the staged file goes on any
    error (the caller's transaction then rolls the row back)."""
    try:
        meta = record()
        os.replace(staged, target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return meta


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


def _stage_link(source: Path, target: Path) -> Path | None:
    """A new name next to ``target`` for the bytes of ``source`` (a hard link, else a copy);
    None when ``source`` is missing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.parent / f".{target.stem}.{uuid.uuid4().hex}.tmp"
    try:
        os.link(source, staged)
    except FileNotFoundError:
        return None
    except OSError:  # no hard links here (or across these directories): copy the bytes
        try:
            shutil.copyfile(source, staged)
        except FileNotFoundError:
            return None
        with open(staged, "rb") as f:
            os.fsync(f.fileno())
    return staged


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable before the metadata commits."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
