"""A worker and an API it cannot use, as its user meets them: nothing listening (said at once,
retried visibly, Ctrl-C ends it promptly), a refused or missing token (exit at once, status 3,
a message that says what to do)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from tests.support import ServerProcess, free_port
from tests.workers.conftest import StartWorker, WorkerProcess, wait_for

pytestmark = pytest.mark.slow

RETRY = re.compile(r"cannot reach the API at (\S+) \((.+)\); retrying in (\d+\.\d) s")


def retries(worker: WorkerProcess) -> list[tuple[str, str, float]]:
    return [(url, why, float(s)) for url, why, s in RETRY.findall(worker.text())]


def stops_within(worker: WorkerProcess, seconds: float) -> int:
    """Ctrl-C, then the exit status (which must come within ``seconds``)."""
    sent = time.monotonic()
    worker.signal(signal.SIGINT)
    status = worker.wait(timeout=30)
    took = time.monotonic() - sent
    assert took <= seconds, f"took {took:.1f} s to exit after Ctrl-C:\n{worker.text()}"
    return status


def test_nothing_listening_is_said_at_once_and_retried_visibly(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    worker = WorkerProcess(url, tmp_path / "w.log", [], {"HPO_SPOOL_DIR": str(tmp_path)})
    try:
        wait_for(lambda: len(retries(worker)) >= 3, 30, "three logged retries")
        (first_url, why, first), _, (_, _, third) = retries(worker)[:3]
        assert first_url == url and "Connection refused" in why
        assert first < 1.5 and third > first  # backing off: ~1 s, ~2 s, ~4 s
        assert stops_within(worker, 2.0) == 0
    finally:
        worker.stop()
    assert "Traceback" not in worker.text()


def test_an_api_that_goes_away_is_retried_visibly(
    server: ServerProcess, start_worker: StartWorker
) -> None:
    worker = start_worker()
    wait_for(lambda: "answers" in worker.text(), 60, "the worker to reach the API")
    server.stop()
    wait_for(lambda: len(retries(worker)) >= 2, 60, "logged retries of the idle slot")
    assert all(url == server.url for url, _, _ in retries(worker))
    assert stops_within(worker, 2.0) == 0
    assert "Traceback" not in worker.text()


@pytest.mark.parametrize(
    ("token", "says"),
    [("hpo_not-a-token", "refused the worker's token"), ("", "needs a token")],
    ids=["wrong", "missing"],
)
def test_a_refused_token_exits_at_once(
    server: ServerProcess, tmp_path: Path, token: str, says: str
) -> None:
    env = {"HPO_API_TOKEN": token, "HPO_SPOOL_DIR": str(tmp_path)}
    worker = WorkerProcess(server.url, tmp_path / "w.log", [], env)
    try:
        assert worker.wait(timeout=30) == 3
    finally:
        worker.stop()
    text = worker.text()
    assert says in text and "HPO_API_TOKEN" in text and "--token" in text
    assert "hpo token create --team TEAM --role worker" in text
    assert "Traceback" not in text and len(text.strip().splitlines()) == 2
