"""The heartbeat beside a running trial: keeps its lease alive from a side thread.

It calls ``POST /trials/{id}/heartbeat`` every ``interval`` seconds. A ``lease_lost`` (or the
trial disappearing) sets :attr:`Heartbeat.lost` at once, which makes the trial's context tell
the task to stop and the slot abandon the trial. The server answering ``should_stop`` (the
study was stopped) sets :attr:`Heartbeat.stop_requested`. An unreachable API is retried at the
next beat; the lease survives as long as the API is back before it expires.
"""

from __future__ import annotations

import logging
import threading
import time

from workers.client import ApiError, HPOClient, LeaseLostError, NotFoundError, Unavailable

logger = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self, client: HPOClient, trial_id: int, token: str, interval_s: float, lease_s: float
    ) -> None:
        self._client = client
        self._trial_id = trial_id
        self._token = token
        self._interval = interval_s
        self.lost = threading.Event()
        self.stop_requested = threading.Event()
        self._done = threading.Event()
        # When the lease runs out unless a beat gets through, by the local clock (measured from
        # receipt of the answer, so up to one network delay late; callers keep a margin).
        self.lease_deadline = time.monotonic() + lease_s
        self._lease_s = lease_s
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=self._interval + 5)

    def extend(self) -> None:
        """Any successful lease call (report, checkpoint) extends the lease like a beat."""
        self.lease_deadline = time.monotonic() + self._lease_s

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                answer = self._client.request(
                    "POST",
                    f"/trials/{self._trial_id}/heartbeat",
                    json={"lease_token": self._token},
                    retry_for_s=min(self._interval, 5.0),
                ).json()
            except (LeaseLostError, NotFoundError) as exc:
                logger.warning("trial %d: lease lost (%s); abandoning it", self._trial_id, exc)
                self.lost.set()
                return
            except Unavailable as exc:
                logger.warning("trial %d: heartbeat failed: %s", self._trial_id, exc)
                continue
            except ApiError as exc:  # e.g. trial finished meanwhile: nothing left to keep
                logger.warning("trial %d: heartbeat refused: %s", self._trial_id, exc)
                self.lost.set()
                return
            self.extend()
            if answer.get("should_stop"):
                self.stop_requested.set()
