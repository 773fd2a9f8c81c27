"""Counting what the service sends to PostgreSQL, at the psycopg2 level.

SQLAlchemy's ``before_cursor_execute`` event misses the hot-path statements
(``service.db.prepared.Statement`` runs them on the raw DBAPI cursor), so cost tests count
``cursor.execute`` calls and commits of psycopg2 connections instead: every round trip the
service makes, however it makes it. Not counted: psycopg2's implicit BEGIN (not a cursor
call), and the one-time ``PREPARE`` of a hot-path statement on each pooled connection, which
depends on which connection the pool hands out, not on what the request costs. Nor the
lease reaper's sweeps: its thread runs every ``reaper_interval_s`` (0.2 s in tests) on the
same engine, whenever it likes, so counting it would make a cost depend on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
import sqlalchemy

import service.db.engine as engine_module
from service import reaper


class RoundTrips:
    """Executes and commits on the connections of engines made while it is installed."""

    def __init__(self) -> None:
        self.executes = 0
        self.commits = 0

    def cost(self, call: Callable[[], Any]) -> tuple[int, int]:
        """(executes, commits) of ``call``."""
        self.executes = self.commits = 0
        call()
        return self.executes, self.commits

    @staticmethod
    def _counts() -> bool:
        return threading.current_thread().name != reaper.THREAD_NAME

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the service's engines (``service.db.engine.create_engine``) count here."""
        counter = self

        class Cursor(psycopg2.extensions.cursor):
            def execute(self, query: Any, vars: Any = None) -> Any:
                if counter._counts() and not (
                    isinstance(query, str) and query.startswith("PREPARE ")
                ):
                    counter.executes += 1
                return super().execute(query, vars)

        class Connection(psycopg2.extensions.connection):
            def cursor(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("cursor_factory", Cursor)
                return super().cursor(*args, **kwargs)

            def commit(self) -> None:
                if counter._counts():
                    counter.commits += 1
                super().commit()

        def counting_engine(url: Any, **kwargs: Any) -> Any:
            connect_args = {**kwargs.get("connect_args", {}), "connection_factory": Connection}
            return sqlalchemy.create_engine(url, **{**kwargs, "connect_args": connect_args})

        monkeypatch.setattr(engine_module, "create_engine", counting_engine)
