"""Where a benchmark's time goes: CPU of this process (the client), of the server process, of
PostgreSQL's backends serving one database, and of the whole machine, over a timed block.

On a small machine a sequential client, the server and PostgreSQL take turns: when the
machine's busy time over a block is about its wall time (one core's worth), the round is a
serial chain of CPU work, and only less CPU somewhere in the chain makes it faster. Linux only
(``/proc``); elsewhere only the client's CPU is measured and the other figures read 0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

import psycopg2

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Split:
    """Seconds spent over some blocks: wall time, and CPU time of each part."""

    wall: float = 0.0
    client: float = 0.0
    server: float = 0.0
    postgres: float = 0.0
    busy: float = 0.0  # every CPU of the machine, every process, kernel included

    def __add__(self, other: Split) -> Split:
        return Split(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: Split) -> Split:
        return Split(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))


class CpuMeter:
    """Snapshots of the CPU time of the parts of one benchmark (see ``Split``).

    ``server_pid`` is the server's process (None: no server). PostgreSQL's backends are the
    connections to ``dsn``'s database, found at each snapshot (the meter's own excluded); a
    backend that appears during a block counts from zero.
    """

    def __init__(self, dsn: str, server_pid: int | None = None) -> None:
        self._server_pid = server_pid
        self._conn = psycopg2.connect(dsn, application_name="bench-cpu-meter")
        self._conn.autocommit = True
        self.available = (_PROC / "stat").exists()

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def block(self, into: list[Split]) -> Iterator[None]:
        """Measure the ``with`` block; its ``Split`` is appended to ``into``."""
        backends = self._backends()
        before = self._snapshot(backends)
        start = time.perf_counter()
        yield
        wall = time.perf_counter() - start
        after_backends = self._backends()
        after = self._snapshot(after_backends)
        new = after_backends - backends  # connections opened during the block: from zero
        split = after - before
        split.postgres += sum(_process_cpu(pid) for pid in new)
        split.wall = wall
        into.append(split)

    def _backends(self) -> set[int]:
        with self._conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return {row[0] for row in cur.fetchall()}

    def _snapshot(self, backends: set[int]) -> Split:
        if not self.available:  # the client's own CPU is known everywhere
            return Split(client=time.process_time())
        return Split(
            client=time.process_time(),
            server=_process_cpu(self._server_pid) if self._server_pid else 0.0,
            postgres=sum(_process_cpu(pid) for pid in backends),
            busy=_machine_busy(),
        )


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads); 0 once it has gone."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    after_name = stat.rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / _TICK


def _machine_busy() -> float:
    """CPU seconds every CPU of the machine spent not idle (and not waiting for I/O)."""
    ticks = [int(x) for x in (_PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks[:8]) - idle) / _TICK
