"""Population-based training: a child trial, queued to start from its parent's checkpoint."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from sqlalchemy import Connection, bindparam, text

from service.db.prepared import Statement
from service.notify import WORK_CHANNEL
from service.sampling.repository import CURRENT_XID
from service.trials.repository.encoding import params_arrays
from service.trials.repository.events import event

_INSERT_CHILD = Statement(
    f"""
    WITH t AS (
        INSERT INTO trials (number, study_id, state)
        VALUES (:number, :study_id, 'WAITING')
        RETURNING trial_id, number
    ), p AS (
        INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)
        SELECT t.trial_id, x.name, x.value, x.dist
          FROM t, unnest(CAST(:p_names AS text[]), CAST(:p_values AS float8[]),
                         CAST(:p_dists AS text[])) AS x(name, value, dist)
    ), h AS (
        INSERT INTO hpo_trials (trial_id, study_id, queued_at, parent_trial_id,
                                started_from_step, replaced_trial_id, change_xid)
        SELECT t.trial_id, :study_id, clock_timestamp(), CAST(:parent_trial_id AS int),
               CAST(:started_from_step AS int), CAST(:replaced_trial_id AS int), {CURRENT_XID}
          FROM t
    ), n AS (SELECT pg_notify('{WORK_CHANNEL}', CAST(:study_id AS text))),
    {
        event(
            "e",
            "trial_enqueued",
            "t",
            ":study_id",
            "t.trial_id",
            "jsonb_build_object('number', t.number, 'params', CAST(:params AS jsonb),"
            " 'parent_trial_id', CAST(:parent_trial_id AS int),"
            " 'started_from_step', CAST(:started_from_step AS int),"
            " 'replaced_trial_id', CAST(:replaced_trial_id AS int))",
        )
    }
    SELECT t.trial_id, (SELECT count(*) FROM n) AS notified FROM t
    """
)


def insert_child(
    conn: Connection,
    *,
    study_id: int,
    number: int,
    params: Mapping[str, Any],
    distributions: Mapping[str, BaseDistribution],
    parent_trial_id: int,
    started_from_step: int,
    replaced_trial_id: int,
) -> int:
    """A waiting child trial with its parameters set, queued; its id. The caller holds the
    study's ask lock (``number`` is the next one) and copies the parent's checkpoint."""
    row = _INSERT_CHILD.one_or_none(
        conn,
        {
            "study_id": study_id,
            "number": number,
            "params": json.dumps(dict(params)),
            "parent_trial_id": parent_trial_id,
            "started_from_step": started_from_step,
            "replaced_trial_id": replaced_trial_id,
            **params_arrays(params, {n: distributions[n] for n in params}),
        },
    )
    assert row is not None
    return int(row["trial_id"])


_RESUMABLE_PARENTS = text(
    """
    SELECT c.trial_id, c.step
      FROM hpo_checkpoints c JOIN trials t ON t.trial_id = c.trial_id
     WHERE c.trial_id IN :ids AND t.state IN ('RUNNING', 'WAITING')
       FOR SHARE OF c
    """
).bindparams(bindparam("ids", expanding=True))


def checkpoint_steps(conn: Connection, trial_ids: Sequence[int]) -> dict[int, int]:
    """The checkpoint step of each of these trials that has a checkpoint and is still in
    training (running or waiting: a finished trial has nothing left for a child to train).
    The rows stay share-locked until commit: a new checkpoint of the parent waits for the copy."""
    if not trial_ids:
        return {}
    rows = conn.execute(_RESUMABLE_PARENTS, {"ids": list(trial_ids)}).all()
    return {int(r.trial_id): int(r.step) for r in rows}
