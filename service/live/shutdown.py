"""Ending live streams when the server is asked to stop.

uvicorn's graceful shutdown waits for every open response to finish before it runs the
lifespan's shutdown, and an event stream never finishes by itself. So the lifespan chains a
handler in front of the server's own SIGINT/SIGTERM handlers that closes the broadcaster (every
stream then ends and its connection closes), and calls the previous handler as before.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_stop_signals(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` first whenever SIGINT or SIGTERM arrives; returns a function that puts
    the previous handlers back. Signal handlers belong to the main thread: elsewhere (an app
    served by a test client) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, signal._HANDLER] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        callback()
        _call(previous[signum], signum, frame)

    for sig in _SIGNALS:
        previous[sig] = signal.signal(sig, handle)

    def restore() -> None:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is handle:
                signal.signal(sig, handler)

    return restore


def _call(handler: signal._HANDLER, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)
