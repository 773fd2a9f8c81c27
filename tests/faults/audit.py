"""What must hold after any fault, read from the database itself (not through the API).

For one study: every trial ended complete, pruned or failed (none running, waiting or holding
a lease); exactly ``max_trials`` trials exist and were started, numbered 0..max_trials-1 once
each; each trial was finished exactly once (one ``trial_finished`` event, one value row when
complete, a finishing token when a worker finished it); every step of a complete trial was
reported (the unique key keeps a repeated report out); and the attempts add up: a trial leased
``attempt`` times was started ``attempt`` times and given back ``attempt - 1`` times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg2
import psycopg2.extras

FINISHED = ("COMPLETE", "PRUNED", "FAIL")

_TRIALS = """
SELECT t.trial_id, t.number, t.state::text AS state, h.attempt,
       h.lease_token IS NOT NULL AS leased, h.queued_at IS NOT NULL AS queued,
       h.finish_token IS NOT NULL AS has_finish_token, h.fail_reason, h.worker_id,
       (SELECT count(*) FROM trial_values v WHERE v.trial_id = t.trial_id) AS n_values,
       (SELECT coalesce(array_agg(i.step ORDER BY i.step), '{}')
          FROM trial_intermediate_values i WHERE i.trial_id = t.trial_id) AS steps,
       (SELECT count(*) FROM hpo_events e
         WHERE e.trial_id = t.trial_id AND e.kind = 'trial_started') AS started,
       (SELECT count(*) FROM hpo_events e
         WHERE e.trial_id = t.trial_id AND e.kind = 'trial_requeued') AS requeued,
       (SELECT count(*) FROM hpo_events e
         WHERE e.trial_id = t.trial_id AND e.kind = 'trial_finished') AS finished
  FROM trials t JOIN hpo_trials h ON h.trial_id = t.trial_id
 WHERE t.study_id = %s
 ORDER BY t.number, t.trial_id
"""


@dataclass(frozen=True)
class TrialRecord:
    trial_id: int
    number: int
    state: str  # Optuna's: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    attempt: int
    leased: bool
    queued: bool
    has_finish_token: bool
    fail_reason: str | None
    worker_id: str | None
    n_values: int
    steps: list[int]
    started: int  # trial_started events
    requeued: int  # trial_requeued events (lease expired, or handed back)
    finished: int  # trial_finished events


@dataclass(frozen=True)
class Audit:
    """The study's trials as the database holds them, and what is wrong with them."""

    max_trials: int
    n_started: int
    steps: int  # steps every complete trial reports
    trials: list[TrialRecord]
    allowed_fail_reasons: frozenset[str] = frozenset({"lease_expired"})

    @property
    def states(self) -> Counter[str]:
        return Counter(t.state for t in self.trials)

    @property
    def finished(self) -> int:
        return sum(1 for t in self.trials if t.state in FINISHED)

    @property
    def retried(self) -> int:
        """Trials that ran more than once (a lease expired or was handed back)."""
        return sum(1 for t in self.trials if t.attempt > 1)

    @property
    def lost(self) -> int:
        """Trials of the budget that never finished (or never came to exist)."""
        return self.max_trials - self.finished

    @property
    def duplicates(self) -> int:
        """Trials finished more than once, or numbers given twice."""
        twice = sum(1 for t in self.trials if t.finished > 1 or t.n_values > 1)
        numbers = Counter(t.number for t in self.trials)
        return twice + sum(n - 1 for n in numbers.values() if n > 1)

    def problems(self) -> list[str]:
        """Every broken invariant, one line each; empty when all hold."""
        found = []
        if self.n_started != self.max_trials:
            found.append(f"n_started = {self.n_started}, max_trials = {self.max_trials}")
        numbers = [t.number for t in self.trials]
        if sorted(numbers) != list(range(self.max_trials)):
            found.append(f"trial numbers are not 0..{self.max_trials - 1}: {sorted(numbers)}")
        for trial in self.trials:
            found.extend(
                f"trial #{trial.number} (id {trial.trial_id}): {p}" for p in _wrong(trial, self)
            )
        return found


def _wrong(t: TrialRecord, audit: Audit) -> Iterable[str]:
    if t.state not in FINISHED:
        yield f"not finished: {t.state}"
    if t.leased or t.queued:
        yield "still holds a lease or waits in the queue"
    if t.finished != 1:
        yield f"{t.finished} trial_finished events"
    if t.started != t.attempt or t.requeued != t.attempt - 1:
        yield f"attempt {t.attempt} but {t.started} starts and {t.requeued} requeues"
    if t.state == "COMPLETE" and t.n_values != 1:
        yield f"{t.n_values} value rows"
    if t.state == "COMPLETE" and t.steps != list(range(audit.steps)):
        yield f"reported steps {t.steps}"
    if t.state == "FAIL" and t.fail_reason not in audit.allowed_fail_reasons:
        yield f"failed with reason {t.fail_reason!r}"
    if t.fail_reason != "lease_expired" and t.state in FINISHED and not t.has_finish_token:
        yield "finished without a finishing token"


def audit_study(dsn: str, study_id: int, steps: int) -> Audit:
    """Read the study's trials and budget (``dsn``: a psycopg2 connection string)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(
                "SELECT max_trials, n_started FROM hpo_studies WHERE study_id = %s", (study_id,)
            )
            study = cur.fetchone()
            assert study is not None, f"study {study_id} does not exist"
            cur.execute(_TRIALS, (study_id,))
            trials = [TrialRecord(**row) for row in cur.fetchall()]
    finally:
        conn.close()
    return Audit(study["max_trials"], study["n_started"], steps, trials)
