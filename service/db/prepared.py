"""Server-side prepared statements for the hot path (ask, report, heartbeat, complete).

psycopg2 sends every statement as text, so PostgreSQL parses and plans it each time; for the
service's few large hot-path statements that planning costs more than running them. A
:class:`Statement` is prepared once per database connection (``PREPARE``; prepared statements
outlive transactions, rolled back or not) and then run with ``EXECUTE``. It runs on the
connection of the caller's SQLAlchemy transaction, so it is part of that unit of work.

Parameters are written ``:name`` as with ``sqlalchemy.text``; give them explicit types
(``CAST(:x AS float8)``) wherever PostgreSQL cannot infer one from the context.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_names = itertools.count()


class Statement:
    """One SQL statement with named parameters, prepared lazily on each connection."""

    def __init__(self, sql: str) -> None:
        self.name = f"hpo_stmt_{next(_names)}"
        self.params: list[str] = []
        self.sql = _positional(sql, self.params)
        placeholders = ", ".join(["%s"] * len(self.params))
        self._execute = (
            f"EXECUTE {self.name}({placeholders})" if self.params else f"EXECUTE {self.name}"
        )

    def all(
        self, conn: Connection, params: Mapping[str, Any], *, before: Prefix = ()
    ) -> list[dict[str, Any]]:
        cursor = self._run(conn, params, before)
        try:
            columns = [c.name for c in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def one_or_none(
        self, conn: Connection, params: Mapping[str, Any], *, before: Prefix = ()
    ) -> dict[str, Any] | None:
        rows = self.all(conn, params, before=before)
        if len(rows) > 1:
            raise RuntimeError(f"{self.name} returned {len(rows)} rows, expected at most one")
        return rows[0] if rows else None

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        self._run(conn, params, ()).close()

    def _run(self, conn: Connection, params: Mapping[str, Any], before: Prefix) -> Any:
        """Run the statement, after ``before`` in the same round trip if given.

        Statements sent together in one query string still run one after the other, each with
        its own snapshot (READ COMMITTED), so a read placed after a lock sees what committed
        while the lock was awaited. Only the last statement's rows come back.
        """
        fairy = conn.connection  # the pooled connection of this transaction
        prepared: set[str] = fairy.info.setdefault("hpo_prepared", set())
        cursor = fairy.dbapi_connection.cursor()  # type: ignore[union-attr]
        texts: list[str] = []
        args: list[Any] = []
        for item in (*before, (self, params)):
            if isinstance(item, str):
                if "%" in item:  # the query string is interpolated by psycopg2
                    raise ValueError(f"a plain SQL prefix cannot contain '%': {item!r}")
                texts.append(item)
                continue
            statement, values = item
            if statement.name not in prepared:
                cursor.execute(f"PREPARE {statement.name} AS {statement.sql}")
                prepared.add(statement.name)
            texts.append(statement._execute)
            args += [values[name] for name in statement.params]
        cursor.execute("; ".join(texts), args)
        return cursor


# What runs before a statement in its round trip: plain SQL without parameters (for example a
# SAVEPOINT) or other prepared statements with their parameters.
Prefix = Sequence["str | tuple[Statement, Mapping[str, Any]]"]


def _positional(sql: str, order: list[str]) -> str:
    """``:name`` → ``$n`` outside string literals (``::type`` casts are left alone)."""
    parts = sql.split("'")
    if len(parts) % 2 == 0:
        raise ValueError("unbalanced quote in a prepared statement (an apostrophe in a comment?)")
    for i in range(0, len(parts), 2):  # even parts are outside quotes
        parts[i] = _PARAM.sub(lambda m: _number(m.group(1), order), parts[i])
    return "'".join(parts)


def _number(name: str, order: list[str]) -> str:
    if name not in order:
        order.append(name)
    return f"${order.index(name) + 1}"
