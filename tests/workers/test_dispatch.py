"""The dispatcher of a several-slot worker against a real server: one claim for all idle slots."""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from service.auth.service import issue_token
from tests.support import ScratchDatabase, ServerProcess
from tests.workers.conftest import create_study, trials_of
from tests.workers.test_worker import sleep_study
from workers.client import Lease, NoTrial
from workers.connect import AccessRefused
from workers.dispatch import Dispatcher, Refused, SlotInbox
from workers.settings import WorkerSettings

_CLAIM_REQUESTS = re.compile(
    r'^hpo_http_requests_total\{[^}]*route="/api/v1/trials/claim"[^}]*\} (\S+)$', re.M
)


class Slots:
    """Queues as a worker's slot processes use them, and the dispatcher in a thread."""

    def __init__(self, settings: WorkerSettings, n: int) -> None:
        self.wants: queue.Queue[object] = queue.Queue()
        self.inboxes: list[queue.Queue[object]] = [queue.Queue() for _ in range(n)]
        self.stop = threading.Event()
        self.dispatcher = Dispatcher(settings, ["test_sleep"], self.wants, self.inboxes, self.stop)
        self._thread = threading.Thread(target=self.dispatcher.run, daemon=True)

    def start(self) -> Slots:
        self._thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        self._thread.join(timeout=10)

    def close(self) -> None:
        self.halt()
        self.dispatcher.close()

    def inbox(self, index: int) -> SlotInbox:
        return SlotInbox(index, self.wants, self.inboxes[index], threading.Event())


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string, token=db.token) as s:
        yield s


def _settings(server: ServerProcess, token: str) -> WorkerSettings:
    return WorkerSettings(
        api_url=server.url, api_token=SecretStr(token), worker_name="node-7", poll_wait_s=1.0
    )


def _claim_requests(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", headers=server.headers).text
    return sum(float(v) for v in _CLAIM_REQUESTS.findall(text))


def test_idle_slots_get_their_trials_from_one_claim(
    server: ServerProcess, db: ScratchDatabase
) -> None:
    study = create_study(server, sleep_study("dispatch", steps=1, sleep_s=0, max_trials=3))
    slots = Slots(_settings(server, issue_token(db.url, "tests", "worker")), 4)
    for index in range(4):  # four slots want a trial before the dispatcher looks
        slots.wants.put(index)
    before = _claim_requests(server)
    slots.start()
    try:
        got = [slots.inboxes[i].get(timeout=30) for i in range(3)]
        assert all(isinstance(g, Lease) for g in got)
        assert _claim_requests(server) - before == 1  # one request for the three trials
        # The fourth slot waits on: the next claim finds nothing and says so.
        assert isinstance(slots.inboxes[3].get(timeout=30), NoTrial)
    finally:
        slots.close()
    running = trials_of(server, study["id"])
    assert sorted(t["id"] for t in running) == sorted(
        g.trial_id for g in got if isinstance(g, Lease)
    )
    assert {t["worker_id"] for t in running} == {"node-7"}


def test_a_slot_inbox_asks_once_and_waits_for_its_trial(
    server: ServerProcess, db: ScratchDatabase
) -> None:
    create_study(server, sleep_study("inbox", steps=1, sleep_s=0, max_trials=1))
    slots = Slots(_settings(server, issue_token(db.url, "tests", "worker")), 2).start()
    try:
        first = slots.inbox(0).next_lease()
        assert isinstance(first, Lease)
        assert isinstance(slots.inbox(1).next_lease(), NoTrial)  # budget spent
    finally:
        slots.close()


def test_leases_left_for_stopped_slots_are_handed_back(
    server: ServerProcess, db: ScratchDatabase
) -> None:
    study = create_study(server, sleep_study("handback", steps=1, sleep_s=0, max_trials=2))
    slots = Slots(_settings(server, issue_token(db.url, "tests", "worker")), 2)
    slots.wants.put(0)
    slots.wants.put(1)
    slots.start()
    try:
        for inbox in slots.inboxes:  # both delivered, then the slots stopped unread
            item = inbox.get(timeout=30)
            assert isinstance(item, Lease)
            inbox.put(item)
        slots.halt()
        assert slots.dispatcher.hand_back_undelivered() == 2
    finally:
        slots.close()
    assert [t["state"] for t in trials_of(server, study["id"])] == ["waiting", "waiting"]


def test_a_refused_token_stops_every_slot(server: ServerProcess) -> None:
    slots = Slots(_settings(server, "not-a-token"), 2)
    slots.wants.put(0)
    slots.start()
    try:
        refused = [slots.inboxes[i].get(timeout=30) for i in range(2)]
        assert all(isinstance(r, Refused) and "refused" in r.message for r in refused)
        slots.inboxes[1].put(refused[1])
        with pytest.raises(AccessRefused, match="worker token"):
            slots.inbox(1).next_lease()
    finally:
        slots.close()
