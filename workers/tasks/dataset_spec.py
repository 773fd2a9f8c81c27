"""Which data a task spec names, and how it is split: parsed without loading anything.

This module imports neither torch nor any dataset package, so the API server can check a task
spec when a study is created (``service.studies.task_check``) with the parser the worker uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from workers.tasks.base import TaskFailed
from workers.tasks.fields import read_float, read_int, read_optional_str, read_str

BUILTIN_DATASETS: Final = frozenset(
    {"digits", "breast_cancer", "wine", "mnist1d", "fashion_mnist", "npz"}
)
"""The names ``workers.tasks.datasets`` can load (a test pins that they are the same)."""
FILE_DATASETS: Final = frozenset({"fashion_mnist", "npz"})
"""Datasets read from files; ``npz`` requires a ``path``, ``fashion_mnist`` accepts one."""


@dataclass(frozen=True)
class DatasetSpec:
    """Which data, and how it is split. Hashable: it is the cache key (with the device)."""

    name: str
    val_fraction: float = 0.2
    split_seed: int = 0
    path: Path | None = None
    max_samples: int | None = None


def dataset_spec_from_task(task: Mapping[str, Any]) -> DatasetSpec:
    """The dataset part of a task spec, or ``TaskFailed("bad_task_spec")``.

    Keys: ``dataset`` (required), ``val_fraction`` (in (0, 1), default 0.2), ``split_seed``
    (default 0), ``path`` or its alias ``dir`` (file datasets only; required for ``npz``) and
    ``max_samples`` (>= 2, default all). The dataset name itself is checked when loading.
    """
    reason = "bad_task_spec"
    name = read_str(task, "dataset", reason=reason)
    path = read_optional_str(task, "path", reason=reason) or read_optional_str(
        task, "dir", reason=reason
    )
    if name == "npz" and path is None:
        raise TaskFailed(reason, "dataset 'npz' requires 'path' (the .npz file)")
    val_fraction = read_float(
        task,
        "val_fraction",
        reason=reason,
        default=0.2,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
    )
    max_samples = None
    if task.get("max_samples") is not None:
        max_samples = read_int(task, "max_samples", reason=reason, minimum=2)
    return DatasetSpec(
        name=name,
        val_fraction=val_fraction,
        split_seed=read_int(task, "split_seed", reason=reason, default=0),
        path=Path(path).expanduser().resolve() if path and name in FILE_DATASETS else None,
        max_samples=max_samples,
    )
