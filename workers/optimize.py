"""Optimise your own objective through the service: ask, report with pruning, complete.

    from workers import HPOClient
    from workers.optimize import optimize

    def objective(trial):
        model = build(lr=trial.params["lr"], depth=trial.params["n_layers"])
        for epoch in range(20):
            loss = train_one_epoch(model)
            trial.report(epoch, loss)          # raises TrialPruned when the server says so
        return loss

    with HPOClient("http://hpo:8000") as client:
        optimize(client, "digits-mlp", objective, n_trials=20)

A heartbeat thread keeps each trial's lease alive while the objective runs. The objective's
exceptions fail the trial (and are raised again unless listed in ``catch``); an out-of-memory
error (a ``RuntimeError`` saying "out of memory", as ``torch.cuda.OutOfMemoryError`` does) fails
it with the reason ``oom``, which a study's sampler learns to avoid (``infeasible_failures``).
A study that declares ``constraints`` gets their values from ``trial.set_constraint``.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.exceptions import TrialPruned

from workers.client import HPOClient, Lease, NoTrial
from workers.heartbeat import Heartbeat

logger = logging.getLogger(__name__)

Objective = Callable[["ClientTrial"], float | Sequence[float]]

_WAIT_REASONS = {"paused", "max_parallel"}


@dataclass
class ClientTrial:
    """The trial an objective evaluates: its parameters, and reports back to the service."""

    lease: Lease
    client: HPOClient
    user_attrs: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.lease.number

    @property
    def params(self) -> dict[str, Any]:
        return self.lease.params

    def report(self, step: int, value: float) -> None:
        """Send an intermediate value; raises ``optuna.TrialPruned`` if the trial should stop."""
        answer = self.client.report(self.lease.trial_id, self.lease.token, step, value)
        if answer["should_prune"]:
            raise TrialPruned(f"pruned at step {step}")

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def set_constraint(self, key: str, value: float) -> None:
        """One of the study's declared constraint values (<= 0 is feasible), sent on complete."""
        self.constraints[key] = float(value)


def optimize(
    client: HPOClient,
    study: int | str,
    objective: Objective,
    n_trials: int,
    *,
    worker_id: str | None = None,
    catch: tuple[type[BaseException], ...] = (),
    wait_s: float = 1.0,
) -> list[dict[str, Any]]:
    """Run ``objective`` on up to ``n_trials`` trials of ``study`` (id or name).

    Stops early when the study has no more trials to give (budget spent, stopped); waits while
    it is paused or at ``max_parallel``. Returns the finished trials as the API shows them.
    """
    study_id = int(client.get_study(study)["id"])
    worker = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:6]}"
    finished: list[dict[str, Any]] = []
    lease: Lease | None = None
    while len(finished) < n_trials:
        if lease is None:
            got = client.ask(study_id, worker)
            if isinstance(got, NoTrial):
                if got.reason in _WAIT_REASONS:
                    time.sleep(wait_s)
                    continue
                logger.info("study %d has no more trials (%s)", study_id, got.reason)
                break
            lease = got
        more = len(finished) + 1 < n_trials
        done = _evaluate(client, lease, objective, catch, worker if more else None)
        finished.append(done)
        nxt = done.get("next_trial")
        lease = Lease.from_json(nxt) if nxt else None
        if more and nxt is None and done.get("no_trial_reason") not in (None, *_WAIT_REASONS):
            break
    return finished


def _evaluate(
    client: HPOClient,
    lease: Lease,
    objective: Objective,
    catch: tuple[type[BaseException], ...],
    next_worker: str | None,
) -> dict[str, Any]:
    trial = ClientTrial(lease, client)
    with Heartbeat(
        client, lease.trial_id, lease.token, lease.heartbeat_seconds, lease.lease_seconds
    ):
        try:
            result = objective(trial)
        except TrialPruned:
            return client.complete(
                lease.trial_id,
                lease.token,
                state="pruned",
                user_attrs=trial.user_attrs,
                next_worker_id=next_worker,
            )
        except Exception as exc:
            failed = client.complete(
                lease.trial_id,
                lease.token,
                state="failed",
                reason=_failure_reason(exc),
                user_attrs=trial.user_attrs,
            )
            if isinstance(exc, catch):
                logger.warning("trial %d failed: %r", lease.number, exc)
                return failed
            raise
    values = [float(result)] if isinstance(result, int | float) else [float(v) for v in result]
    return client.complete(
        lease.trial_id,
        lease.token,
        values=values,
        user_attrs=trial.user_attrs,
        constraints=trial.constraints or None,
        next_worker_id=next_worker,
    )


def _failure_reason(exc: BaseException) -> str:
    """``oom`` for an out-of-memory error (the reason the worker's tasks use), else the
    exception as ``repr`` shows it."""
    if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        return "oom"
    return repr(exc)[:2000]
