"""Which tasks a worker can run, by name.

A study only ever *names* its task; this module maps the name to a :class:`Task` and never
imports a module path that comes from a study. The names are, in order of precedence:

1. the built-in tasks (``mlp_classifier``), plus anything added with
   :meth:`TaskRegistry.register` (the test tasks of :mod:`workers.tasks.testing` are added this
   way, or when the environment variable ``HPO_ENABLE_TEST_TASKS=1`` is set);
2. the Python entry points of group ``hpo.tasks`` installed in the environment. Each loads to
   a Task instance, or to a class or zero-argument callable that returns one. An entry point
   that fails to load or does not give a Task is logged and skipped; one that reuses a name
   from (1) is ignored with a warning.

Each name gets one Task instance per registry, created on first use and shared by every trial
(tasks are stateless, see :class:`~workers.tasks.base.Task`). Registries are thread-safe.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Protocol, cast

from workers.tasks.base import Task, TaskFailed

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "hpo.tasks"
TEST_TASKS_ENV: Final = "HPO_ENABLE_TEST_TASKS"

TaskFactory = Callable[[], Task]


class EntryPointLike(Protocol):
    """The part of ``importlib.metadata.EntryPoint`` the registry uses."""

    @property
    def name(self) -> str: ...

    def load(self) -> Any: ...


EntryPointSource = Callable[[], Iterable[EntryPointLike]]


class UnknownTaskError(TaskFailed, KeyError):
    """No task has this name. A ``KeyError``, and a ``TaskFailed("bad_task_spec")``."""

    def __init__(self, name: str, available: Iterable[str]) -> None:
        self.name = name
        self.available = sorted(available)
        names = ", ".join(self.available) or "none"
        super().__init__("bad_task_spec", f"unknown task {name!r}; available: {names}")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.available))


def installed_entry_points() -> list[EntryPointLike]:
    """The entry points of group :data:`ENTRY_POINT_GROUP` in the running environment."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _is_task(obj: object) -> bool:
    return isinstance(getattr(obj, "name", None), str) and callable(getattr(obj, "run", None))


def as_task(obj: object) -> Task:
    """``obj`` if it is a Task; else the Task that calling it (a class or factory) returns."""
    if isinstance(obj, type) or (callable(obj) and not _is_task(obj)):
        obj = obj()
    if not _is_task(obj):
        raise TypeError(f"{obj!r} is not a Task (needs a str 'name' and a 'run' method)")
    return cast(Task, obj)


class TaskRegistry:
    """Tasks by name: registered ones first, then entry points (see the module docstring)."""

    def __init__(
        self,
        factories: Mapping[str, TaskFactory] | None = None,
        entry_points: EntryPointSource = installed_entry_points,
    ) -> None:
        self._factories: dict[str, TaskFactory] = dict(factories or {})
        self._instances: dict[str, Task] = {}
        self._entry_points = entry_points
        self._plugins: dict[str, Task] | None = None
        self._lock = threading.RLock()

    def register(self, name: str, factory: TaskFactory, *, replace: bool = True) -> None:
        """Add the task ``name``; ``factory`` runs on its first use.

        An existing registration of ``name`` is replaced, or kept when ``replace`` is false.
        """
        with self._lock:
            if name in self._factories and not replace:
                return
            self._factories[name] = factory
            self._instances.pop(name, None)

    def get(self, name: str) -> Task:
        """The task called ``name``; :class:`UnknownTaskError` if there is none."""
        with self._lock:
            if name in self._factories:
                if name not in self._instances:
                    self._instances[name] = as_task(self._factories[name]())
                return self._instances[name]
            plugins = self._load_plugins()
            if name in plugins:
                return plugins[name]
            raise UnknownTaskError(name, [*self._factories, *plugins])

    def names(self) -> list[str]:
        """Every name :meth:`get` accepts, sorted (loads the entry points)."""
        with self._lock:
            return sorted({*self._factories, *self._load_plugins()})

    def _load_plugins(self) -> dict[str, Task]:
        if self._plugins is None:
            self._plugins = {}
            for entry_point in self._entry_points():
                self._add_plugin(entry_point, self._plugins)
        return self._plugins

    def _add_plugin(self, entry_point: EntryPointLike, plugins: dict[str, Task]) -> None:
        name = entry_point.name
        if name in self._factories or name in plugins:
            logger.warning("task entry point %r ignored: the name is already taken", name)
            return
        try:
            task = as_task(entry_point.load())
        except Exception:  # third-party code: whatever it raises must not break the rest
            logger.warning("task entry point %r skipped: it failed to load", name, exc_info=True)
            return
        if task.name != name:
            logger.warning("task entry point %r gives a task named %r", name, task.name)
        plugins[name] = task


def _mlp_classifier() -> Task:
    from workers.tasks.mlp_classifier import MLPClassifierTask

    return MLPClassifierTask()


BUILTIN_TASKS: Final[Mapping[str, TaskFactory]] = {"mlp_classifier": _mlp_classifier}

DEFAULT_REGISTRY: Final = TaskRegistry(BUILTIN_TASKS)


def _default_registry() -> TaskRegistry:
    if os.environ.get(TEST_TASKS_ENV) == "1":
        from workers.tasks.testing import register_test_tasks

        register_test_tasks(DEFAULT_REGISTRY)
    return DEFAULT_REGISTRY


def get_task(name: str) -> Task:
    """The task a study names, from the process-wide registry (:class:`UnknownTaskError`)."""
    return _default_registry().get(name)


def available_tasks() -> list[str]:
    """The task names the process-wide registry accepts, sorted."""
    return _default_registry().names()
