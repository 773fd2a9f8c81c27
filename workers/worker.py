"""The worker process: its slots, and shutdown in two stages.

- One slot: it runs in this process.
- Several slots: each runs in its own process (started with ``spawn``, never forked after CUDA
  is initialised), pinned to its device; children die with this process. This process claims
  for every idle slot in one request and hands each its trial (``workers.dispatch``).

Before any slot starts, the worker checks that the API answers and lets its token run trials
(``workers.connect``); a refused token exits at once with status 3.

Signals: the first SIGTERM or SIGINT asks every slot to finish its current epoch, checkpoint,
hand its lease back and exit (exit code 0); a second one, a second or more later, exits at once
(128 + signal). A signal sent to the whole process group (scancel, systemd) reaches each slot
process twice, directly and forwarded by the parent; that counts as one.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from workers.connect import EXIT_ACCESS_REFUSED, AccessRefused, check_access
from workers.dispatch import AnyQueue, Dispatcher, SlotInbox
from workers.settings import WorkerSettings

logger = logging.getLogger(__name__)


def run_worker(settings: WorkerSettings) -> int:
    """Check the API and the token first (a refused token exits at once with
    ``EXIT_ACCESS_REFUSED``), then run the slots."""
    shutdown = threading.Event()
    _install_two_stage(shutdown)
    try:
        if not check_access(settings, shutdown):
            return 0  # stopped before the API answered
    except AccessRefused as exc:
        return _refused(exc)
    from workers.devices import plan_slots

    devices = plan_slots(settings.device, settings.slots)
    if shutdown.is_set():  # a signal while torch loaded
        return 0
    if len(devices) == 1:
        return _run_in_process(settings, devices[0], shutdown)
    return _run_children(settings, devices)


def _run_in_process(settings: WorkerSettings, device: str, shutdown: threading.Event) -> int:
    try:
        _run_slot(settings, 0, device, 1, shutdown)
    except AccessRefused as exc:  # the token was revoked while the worker ran
        return _refused(exc)
    return 0


def _refused(exc: AccessRefused) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return EXIT_ACCESS_REFUSED


def _run_slot(
    settings: WorkerSettings,
    index: int,
    device: str,
    n_slots: int,
    shutdown: threading.Event,
    inbox: SlotInbox | None = None,
) -> None:
    import torch

    from workers.devices import cpu_threads_per_slot
    from workers.slot import Slot

    torch.set_num_threads(cpu_threads_per_slot(n_slots, settings.torch_threads))
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    Slot(settings, index, torch.device(device), shutdown, inbox=inbox).run()
    logger.info("slot %d stopped", index)


# A signal sent to the whole process group (Slurm's scancel and time limit, systemd, a terminal)
# reaches a slot process directly and again forwarded by its parent, milliseconds apart: a
# repeat within this window is that one signal, not a second one asking to exit at once.
SAME_SIGNAL_S = 1.0


def _install_two_stage(shutdown: threading.Event) -> None:
    first_at: list[float] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if shutdown.is_set():
            if first_at and time.monotonic() - first_at[0] < SAME_SIGNAL_S:
                return  # the same signal, delivered to the group and forwarded
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(128 + signum)
        first_at.append(time.monotonic())
        logger.info(
            "%s: finishing the current epoch, then handing leases back (again to force)",
            signal.Signals(signum).name,
        )
        shutdown.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


# ---- several slots: one child process each ----


def _child_main(
    settings: WorkerSettings,
    index: int,
    device: str,
    n_slots: int,
    level: str,
    wants: AnyQueue,
    inbox: AnyQueue,
) -> None:
    _die_with_parent()
    configure_logging(level)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent; it forwards
    shutdown = threading.Event()
    _install_two_stage(shutdown)
    try:
        _run_slot(
            settings, index, device, n_slots, shutdown, SlotInbox(index, wants, inbox, shutdown)
        )
    except AccessRefused as exc:
        sys.exit(_refused(exc))
    # The slot has handed its lease back: a copy of the signal that arrives now (sent to the
    # group, forwarded late) must not turn a clean exit into death by signal.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _run_children(settings: WorkerSettings, devices: list[str]) -> int:
    from workers.slot import task_names

    ctx = mp.get_context("spawn")
    wants: AnyQueue = ctx.Queue()
    inboxes: list[AnyQueue] = [ctx.Queue() for _ in devices]
    # Pickled, not JSON: a JSON dump masks the API token ('**********').
    children = [
        ctx.Process(
            target=_child_main,
            args=(settings, i, device, len(devices), settings.log_level, wants, inboxes[i]),
            name=f"slot-{i}",
        )
        for i, device in enumerate(devices)
    ]
    for child in children:
        child.start()
    stop_claiming = threading.Event()
    dispatcher = Dispatcher(settings, task_names(settings), wants, inboxes, stop_claiming)
    claims = threading.Thread(target=dispatcher.run, name="dispatch", daemon=True)
    claims.start()
    signals_seen: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        stop_claiming.set()
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            for child in children:
                if child.pid is not None and child.is_alive():
                    os.kill(child.pid, signal.SIGKILL)
            os._exit(128 + signum)
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    for child in children:
        child.join()
    stop_claiming.set()
    claims.join(timeout=settings.poll_wait_s + 35.0)  # a long poll in flight ends by then
    if dispatcher.hand_back_undelivered():
        logger.info("trials claimed for slots that had stopped were handed back")
    dispatcher.close()
    if any(c.exitcode == EXIT_ACCESS_REFUSED for c in children):
        return EXIT_ACCESS_REFUSED
    failed = [c.name for c in children if c.exitcode not in (0, None)]
    if failed:
        logger.error("slots exited abnormally: %s", ", ".join(failed))
        return 1
    return 0


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the parent dies (kill -9 of the worker takes its slots along)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc: Any = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
