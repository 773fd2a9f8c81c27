"""A per-process cache of facts that never change once true (the study of a trial, the team of
a study): looked up in the database on a miss, then served from memory."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable


class FactCache:
    """Thread-safe, bounded map ``int → int`` filled by ``load`` on a miss (None: no such
    fact, not cached). The least recently used facts go first beyond ``capacity``."""

    def __init__(self, load: Callable[[int], int | None], capacity: int = 100_000) -> None:
        self._load = load
        self._capacity = capacity
        self._facts: OrderedDict[int, int] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, key: int) -> int | None:
        """The cached fact, without looking it up (safe on the event loop)."""
        with self._lock:
            value = self._facts.get(key)
            if value is not None:
                self._facts.move_to_end(key)
            return value

    def get(self, key: int) -> int | None:
        """The fact, looked up on a miss (may block on the database)."""
        value = self.known(key)
        if value is None:
            value = self._load(key)
            if value is not None:
                self.remember(key, value)
        return value

    def remember(self, key: int, value: int) -> None:
        with self._lock:
            self._facts[key] = value
            self._facts.move_to_end(key)
            while len(self._facts) > self._capacity:
                self._facts.popitem(last=False)
