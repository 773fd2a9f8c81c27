"""The seam between the worker loop and the training tasks.

The worker loop claims a trial from the service, wraps it in a :class:`TrialContext` and calls
:meth:`Task.run`. A task returns a :class:`TaskResult` for the three orderly endings (complete,
pruned, interrupted) and raises :class:`TaskFailed` when the trial itself is at fault. Any other
exception is a bug or an infrastructure problem of the worker, not of the trial.

This module imports nothing heavy: ``torch`` is only named for the type checker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    import torch

JSON = Any
"""A JSON-serialisable value (what ``json.dumps`` accepts)."""

TaskState = Literal["complete", "pruned", "interrupted"]

FailureReason = Literal["oom", "nan", "bad_task_spec", "unknown_dataset", "bad_params", "error"]
FAILURE_REASONS: Final[frozenset[str]] = frozenset(
    {"oom", "nan", "bad_task_spec", "unknown_dataset", "bad_params", "error"}
)


class TrialContext(Protocol):
    """What a task sees of the trial it runs. Implemented by the worker loop (HTTP to the service).

    A task calls these from the thread that called :meth:`Task.run`, never concurrently.
    """

    @property
    def trial_id(self) -> int:
        """The service's id of the trial."""
        ...

    @property
    def params(self) -> Mapping[str, Any]:
        """The suggested hyperparameters, by name."""
        ...

    @property
    def task(self) -> Mapping[str, Any]:
        """The study's task spec, free JSON, e.g. ``{"name": "mlp_classifier", "dataset": ...}``."""
        ...

    @property
    def device(self) -> torch.device:
        """Where to train: the device of the worker slot that runs the trial."""
        ...

    @property
    def seed(self) -> int:
        """Per-trial seed chosen by the worker; the same for every attempt of the trial."""
        ...

    @property
    def started_from_step(self) -> int | None:
        """A child of population-based training: its first step (the checkpoint it first
        resumes from is its parent's, with other ``params``); None for every other trial."""
        ...

    def report(self, step: int, value: float) -> bool:
        """Send an intermediate value; ``True`` means the trial should be pruned now.

        Reporting the same ``step`` twice (a retried attempt) is allowed and idempotent.
        """
        ...

    def stop_requested(self) -> bool:
        """Graceful shutdown: finish and checkpoint the current epoch, then return "interrupted"."""
        ...

    def load_checkpoint(self) -> bytes | None:
        """The last checkpoint saved by an earlier attempt of this trial, or ``None``."""
        ...

    def save_checkpoint(self, step: int, data: bytes) -> None:
        """Store ``data`` as the trial's checkpoint after ``step``; replaces any older one."""
        ...

    def save_artifact(self, name: str, data: bytes | Path, step: int | None = None) -> bool:
        """Keep ``data`` (bytes, or the contents of the file at that path) as the trial's
        artifact ``name``, e.g. ``"model"`` for the trained weights; ``True`` once it is stored.

        On a server with object storage (``HPO_ARTIFACT_URL``) the bytes go straight to the
        bucket and ``GET /trials/{id}/artifacts`` lists them; saving a name again adds another
        artifact of that name (``step`` tells them apart). On a server that keeps no artifacts,
        or with the API or the bucket unreachable, nothing is kept: it logs why and returns
        ``False``, and the trial goes on. A lost lease ends the trial as every other call does.
        """
        ...

    def set_attrs(self, attrs: Mapping[str, JSON]) -> None:
        """Merge ``attrs`` into the trial's attributes (returned by the API)."""
        ...


@dataclass(frozen=True)
class TaskResult:
    """How a run ended.

    ``value`` is the objective for "complete"; a task may give the last reported value for
    "pruned", and gives ``None`` for "interrupted". ``epochs_run`` counts the epochs (steps) of the
    trial completed so far, over all attempts, including those restored from a checkpoint.
    """

    state: TaskState
    value: float | None
    epochs_run: int


class TaskFailed(Exception):
    """The trial failed for a reason that is the trial's, not the worker's.

    ``reason`` is one of :data:`FAILURE_REASONS`:

    - ``"oom"``: the accelerator ran out of memory for this trial's model or batch size;
    - ``"nan"``: a training or validation loss was NaN or infinite;
    - ``"bad_task_spec"``: the study's task spec is missing a key or has an invalid value, or
      names a task this worker does not have;
    - ``"unknown_dataset"``: the dataset is not known, or its data is missing or unusable here;
    - ``"bad_params"``: a hyperparameter is missing, unknown or out of range;
    - ``"error"``: any other failure a task attributes to the trial.

    ``message`` is for humans and ends up in the trial's record.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles with the constructor's arguments, so it crosses process boundaries intact.
        return (type(self), (self.reason, self.message))


class Task(Protocol):
    """A named training task the worker can run for a trial.

    One instance serves every trial of that name in the process, possibly from several threads
    at once (one per worker slot): a task keeps per-trial state in locals, not on ``self``.
    """

    name: str

    def run(self, ctx: TrialContext) -> TaskResult:
        """Train for the trial in ``ctx``; raise :class:`TaskFailed` if the trial is at fault."""
        ...
