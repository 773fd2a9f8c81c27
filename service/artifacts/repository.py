"""SQL of ``hpo_artifacts`` (and the trial values that decide what is kept).

Functions run on the caller's connection and never commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, RowMapping, bindparam, text

from service.artifacts.location import CHECKPOINT


@dataclass(frozen=True)
class ArtifactRow:
    artifact_id: int
    study_id: int
    trial_id: int
    name: str
    step: int | None
    size: int
    sha256: str | None
    object_key: str
    multipart_id: str | None
    lease_token: str
    state: str  # pending | stored
    created_at: dt.datetime
    stored_at: dt.datetime | None


@dataclass(frozen=True)
class Orphan:
    """An object whose row is gone: delete it (and abort its multipart upload) after commit."""

    object_key: str
    multipart_id: str | None


_COLUMNS = (
    "artifact_id, study_id, trial_id, name, step, size, sha256, object_key, multipart_id,"
    " lease_token, state, created_at, stored_at"
)

_INSERT = text(
    f"""
    INSERT INTO hpo_artifacts
           (study_id, trial_id, name, step, size, sha256, object_key, multipart_id,
            lease_token, state)
    VALUES (:study_id, :trial_id, :name, :step, :size, :sha256, :object_key, :multipart_id,
            :lease_token, 'pending')
    RETURNING {_COLUMNS}
    """
)


def insert_pending(
    conn: Connection,
    *,
    study_id: int,
    trial_id: int,
    name: str,
    step: int | None,
    size: int,
    sha256: str | None,
    object_key: str,
    multipart_id: str | None,
    lease_token: str,
) -> ArtifactRow:
    params = {
        "study_id": study_id,
        "trial_id": trial_id,
        "name": name,
        "step": step,
        "size": size,
        "sha256": sha256,
        "object_key": object_key,
        "multipart_id": multipart_id,
        "lease_token": lease_token,
    }
    return _row(conn.execute(_INSERT, params).mappings().one())


_INSERT_STORED = text(
    f"""
    INSERT INTO hpo_artifacts
           (study_id, trial_id, name, step, size, sha256, object_key, lease_token, state,
            stored_at)
    VALUES (:study_id, :trial_id, :name, :step, :size, :sha256, :object_key, :lease_token,
            'stored', now())
    RETURNING {_COLUMNS}
    """
)


def insert_stored(
    conn: Connection,
    *,
    study_id: int,
    trial_id: int,
    name: str,
    step: int | None,
    size: int,
    sha256: str | None,
    object_key: str,
    lease_token: str,
) -> ArtifactRow:
    """A row for an object already in the bucket (a server-side copy): ``stored`` at once,
    never confirmed. ``lease_token`` says where it came from; no lease holds such a token, so
    no one can confirm it as an upload."""
    params = {
        "study_id": study_id,
        "trial_id": trial_id,
        "name": name,
        "step": step,
        "size": size,
        "sha256": sha256,
        "object_key": object_key,
        "lease_token": lease_token,
    }
    return _row(conn.execute(_INSERT_STORED, params).mappings().one())


def get(conn: Connection, trial_id: int, artifact_id: int) -> ArtifactRow | None:
    row = (
        conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM hpo_artifacts"
                " WHERE artifact_id = :artifact_id AND trial_id = :trial_id"
            ),
            {"artifact_id": artifact_id, "trial_id": trial_id},
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else _row(row)


def mark_stored(conn: Connection, artifact_id: int) -> ArtifactRow | None:
    """Pending → stored; None when the row is gone or was stored already."""
    row = (
        conn.execute(
            text(
                "UPDATE hpo_artifacts SET state = 'stored', stored_at = now()"
                " WHERE artifact_id = :artifact_id AND state = 'pending'"
                f" RETURNING {_COLUMNS}"
            ),
            {"artifact_id": artifact_id},
        )
        .mappings()
        .one_or_none()
    )
    return None if row is None else _row(row)


def delete(conn: Connection, artifact_ids: Sequence[int]) -> list[Orphan]:
    if not artifact_ids:
        return []
    rows = conn.execute(
        text(
            "DELETE FROM hpo_artifacts WHERE artifact_id IN :ids RETURNING object_key, multipart_id"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": list(artifact_ids)},
    ).all()
    return [Orphan(r.object_key, r.multipart_id) for r in rows]


def stored(conn: Connection, trial_id: int, name: str | None = None) -> list[ArtifactRow]:
    """The trial's stored artifacts (of one name, if given), oldest first."""
    sql = f"SELECT {_COLUMNS} FROM hpo_artifacts WHERE trial_id = :trial_id AND state = 'stored'"
    if name is not None:
        sql += " AND name = :name"
    sql += " ORDER BY stored_at, artifact_id"
    rows = conn.execute(text(sql), {"trial_id": trial_id, "name": name}).mappings()
    return [_row(r) for r in rows]


def latest_checkpoint(conn: Connection, trial_id: int, *, lock: bool = False) -> ArtifactRow | None:
    """The trial's newest stored checkpoint: what a resumed attempt starts from. ``lock``
    holds a share lock on its row until commit: a concurrent deletion of it (keep best and
    last, retention) waits, so its object stays in the bucket meanwhile."""
    sql = (
        f"SELECT {_COLUMNS} FROM hpo_artifacts"
        " WHERE trial_id = :trial_id AND name = :name AND state = 'stored'"
        " ORDER BY stored_at DESC, artifact_id DESC LIMIT 1"
    )
    if lock:
        sql += " FOR SHARE"
    params = {"trial_id": trial_id, "name": CHECKPOINT}
    row = conn.execute(text(sql), params).mappings().one_or_none()
    return None if row is None else _row(row)


_VALUE = (
    "CASE intermediate_value_type WHEN 'INF_NEG' THEN '-Infinity'::float8"
    " WHEN 'INF_POS' THEN 'Infinity'::float8 ELSE intermediate_value END"
)


def intermediate_values(conn: Connection, trial_id: int) -> dict[int, float]:
    """The trial's reported values by step (NaN left out: it is never the best)."""
    rows = conn.execute(
        text(
            f"SELECT step, {_VALUE} AS value FROM trial_intermediate_values"
            " WHERE trial_id = :trial_id AND intermediate_value_type <> 'NAN'"
        ),
        {"trial_id": trial_id},
    ).all()
    return {int(r.step): float(r.value) for r in rows}


def active_trials(conn: Connection, study_id: int) -> int:
    """How many of the study's trials are still running or waiting."""
    return int(
        conn.execute(
            text(
                "SELECT count(*) FROM trials WHERE study_id = :study_id"
                " AND state IN ('RUNNING', 'WAITING')"
            ),
            {"study_id": study_id},
        ).scalar_one()
    )


def top_trials(conn: Connection, study_id: int, k: int, maximize: bool) -> list[int]:
    """The ids of the study's best ``k`` complete trials by the first objective (ties: the
    earlier trial)."""
    direction = "DESC" if maximize else "ASC"
    rows = conn.execute(
        text(
            f"""
            SELECT t.trial_id FROM trials t
              JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0
             WHERE t.study_id = :study_id AND t.state = 'COMPLETE'
             ORDER BY CASE v.value_type WHEN 'INF_NEG' THEN '-Infinity'::float8
                                        WHEN 'INF_POS' THEN 'Infinity'::float8
                                        ELSE v.value END {direction}, t.number
             LIMIT :k
            """
        ),
        {"study_id": study_id, "k": k},
    ).all()
    return [int(r.trial_id) for r in rows]


def delete_outside(conn: Connection, study_id: int, keep_trials: Sequence[int]) -> list[Orphan]:
    """Delete the artifact rows of the study's trials not in ``keep_trials``, and the
    checkpoint metadata rows that pointed at their objects."""
    keep = list(keep_trials) or [0]
    params = {"study_id": study_id, "keep": keep}
    rows = conn.execute(
        text(
            "DELETE FROM hpo_artifacts WHERE study_id = :study_id"
            " AND trial_id NOT IN :keep RETURNING object_key, multipart_id"
        ).bindparams(bindparam("keep", expanding=True)),
        params,
    ).all()
    conn.execute(
        text(
            "DELETE FROM hpo_checkpoints WHERE study_id = :study_id AND data IS NULL"
            " AND trial_id NOT IN :keep"
        ).bindparams(bindparam("keep", expanding=True)),
        params,
    )
    return [Orphan(r.object_key, r.multipart_id) for r in rows]


def lock_study(conn: Connection, study_id: int) -> None:
    """Lock the study's ``hpo_studies`` row until commit (``FOR NO KEY UPDATE``): retention runs
    of one study take turns, and a trial handed out meanwhile (which updates that row) is seen
    by the next statement. Inserts that only reference the study are not blocked."""
    conn.execute(
        text("SELECT 1 FROM hpo_studies WHERE study_id = :id FOR NO KEY UPDATE"), {"id": study_id}
    )


# Finished: stopped, or running with its budget spent (max_trials, or an asha study's
# max_resource_total: the API's "completed"); and in both
# cases no trial running or waiting. Over retention: artifacts on more than k trials, or on a
# trial that is not complete (retention keeps complete trials only).
_OVER_RETENTION = text(
    """
    SELECT s.study_id
      FROM hpo_studies s
     CROSS JOIN LATERAL (
         SELECT count(DISTINCT a.trial_id) AS trials,
                coalesce(bool_or(t.state <> 'COMPLETE'), false) AS unranked
           FROM hpo_artifacts a JOIN trials t ON t.trial_id = a.trial_id
          WHERE a.study_id = s.study_id
     ) AS held
     WHERE (s.state = 'stopped'
            OR (s.state = 'running' AND s.max_trials IS NOT NULL
                AND s.n_started >= s.max_trials)
            OR (s.state = 'running' AND s.resource_spent))
       AND (held.trials > :k OR held.unranked)
       AND NOT EXISTS (SELECT 1 FROM trials t WHERE t.study_id = s.study_id
                          AND t.state IN ('RUNNING', 'WAITING'))
     ORDER BY s.study_id
     LIMIT :limit
    """
)


def studies_over_retention(conn: Connection, k: int, limit: int) -> list[int]:
    """Finished studies (stopped or completed, nothing running or waiting) whose artifacts sit
    on more than ``k`` trials or on a trial that is not complete: those retention with ``k``
    would change. A study whose artifacts are on at most ``k`` complete trials is not listed,
    even if a better complete trial holds none."""
    rows = conn.execute(_OVER_RETENTION, {"k": k, "limit": limit}).all()
    return [int(r.study_id) for r in rows]


_DELETE_STALE = text(
    """
    DELETE FROM hpo_artifacts WHERE artifact_id IN (
        SELECT artifact_id FROM hpo_artifacts
         WHERE state = 'pending' AND created_at < now() - make_interval(secs => :age_s)
         ORDER BY artifact_id
         LIMIT :limit
           FOR UPDATE SKIP LOCKED)
    RETURNING object_key, multipart_id
    """
)


def delete_stale_pending(conn: Connection, age_s: float, limit: int) -> list[Orphan]:
    """Delete up to ``limit`` pending rows older than ``age_s`` seconds; rows another
    transaction holds (a confirm, another sweeper) are skipped."""
    rows = conn.execute(_DELETE_STALE, {"age_s": age_s, "limit": limit}).all()
    return [Orphan(r.object_key, r.multipart_id) for r in rows]


def _row(row: RowMapping) -> ArtifactRow:
    return ArtifactRow(**{k: row[k] for k in _COLUMNS.replace(" ", "").split(",")})
