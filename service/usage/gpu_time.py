"""SQL fragments that measure GPU time from ``hpo_trial_attempts`` (one row per lease).

An attempt's GPU-seconds are its GPUs times its wall time: from the lease's start to its end
(complete, release, pause, expiry: for an expired lease, its expiry), or, while it runs, to
``now()`` (never past the lease's expiry). A study's GPU time is the sum over its attempts,
trials that failed or were paused included. Every fragment is a SQL expression to embed in a
statement; ``{study}`` is the SQL that names the study id.
"""

from __future__ import annotations

ATTEMPT_END_SQL = "coalesce(a.ended_at, greatest(a.started_at, least(now(), h.lease_expires_at)))"
"""The end of attempt ``a`` of trial ``h`` (``hpo_trials``) as counted now."""


def study_gpu_seconds_sql(study: str) -> str:
    """The study's GPU-seconds used, running attempts counted up to now (a float8)."""
    return f"""(SELECT CAST(coalesce(sum(a.gpus * extract(epoch FROM {ATTEMPT_END_SQL}
                                                          - a.started_at)), 0) AS float8)
                  FROM hpo_trial_attempts a LEFT JOIN hpo_trials h ON h.trial_id = a.trial_id
                 WHERE a.study_id = {study} AND a.gpus > 0)"""


def gpu_spent_sql(studies: str) -> str:
    """Whether the study (``{studies}``: the alias of an ``hpo_studies`` row) has used its
    ``max_gpu_hours``; false without that budget (the sum is not computed then)."""
    return (
        f"CASE WHEN {studies}.max_gpu_hours IS NULL THEN false"
        f" ELSE {study_gpu_seconds_sql(f'{studies}.study_id')}"
        f" >= {studies}.max_gpu_hours * 3600 END"
    )


def start_attempt_cte(name: str, source: str, trial_id: str) -> str:
    """A CTE ``name`` that records the start of a lease for each row of ``source`` (its trial
    id ``trial_id``), with the device the worker said (``:device``, ``:gpus``)."""
    return f"""{name} AS (
        INSERT INTO hpo_trial_attempts (trial_id, study_id, device, gpus, started_at)
        SELECT {trial_id}, CAST(:study_id AS int), CAST(:device AS text), CAST(:gpus AS int),
               now()
          FROM {source}
    )"""


def end_attempt_cte(name: str, source: str, ended_at: str, outcome: str) -> str:
    """A CTE ``name`` that ends the open attempt of each trial in ``source`` (a CTE with a
    ``trial_id`` column) at ``ended_at``, saying how (``outcome``, SQL)."""
    return f"""{name} AS (
        UPDATE hpo_trial_attempts a
           SET ended_at = greatest(a.started_at, {ended_at}), outcome = {outcome}
          FROM {source}
         WHERE a.trial_id = {source}.trial_id AND a.ended_at IS NULL
    )"""
