"""Mapping the two numeric failures of a training run to :class:`TaskFailed`.

- Out of device memory (``torch.cuda.OutOfMemoryError``, or a ``RuntimeError`` whose message
  says "out of memory") becomes ``TaskFailed("oom")``, after the run's tensors are released so
  that the worker can go on with the next trial on the same device.
- A loss that is NaN or infinite becomes ``TaskFailed("nan")``.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable
from typing import TypeVar

import torch

from workers.tasks.base import TaskFailed, TaskResult

T = TypeVar("T")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` reports that a device (or the host allocator) ran out of memory."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_memory(device: torch.device) -> None:
    """Collect garbage and return the cached blocks of ``device`` to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def call_mapping_oom(run: Callable[[], T], device: torch.device) -> T:
    """``run()``, with an out-of-memory error turned into ``TaskFailed("oom")``.

    ``run`` should own every large object (model, optimiser, activations) as locals: they are
    referenced only by its frame, which the exception's traceback keeps alive. Leaving the
    ``except`` block drops that traceback, so :func:`release_memory` can really free them.
    """
    try:
        return run()
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    release_memory(device)
    raise TaskFailed("oom", message)


def check_finite(what: str, value: float, epoch: int) -> None:
    """Raise ``TaskFailed("nan")`` unless ``value`` is a finite number."""
    if not math.isfinite(value):
        raise TaskFailed("nan", f"{what} is {value} at epoch {epoch}")


def check_objective(result: TaskResult) -> TaskResult:
    """A complete result whose value is not a finite number fails the trial (``"nan"``) instead
    of reaching the API, where JSON has no such numbers (any task, built-in or not)."""
    if result.state == "complete" and (result.value is None or not math.isfinite(result.value)):
        raise TaskFailed("nan", f"the objective value is {result.value}, not a finite number")
    return result
