"""Finished results waiting to be delivered: a small durable outbox on local disk.

A result is written here (fsynced) before it is sent, and removed once the service has it or
has said it never will (the lease is gone). A worker that restarts delivers what is left, so a
trial that finished while the API was down is not lost as long as its lease has not expired.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingResult:
    trial_id: int
    token: str
    body: dict[str, Any]  # the complete request: state, values, reason, user_attrs
    deliver_until: float  # wall-clock time after which the lease is surely gone
    reports: list[tuple[int, float]] = field(default_factory=list)  # not yet acknowledged


class Spool:
    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)

    def put(self, result: PendingResult) -> Path:
        path = self._dir / f"{result.trial_id}-{result.token[:12]}.json"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(asdict(result), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def pending(self) -> Iterator[tuple[Path, PendingResult]]:
        for path in sorted(self._dir.glob("*.json")):
            try:
                doc = json.loads(path.read_text())
                doc["reports"] = [(int(step), float(v)) for step, v in doc.get("reports", [])]
                yield path, PendingResult(**doc)
            except (OSError, ValueError, TypeError) as exc:
                logger.warning("dropping unreadable spooled result %s: %s", path, exc)
                path.unlink(missing_ok=True)

    @staticmethod
    def deadline(lease_left_s: float) -> float:
        return time.time() + max(0.0, lease_left_s)
