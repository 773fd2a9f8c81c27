"""``--exit-when-idle``: a worker with nothing left to claim exits 0 by itself (for batch
schedulers); real server, real worker processes."""

from __future__ import annotations

import pytest

from tests.support import ServerProcess
from tests.workers.conftest import StartWorker, create_study, get
from tests.workers.test_worker import sleep_study
from workers.idle import IdleLimit


@pytest.mark.slow
@pytest.mark.parametrize("slots", [1, 2])
def test_a_worker_exits_0_once_the_study_is_done_and_it_was_idle_that_long(
    server: ServerProcess, start_worker: StartWorker, slots: int
) -> None:
    # Each trial trains longer (3 x 1 s) than the idle limit: the clock does not run meanwhile.
    study = create_study(
        server, sleep_study("idle", steps=3, sleep_s=1.0, max_trials=2, max_parallel=2)
    )
    worker = start_worker("--exit-when-idle", "2", "--slots", str(slots), test_tasks=True)
    assert worker.wait(60) == 0  # by itself: the test sends no signal
    done = get(server, f"/studies/{study['id']}")
    assert done["state"] == "completed" and done["trial_counts"]["complete"] == 2
    assert worker.text().count("no trial to claim for 2s: stopping") == slots


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_idle_clock_restarts_after_a_trial_and_never_runs_out_without_a_limit() -> None:
    clock = FakeClock()
    idle = IdleLimit(5, clock)
    clock.now += 4.9
    assert not idle.reached()
    clock.now += 0.1
    assert idle.reached()
    idle.restart()  # a trial ended
    assert not idle.reached()
    clock.now += 5
    assert idle.reached()
    for never in (None, 0):
        unlimited = IdleLimit(never, clock)
        clock.now += 1e9
        assert not unlimited.reached()
