"""One unit of work per use case: the transaction, the database's errors, bounded retries.

Every service opens its transactions here and nowhere else:

* :meth:`UnitOfWork.begin` is one transaction, committed when the block ends without an error
  and rolled back otherwise. :meth:`UnitOfWork.read` is a connection for reads only (nothing is
  committed).
* Errors of the database are translated where they happen: a connection that is lost or refused,
  or a pool with no connection free in time, raises :class:`~service.errors.DatabaseUnavailable`
  (503, retried by clients); a transaction PostgreSQL aborted as a deadlock or a serialisation
  failure raises :class:`TransactionAborted`. Every other database error propagates unchanged
  (a bug: a 500).
* :meth:`UnitOfWork.run` runs a use case again when it was aborted so, at most ``attempts`` times
  in all. The use case must be safe to run again from the start: it opens its transaction (and
  any lock or in-memory view it needs) inside ``work``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg2
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from service.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# SQLSTATEs of a transaction PostgreSQL aborted that succeeds when run again.
_RETRYABLE = {"40001": "serialization failure", "40P01": "deadlock"}
DEFAULT_ATTEMPTS = 3


class TransactionAborted(DatabaseUnavailable):
    """PostgreSQL aborted the transaction (deadlock or serialisation failure); nothing of it was
    committed. :meth:`UnitOfWork.run` retries these; one that escapes is a 503 like any other
    passing unavailability."""

    code = "transaction_aborted"


@contextmanager
def database_errors() -> Iterator[None]:
    """Translate the database errors raised in the block (see the module docstring)."""
    try:
        yield
    except (DBAPIError, psycopg2.Error) as exc:
        raw = exc.orig if isinstance(exc, DBAPIError) else exc
        sqlstate = getattr(raw, "pgcode", None)
        if sqlstate in _RETRYABLE:
            raise TransactionAborted(
                f"the database aborted the transaction ({_RETRYABLE[sqlstate]}); retry"
            ) from exc
        if _unreachable(exc):
            logger.warning("database unavailable: %s", raw)
            raise DatabaseUnavailable("the database is unavailable; retry shortly") from exc
        raise
    except PoolTimeout as exc:
        logger.warning("no database connection free: %s", exc)
        raise DatabaseUnavailable(
            "no database connection became free in time; retry shortly"
        ) from exc


def _unreachable(exc: DBAPIError | psycopg2.Error) -> bool:
    """A lost, refused or broken connection (as opposed to a statement the database refused)."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)


class UnitOfWork:
    """Transactions on one engine. Thread-safe (each call takes its own pooled connection)."""

    def __init__(self, engine: Engine, *, attempts: int = DEFAULT_ATTEMPTS) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.engine = engine
        self._attempts = attempts

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: committed at the end of the block, rolled back on an error."""
        with database_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads; nothing is committed."""
        with database_errors(), self.engine.connect() as conn:
            yield conn

    def run(self, work: Callable[[], _T]) -> _T:
        """``work()``, run again (from the start) when the database aborted its transaction as
        a deadlock or serialisation failure; after ``attempts`` tries the last abort is raised."""
        for attempt in range(1, self._attempts + 1):
            try:
                return work()
            except TransactionAborted:
                if attempt == self._attempts:
                    raise
                logger.info("transaction aborted by the database; attempt %d again", attempt + 1)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def transaction(self, work: Callable[[Connection], _T]) -> _T:
        """``work`` in one transaction, retried as :meth:`run` does."""

        def once() -> _T:
            with self.begin() as conn:
                return work(conn)

        return self.run(once)
