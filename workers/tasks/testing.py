"""Scripted tasks for the worker's own tests; they train nothing.

They are not built in: :func:`register_test_tasks` adds them to a registry (the process-wide
one also does so when ``HPO_ENABLE_TEST_TASKS=1``).

- ``test_sleep``: for each step, sleeps ``sleep_s`` seconds and reports
  :func:`objective` of the params; completes with that value after ``steps`` steps.
- ``test_oom``: like ``test_sleep`` but raises ``torch.cuda.OutOfMemoryError`` at step
  ``fault_step``, which ends as ``TaskFailed("oom")``.
- ``test_nan``: like ``test_sleep`` but its loss is NaN from step ``fault_step`` on, which ends
  as ``TaskFailed("nan")``.

Task spec keys (all optional): ``steps`` (int >= 1, default 5), ``sleep_s`` (float >= 0,
default 0), ``fault_step`` (int >= 0, default 0). All three honour pruning (``report`` returning
True), checkpoint after every step (JSON ``{"step": n}``), resume at the step after the
checkpoint's without re-reporting, and return "interrupted" after a checkpoint when a stop is
requested. Attributes set at the end: ``seed``, ``epochs_run``, ``wall_time_s``,
``resumed_from_step`` (the first step this attempt ran, null for a fresh start). Each report is
logged (``trial <id>: reporting step <n>``), so tests can check that no step ran twice.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from functools import partial
from typing import Any, Final, Literal

import torch

from workers.tasks.base import JSON, TaskResult, TrialContext
from workers.tasks.failures import call_mapping_oom, check_finite
from workers.tasks.fields import read_float, read_int
from workers.tasks.registry import DEFAULT_REGISTRY, TaskRegistry

logger = logging.getLogger(__name__)

Fault = Literal["none", "oom", "nan"]


def objective(params: Mapping[str, Any]) -> float:
    """The sum of squares of the numeric (non-boolean) params; other params count 0."""
    return math.fsum(
        float(v) ** 2
        for v in params.values()
        if isinstance(v, int | float) and not isinstance(v, bool)
    )


def _resume_step(ctx: TrialContext) -> int:
    blob = ctx.load_checkpoint()
    if blob is None:
        return 0
    try:
        step = json.loads(blob)["step"]
        if isinstance(step, int) and step >= 0:
            return step + 1
    except (ValueError, TypeError, KeyError):
        pass
    logger.warning("trial %s: unusable checkpoint; starting afresh", ctx.trial_id)
    return 0


class ScriptedTask:
    """One of the test tasks; ``fault`` says which failure it injects."""

    def __init__(self, name: str, fault: Fault) -> None:
        self.name = name
        self.fault = fault

    def run(self, ctx: TrialContext) -> TaskResult:
        """Run the script (see the module docstring)."""
        started = time.perf_counter()
        attrs: dict[str, JSON] = {"seed": ctx.seed, "epochs_run": 0}
        try:
            return call_mapping_oom(lambda: self._steps(ctx, attrs), ctx.device)
        finally:
            attrs["wall_time_s"] = round(time.perf_counter() - started, 3)
            ctx.set_attrs(attrs)

    def _steps(self, ctx: TrialContext, attrs: dict[str, JSON]) -> TaskResult:
        steps = read_int(ctx.task, "steps", reason="bad_task_spec", default=5, minimum=1)
        sleep_s = read_float(ctx.task, "sleep_s", reason="bad_task_spec", default=0.0, low=0.0)
        fault_step = read_int(ctx.task, "fault_step", reason="bad_task_spec", default=0, minimum=0)
        value = objective(ctx.params)
        start = attrs["epochs_run"] = _resume_step(ctx)
        attrs["resumed_from_step"] = start or None
        for step in range(start, steps):
            time.sleep(sleep_s)
            if self.fault == "oom" and step == fault_step:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory ({self.name}, step {step})")
            loss = math.nan if self.fault == "nan" and step >= fault_step else value
            check_finite("loss", loss, step)
            attrs["epochs_run"] = step + 1
            logger.info("trial %s: reporting step %d", ctx.trial_id, step)
            if ctx.report(step, loss):
                return TaskResult("pruned", loss, step + 1)
            ctx.save_checkpoint(step, json.dumps({"step": step}).encode())
            if ctx.stop_requested():
                return TaskResult("interrupted", None, step + 1)
        return TaskResult("complete", value, steps)


TEST_TASKS: Final[Mapping[str, Fault]] = {
    "test_sleep": "none",
    "test_oom": "oom",
    "test_nan": "nan",
}


def register_test_tasks(registry: TaskRegistry = DEFAULT_REGISTRY) -> None:
    """Add ``test_sleep``, ``test_oom`` and ``test_nan`` to ``registry``. Idempotent."""
    for name, fault in TEST_TASKS.items():
        registry.register(name, partial(ScriptedTask, name, fault), replace=False)
