"""Counting what the service sends to PostgreSQL, at the psycopg2 level; the one counter of
the cost tests and of ``bench/ask_tell.py``'s statement counts.

SQLAlchemy's ``before_cursor_execute`` event misses the hot-path statements
(``service.db.prepared.Statement`` runs them on the raw DBAPI cursor), so this counts
``cursor.execute`` calls and commits of psycopg2 connections instead: every round trip the
service makes, however it makes it. Not counted: psycopg2's implicit BEGIN (not a cursor
call), and the one-time ``PREPARE`` of a hot-path statement on each pooled connection, which
depends on which connection the pool hands out, not on what the request costs. Nor the
lease reaper's sweeps: its thread runs every ``reaper_interval_s`` (0.2 s in tests) on the
same engine, whenever it likes, so counting it would make a cost depend on timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import pytest
import sqlalchemy

import service.db.engine as engine_module
from service import reaper


class RoundTrips:
    """Executes (round trips), statements and commits on the connections it makes: those of
    ``connection_factory``, or of every engine the service makes while it is installed."""

    def __init__(self) -> None:
        self.executes = self.statements = self.commits = 0
        counter = self

        class Cursor(psycopg2.extensions.cursor):
            def execute(self, query: Any, vars: Any = None) -> Any:
                text = query.decode() if isinstance(query, bytes) else str(query)
                if counter._counts() and not text.startswith("PREPARE "):
                    counter.executes += 1
                    # The service sends a few statements together ("SAVEPOINT ...; EXECUTE
                    # a(...); EXECUTE b(...)"): one round trip, several statements.
                    counter.statements += text.count("; ") + 1
                return super().execute(query, vars)

        class Connection(psycopg2.extensions.connection):
            def cursor(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("cursor_factory", Cursor)
                return super().cursor(*args, **kwargs)

            def commit(self) -> None:
                if counter._counts():
                    counter.commits += 1
                super().commit()

        self.connection_factory: type[psycopg2.extensions.connection] = Connection

    def cost(self, call: Callable[[], Any]) -> tuple[int, int]:
        """(executes, commits) of ``call``; ``statements`` holds its statements after."""
        self.executes = self.statements = self.commits = 0
        call()
        return self.executes, self.commits

    @staticmethod
    def _counts() -> bool:
        return threading.current_thread().name != reaper.THREAD_NAME

    def create_engine(self, url: Any, **kwargs: Any) -> sqlalchemy.Engine:
        """``sqlalchemy.create_engine`` whose connections count here."""
        connect_args = {
            **kwargs.get("connect_args", {}),
            "connection_factory": self.connection_factory,
        }
        return sqlalchemy.create_engine(url, **{**kwargs, "connect_args": connect_args})

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make the service's engines (``service.db.engine.create_engine``) count here, for
        the rest of the test."""
        monkeypatch.setattr(engine_module, "create_engine", self.create_engine)

    @contextmanager
    def installed(self) -> Iterator[RoundTrips]:
        """``install`` outside pytest: the service's engines count here inside the block."""
        with pytest.MonkeyPatch.context() as patch:
            self.install(patch)
            yield self
