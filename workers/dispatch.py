"""One claim for all the idle slots of a worker: the parent process of a several-slot worker.

    slot i idle ──"i wants a trial"──▶ wants queue ──▶ Dispatcher ──claim count=k──▶ API
    slot i ◀── its inbox: a Lease, NoTrial (the long poll ended empty), or Refused

- Each slot process, when it has nothing to run, says so once on the shared ``wants`` queue
  and waits on its own inbox (:class:`SlotInbox`), waking every half second for its stop event.
- The :class:`Dispatcher` (a thread of the parent) gathers the slots that want a trial and
  claims for all of them in one request (``POST /trials/claim`` with ``count``, long poll).
  Each leased trial goes to one waiting slot; slots left over wait for the next claim. A claim
  that found nothing answers every waiting slot with :class:`~workers.client.NoTrial`, so
  ``HPO_EXIT_WHEN_IDLE_S`` works as with one slot.
- A claim whose answer was lost is retried with the same ``Idempotency-Key`` and the same
  ``count`` (the key replays the first answer: nothing is handed out twice).
- A refused token answers every slot with :class:`Refused`: each exits with status 3.
- On shutdown the dispatcher stops claiming; leases it could not deliver (the slot stopped
  meanwhile) are handed back (:meth:`Dispatcher.hand_back_undelivered`).

The trials are leased to the worker's name (``HPO_WORKER_NAME``); each slot heartbeats,
reports and completes its own trial under its own lease token.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from workers.client import ApiError, HPOClient, Lease, LeaseBatch, NoTrial, Unavailable
from workers.connect import AccessRefused, Backoff, raise_if_refused, unreachable
from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)

_WAKE_S = 0.5  # how often a waiting slot or the dispatcher looks at its stop event


class AnyQueue(Protocol):
    """What a ``multiprocessing`` queue (or ``queue.Queue``) offers that this module uses."""

    def put(self, item: object) -> None: ...

    def get(self, block: bool = True, timeout: float | None = None) -> object: ...


@dataclass(frozen=True)
class Refused:
    """The API refused the worker's token: the slot stops (``str`` of AccessRefused)."""

    message: str


class SlotInbox:
    """A slot's side: ask the dispatcher for a trial, and wait for it."""

    def __init__(
        self, index: int, wants: AnyQueue, inbox: AnyQueue, shutdown: threading.Event
    ) -> None:
        self._index = index
        self._wants = wants
        self._inbox = inbox
        self._shutdown = shutdown
        self._asked = False

    def next_lease(self) -> Lease | NoTrial | None:
        """A lease, NoTrial (the dispatcher's claim found none), or None on shutdown; raises
        AccessRefused when the API refused the token."""
        if not self._asked:
            self._wants.put(self._index)
            self._asked = True
        while not self._shutdown.is_set():
            try:
                item = self._inbox.get(timeout=_WAKE_S)
            except queue.Empty:
                continue
            self._asked = False
            if isinstance(item, Refused):
                raise AccessRefused(item.message)
            assert isinstance(item, Lease | NoTrial)
            return item
        return None


class Dispatcher:
    """The parent's side: one claim for every slot waiting (see the module docstring)."""

    def __init__(
        self,
        settings: WorkerSettings,
        tasks: list[str],
        wants: AnyQueue,
        inboxes: Sequence[AnyQueue],
        stop: threading.Event,
        client: HPOClient | None = None,
    ) -> None:
        self._settings = settings
        self._tasks = tasks
        self._wants = wants
        self._inboxes = inboxes
        self._stop = stop
        self._client = client or HPOClient(
            settings.api_url,
            token=settings.api_token.get_secret_value() if settings.api_token else None,
            retry_for_s=settings.api_retry_s,
        )
        self._backoff = Backoff()
        self._waiting: list[int] = []  # slots that want a trial, first come first served
        self._unanswered: tuple[str, int] | None = None  # (key, count) of a claim to retry
        # Every slot of a worker is on the same kind of device (workers.devices.plan_slots):
        # the claim says that kind, and the server counts one GPU per lease for "cuda".
        self._device = slot_device_kind(settings.device)

    def run(self) -> None:
        """Claim for the waiting slots until ``stop`` is set or the token is refused."""
        who = f"{self._settings.worker_name} (dispatch)"
        while not self._stop.is_set():
            self._gather()
            if not self._waiting:
                continue
            try:
                batch = self._claim(who)
            except AccessRefused as exc:
                logger.error("%s", exc)
                for inbox in self._inboxes:
                    inbox.put(Refused(str(exc)))
                return
            if batch is not None:
                self._deliver(batch)

    def _gather(self) -> None:
        """Wait (a little) for a first slot to want a trial, then take every other one."""
        block = not self._waiting
        while True:
            try:
                index = self._wants.get(block=block, timeout=_WAKE_S if block else None)
            except queue.Empty:
                return
            if isinstance(index, int) and index not in self._waiting:
                self._waiting.append(index)
            block = False

    def _claim(self, who: str) -> LeaseBatch | None:
        """One claim for the waiting slots; None when the API did not answer (retried with
        the same key and count)."""
        key, count = self._unanswered or (uuid.uuid4().hex, len(self._waiting))
        self._unanswered = (key, count)
        try:
            batch = self._client.claim_many(
                self._settings.worker_name,
                count,
                study_ids=self._settings.studies,
                tasks=self._tasks,
                wait_seconds=self._settings.poll_wait_s,
                retry_for_s=0,
                idempotency_key=key,
                device=self._device,
            )
        except Unavailable as exc:
            unreachable(who, self._client.base_url, exc, self._backoff, self._stop)
            return None
        except ApiError as exc:
            self._unanswered = None
            raise_if_refused(exc, self._settings, self._client.base_url)
            logger.error("%s: claim refused: %s", who, exc)
            self._stop.wait(self._backoff.next_delay())
            return None
        self._unanswered = None
        if self._backoff.reset():
            logger.info("%s: the API at %s answers again", who, self._client.base_url)
        return batch

    def _deliver(self, batch: LeaseBatch) -> None:
        if not batch.leases:
            for index in self._waiting:
                self._inboxes[index].put(NoTrial(batch.reason))
            self._waiting.clear()
            return
        for lease in batch.leases:
            self._inboxes[self._waiting.pop(0)].put(lease)

    def hand_back_undelivered(self) -> int:
        """After the slots stopped: hand back the leases still in their inboxes."""
        handed = 0
        for inbox in self._inboxes:
            while True:
                try:
                    item = inbox.get(block=False)
                except queue.Empty:
                    break
                if isinstance(item, Lease):
                    try:
                        self._client.release(item.trial_id, item.token)
                        handed += 1
                    except (ApiError, Unavailable) as exc:
                        logger.warning("trial %d: not handed back (%s)", item.trial_id, exc)
        return handed

    def close(self) -> None:
        self._client.close()


def slot_device_kind(device: str) -> str:
    """The kind of device (``cuda`` or ``cpu``, or what ``--device`` named) every slot of a
    worker started with ``--device device`` runs on; asks CUDA for its device count only, as
    ``plan_slots`` does in the same parent process."""
    kind = device.split(":")[0]
    if kind == "auto":
        import torch

        return "cuda" if torch.cuda.device_count() else "cpu"
    return kind
