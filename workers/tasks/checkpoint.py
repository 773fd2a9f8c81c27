"""Checkpoints of ``mlp_classifier``: encoding after an epoch, restoring on a resumed attempt.

A checkpoint is the ``torch.save`` of a dict of tensors and plain values (readable with
``weights_only=True``): the model and optimiser state, the progress (last epoch done, best
validation loss and its epoch) and the generator states (torch's CPU generator, the device's
CUDA generator, and the shuffling generator), so a resumed run continues the same random
sequence as an uninterrupted one.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from typing import Any, Final

import torch
from torch import nn

from workers.tasks.failures import is_out_of_memory

FORMAT: Final = 1
TASK_TAG: Final = "mlp_classifier"


class CheckpointError(ValueError):
    """The bytes are not a usable checkpoint of this task for this model."""


@dataclass(frozen=True)
class Progress:
    """How far a trial got: ``next_epoch`` to run, best validation loss so far and its epoch."""

    next_epoch: int = 0
    best_value: float = math.inf
    best_epoch: int | None = None

    def after_epoch(self, epoch: int, value: float) -> Progress:
        """The progress once ``epoch`` finished with validation loss ``value`` (ties keep the
        earlier epoch)."""
        if value < self.best_value:
            return Progress(next_epoch=epoch + 1, best_value=value, best_epoch=epoch)
        return replace(self, next_epoch=epoch + 1)


@dataclass(frozen=True)
class Trainee:
    """What a checkpoint restores into: the model, its optimiser and the shuffling generator."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    device: torch.device


def encode(trainee: Trainee, progress: Progress) -> bytes:
    """The checkpoint bytes of ``trainee`` at ``progress``."""
    cuda_rng = torch.cuda.get_rng_state(trainee.device) if trainee.device.type == "cuda" else None
    state = {
        "format": FORMAT,
        "task": TASK_TAG,
        "next_epoch": progress.next_epoch,
        "best_value": progress.best_value,
        "best_epoch": progress.best_epoch,
        "model": trainee.model.state_dict(),
        "optimizer": trainee.optimizer.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": cuda_rng,
        "rng_shuffle": trainee.shuffle.get_state(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _decode(data: bytes) -> dict[str, Any]:
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for bad bytes
        raise CheckpointError(f"cannot unpickle: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError("not a checkpoint of a known format")
    if state.get("task") != TASK_TAG:
        raise CheckpointError(f"checkpoint of task {state.get('task')!r}, not {TASK_TAG!r}")
    return state


def _progress(state: dict[str, Any]) -> Progress:
    next_epoch, best_value, best_epoch = (
        state["next_epoch"],
        state["best_value"],
        state["best_epoch"],
    )
    if not isinstance(next_epoch, int) or next_epoch < 1 or not isinstance(best_value, float):
        raise CheckpointError("bad progress fields")
    if best_epoch is not None and not isinstance(best_epoch, int):
        raise CheckpointError("bad best_epoch")
    return Progress(next_epoch=next_epoch, best_value=best_value, best_epoch=best_epoch)


def restore(data: bytes, trainee: Trainee) -> Progress:
    """Load checkpoint ``data`` into ``trainee`` and the global generators; its progress.

    Raises :class:`CheckpointError` when ``data`` is unusable; ``trainee`` may then be partly
    overwritten, so the caller should build a fresh one.
    """
    state = _decode(data)
    try:
        progress = _progress(state)
        trainee.model.load_state_dict(state["model"])
        trainee.optimizer.load_state_dict(state["optimizer"])
        trainee.shuffle.set_state(state["rng_shuffle"])
        torch.set_rng_state(state["rng_cpu"])
        if trainee.device.type == "cuda" and state["rng_cuda"] is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], trainee.device)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        if is_out_of_memory(exc):
            raise
        raise CheckpointError(f"does not fit this model: {exc}") from exc
    return progress
