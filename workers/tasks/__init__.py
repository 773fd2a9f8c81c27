"""Training tasks run by the worker: the :class:`Task` seam, the registry and the built-ins.

Importing this package does not import torch; the built-in tasks load on first use.
"""

from workers.tasks.base import (
    FAILURE_REASONS,
    JSON,
    Task,
    TaskFailed,
    TaskResult,
    TaskState,
    TrialContext,
)
from workers.tasks.registry import (
    TaskRegistry,
    UnknownTaskError,
    available_tasks,
    get_task,
)

__all__ = [
    "FAILURE_REASONS",
    "JSON",
    "Task",
    "TaskFailed",
    "TaskRegistry",
    "TaskResult",
    "TaskState",
    "TrialContext",
    "UnknownTaskError",
    "available_tasks",
    "get_task",
]
