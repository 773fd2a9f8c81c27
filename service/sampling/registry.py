"""The per-process cache of study views (least recently used studies are dropped)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from service.sampling.view import StudyDefinition, StudyView


class StudyViews:
    """Thread-safe LRU of :class:`StudyView` objects, built on first use with ``load``."""

    def __init__(self, load: Callable[[int], StudyDefinition], capacity: int) -> None:
        self._load = load
        self._capacity = capacity
        self._views: OrderedDict[int, StudyView] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, study_id: int) -> StudyView:
        with self._lock:
            view = self._views.get(study_id)
            if view is not None:
                self._views.move_to_end(study_id)
                return view
        view = StudyView(self._load(study_id))  # outside the lock: it reads the database
        with self._lock:
            existing = self._views.get(study_id)
            if existing is not None:
                return existing
            self._views[study_id] = view
            while len(self._views) > self._capacity:
                self._views.popitem(last=False)
            return view

    @contextmanager
    def locked(self, study_id: int) -> Iterator[StudyView]:
        """Hold a valid view of the study exclusively.

        A use that marks the view ``dirty`` (it holds data of a transaction that has not
        committed yet) and then fails drops the view: the next use rebuilds it from PostgreSQL.
        """
        while True:
            view = self.get(study_id)
            with view.lock:
                if not view.valid:
                    continue
                with self._dropped_if_failed(view):
                    yield view
                return

    @contextmanager
    def try_locked(self, study_id: int) -> Iterator[StudyView | None]:
        """As :meth:`locked`, but None at once when another thread holds the study's view (a
        caller that already holds other views must not wait: that could deadlock)."""
        view = self.get(study_id)
        if not view.lock.acquire(blocking=False):
            yield None
            return
        try:
            if not view.valid:
                yield None
                return
            with self._dropped_if_failed(view):
                yield view
        finally:
            view.lock.release()

    @contextmanager
    def _dropped_if_failed(self, view: StudyView) -> Iterator[None]:
        try:
            yield
        except BaseException:
            if view.dirty:
                self._invalidate(view)
            raise
        view.dirty = False

    def discard(self, study_id: int) -> None:
        """Forget a view (the study was deleted)."""
        with self._lock:
            view = self._views.pop(study_id, None)
        if view is not None:
            view.valid = False

    def _invalidate(self, view: StudyView) -> None:
        view.valid = False
        with self._lock:
            if self._views.get(view.study_id) is view:
                del self._views[view.study_id]

    def __len__(self) -> int:
        return len(self._views)
