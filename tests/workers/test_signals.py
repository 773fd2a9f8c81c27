"""The worker's two-stage shutdown counts a signal delivered twice at once as one.

Slurm's scancel and time limit, systemd and a terminal signal a whole process group, so a slot
process gets SIGTERM directly and again forwarded by its parent, milliseconds apart. Each case
runs ``workers.worker``'s handler in a fresh interpreter that signals itself, and reads how
that interpreter ended: 0 when the handler took the signals as the first stage only, 143
(128 + SIGTERM) when it exited at once.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from workers.worker import SAME_SIGNAL_S

_PROGRAM = """
import os, signal, sys, threading, time
from workers.worker import _install_two_stage
shutdown = threading.Event()
_install_two_stage(shutdown)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep({gap})
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(0.1)
sys.exit(0 if shutdown.is_set() else 5)
"""


def _exit_code(gap_s: float) -> int:
    program = _PROGRAM.format(gap=gap_s)
    return subprocess.run([sys.executable, "-c", program], timeout=30).returncode


@pytest.mark.parametrize("gap_s", [0.0, 0.2])
def test_a_repeat_within_the_window_is_the_same_signal(gap_s: float) -> None:
    assert gap_s < SAME_SIGNAL_S
    assert _exit_code(gap_s) == 0  # shutdown was asked for, and nothing forced an exit


def test_a_second_signal_after_the_window_exits_at_once() -> None:
    assert _exit_code(SAME_SIGNAL_S + 0.3) == 128 + signal.SIGTERM
