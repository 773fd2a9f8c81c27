"""Optimise your own objective through the service: ask, report with pruning, complete.

    import optuna
    from workers import HPOClient
    from workers.optimize import optimize

    def objective(trial):                      # an Optuna objective, unchanged
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        n_layers = trial.suggest_int("n_layers", 1, 4)
        model = build(lr=lr, depth=n_layers)
        for epoch in range(20):
            loss = train_one_epoch(model)
            trial.report(loss, epoch)
            if trial.should_prune():           # the server's pruner, on the last report
                raise optuna.TrialPruned()
        return loss

    with HPOClient("http://hpo:8000") as client:
        optimize(client, "digits-mlp", objective, n_trials=20)

The trial is a :class:`~workers.client_trial.ClientTrial`: declared parameters come with the
lease, undeclared ones are sampled by the server when suggested (define-by-run, one request
each). A heartbeat thread keeps each trial's lease alive while the objective runs. The objective's
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
from typing import Any

from optuna.exceptions import TrialPruned

from workers.client import HPOClient, Lease, NoTrial
from workers.client_trial import ClientTrial
from workers.heartbeat import Heartbeat

__all__ = ["ClientTrial", "Objective", "optimize"]

logger = logging.getLogger(__name__)

Objective = Callable[["ClientTrial"], float | Sequence[float]]

_WAIT_REASONS = {"paused", "max_parallel"}


def optimize(
    client: HPOClient,
    study: int | str,
    objective: Objective,
    n_trials: int,
    *,
    worker_id: str | None = None,
    catch: tuple[type[BaseException], ...] = (),
    wait_s: float = 1.0,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Run ``objective`` on up to ``n_trials`` trials of ``study`` (id or name).

    Stops early when the study has no more trials to give (budget spent, stopped); waits while
    it is paused or at ``max_parallel``. Returns the finished trials as the API shows them.
    ``device``: what the objective runs on, as PyTorch names it (``cuda:0``: its wall time
    counts against the study's ``max_gpu_hours``); None: say nothing, no GPU time counted.
    """
    found = client.get_study(study)
    study_id, space = int(found["id"]), dict(found["search_space"])
    worker = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:6]}"
    finished: list[dict[str, Any]] = []
    lease: Lease | None = None
    while len(finished) < n_trials:
        if lease is None:
            got = client.ask(study_id, worker, device=device)
            if isinstance(got, NoTrial):
                if got.reason in _WAIT_REASONS:
                    time.sleep(wait_s)
                    continue
                logger.info("study %d has no more trials (%s)", study_id, got.reason)
                break
            lease = got
        more = len(finished) + 1 < n_trials
        nxt_for = (worker, device) if more else None
        done = _evaluate(client, lease, space, objective, catch, nxt_for)
        finished.append(done)
        nxt = done.get("next_trial")
        lease = Lease.from_json(nxt) if nxt else None
        if more and nxt is None and done.get("no_trial_reason") not in (None, *_WAIT_REASONS):
            break
    return finished


def _evaluate(
    client: HPOClient,
    lease: Lease,
    space: dict[str, Any],
    objective: Objective,
    catch: tuple[type[BaseException], ...],
    next_for: tuple[str, str | None] | None,
) -> dict[str, Any]:
    next_worker, next_device = next_for if next_for is not None else (None, None)
    trial = ClientTrial(lease, client, space)
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
                next_device=next_device,
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
        next_device=next_device,
    )


def _failure_reason(exc: BaseException) -> str:
    """``oom`` for an out-of-memory error (the reason the worker's tasks use), else the
    exception as ``repr`` shows it."""
    if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
        return "oom"
    return repr(exc)[:2000]
