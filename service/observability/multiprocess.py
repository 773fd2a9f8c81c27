"""Metrics across ``hpo serve --workers N``: prometheus_client's multiprocess mode.

With several uvicorn processes a scrape reaches one of them, so counters kept in memory would
show that process's share only. In multiprocess mode every process writes its counters and
histograms to files in one directory (``PROMETHEUS_MULTIPROC_DIR``) and a scrape sums them.
``hpo serve`` turns it on for more than one worker: it makes a fresh directory under the temp
dir before the workers start (they inherit the variable) and removes it when they have stopped.
An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used instead, emptied at start.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_metrics_dir(workers: int) -> Iterator[Path | None]:
    """The directory the server processes share their metrics in, for the duration of the
    block; None for a single process (metrics in memory)."""
    given = os.environ.get(ENV)
    if given:
        _empty(Path(given))
        yield Path(given)
        return
    if workers <= 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="hpo-metrics-"))
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def multiprocess_registry() -> CollectorRegistry | None:
    """A registry summing every process's files, when this process is in multiprocess mode."""
    if not os.environ.get(ENV):
        return None
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def _empty(path: Path) -> None:
    """Values left by an earlier run would be summed into this one's."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
