"""SQL of checkpoints: the lease lock a write needs, and ``hpo_checkpoints`` rows.

Functions run on the caller's connection and never commit.
"""

from __future__ import annotations

from sqlalchemy import Connection, RowMapping, text

from service.checkpoints.store import Checkpoint, CheckpointMeta

_META_COLUMNS = "trial_id, study_id, step, size, sha256, updated_at"

_LOCK_LIVE_LEASE = text(
    """
    SELECT study_id FROM hpo_trials
     WHERE trial_id = :trial_id AND lease_token = :token AND lease_expires_at > now()
       FOR NO KEY UPDATE
    """
)


def lock_live_lease(conn: Connection, trial_id: int, token: str) -> int | None:
    """Lock the trial's lease row if ``token`` holds its live lease; the trial's study id.

    The lock (held until commit) keeps release, heartbeat, completion and the reaper from
    changing the lease while the checkpoint is written. ``None``: no such live lease.
    """
    row = conn.execute(_LOCK_LIVE_LEASE, {"trial_id": trial_id, "token": token}).one_or_none()
    return None if row is None else int(row.study_id)


_UPSERT = text(
    f"""
    INSERT INTO hpo_checkpoints (trial_id, study_id, step, size, sha256, data, updated_at)
    VALUES (:trial_id, :study_id, :step, :size, :sha256, :data, now())
    ON CONFLICT (trial_id) DO UPDATE
       SET step = EXCLUDED.step, size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
           data = EXCLUDED.data, updated_at = EXCLUDED.updated_at
    RETURNING {_META_COLUMNS}
    """
)


def upsert(
    conn: Connection,
    *,
    trial_id: int,
    study_id: int,
    step: int,
    size: int,
    sha256: str,
    data: bytes | None,
) -> CheckpointMeta:
    """Insert or replace the trial's row (``data`` None: the bytes live elsewhere)."""
    params = {
        "trial_id": trial_id,
        "study_id": study_id,
        "step": step,
        "size": size,
        "sha256": sha256,
        "data": data,
    }
    return _meta(conn.execute(_UPSERT, params).mappings().one())


_COPY = text(
    f"""
    INSERT INTO hpo_checkpoints (trial_id, study_id, step, size, sha256, data, updated_at)
    SELECT :to_trial_id, study_id, step, size, sha256, data, now()
      FROM hpo_checkpoints WHERE trial_id = :from_trial_id
    ON CONFLICT (trial_id) DO UPDATE
       SET step = EXCLUDED.step, size = EXCLUDED.size, sha256 = EXCLUDED.sha256,
           data = EXCLUDED.data, updated_at = EXCLUDED.updated_at
    RETURNING {_META_COLUMNS}
    """
)


def copy_row(conn: Connection, *, from_trial_id: int, to_trial_id: int) -> CheckpointMeta | None:
    """Give ``to_trial_id`` a row like ``from_trial_id``'s (its bytes too, where the row holds
    them); None when the source has no row."""
    params = {"from_trial_id": from_trial_id, "to_trial_id": to_trial_id}
    row = conn.execute(_COPY, params).mappings().one_or_none()
    return None if row is None else _meta(row)


def get_meta(conn: Connection, trial_id: int, *, lock: bool = False) -> CheckpointMeta | None:
    """The trial's checkpoint metadata; ``lock`` holds a share lock on the row until commit
    (a writer replacing the checkpoint waits for it)."""
    sql = f"SELECT {_META_COLUMNS} FROM hpo_checkpoints WHERE trial_id = :trial_id"
    if lock:
        sql += " FOR SHARE"
    row = conn.execute(text(sql), {"trial_id": trial_id}).mappings().one_or_none()
    return None if row is None else _meta(row)


_GET_WITH_DATA = text(
    f"SELECT {_META_COLUMNS}, data FROM hpo_checkpoints WHERE trial_id = :trial_id"
    " AND data IS NOT NULL"
)


def get_with_data(conn: Connection, trial_id: int) -> Checkpoint | None:
    """Metadata and bytes of a checkpoint stored in the row (one statement, one snapshot)."""
    row = conn.execute(_GET_WITH_DATA, {"trial_id": trial_id}).mappings().one_or_none()
    return None if row is None else Checkpoint(_meta(row), bytes(row["data"]))


def _meta(row: RowMapping) -> CheckpointMeta:
    return CheckpointMeta(
        trial_id=row["trial_id"],
        study_id=row["study_id"],
        step=row["step"],
        size=row["size"],
        sha256=row["sha256"],
        updated_at=row["updated_at"],
    )
