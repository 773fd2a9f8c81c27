"""When an idle worker slot stops: ``HPO_EXIT_WHEN_IDLE_S`` (``--exit-when-idle``).

For batch schedulers (Slurm): a worker whose slots found no trial for that long exits 0 and
gives its allocation back. The clock runs only while the slot is idle: from the slot's start,
and again from the end of each trial it ran, so a claim that returns a trial resets it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class IdleLimit:
    """The idle clock of one slot; used by that slot's thread only."""

    def __init__(self, limit_s: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s = limit_s or None  # unset or 0: never
        self._clock = clock
        self._since = clock()

    def restart(self) -> None:
        """The slot is idle again from now (a trial just ended)."""
        self._since = self._clock()

    def reached(self) -> bool:
        """The slot has been idle for the limit or longer (never without a limit)."""
        return self.limit_s is not None and self._clock() - self._since >= self.limit_s
