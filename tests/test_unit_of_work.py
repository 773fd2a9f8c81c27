"""The unit of work against a real PostgreSQL: retries of aborted transactions, their bound,
the translation of the database's errors, and the 503 the API answers when the database is away.

Deadlocks and serialisation failures are provoked for real (two transactions taking row locks
in opposite order; a SERIALIZABLE transaction whose row another one changed), never faked.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import IntegrityError

from service.app import create_app
from service.db import migrate
from service.db.engine import create_db_engine
from service.db.unit_of_work import TransactionAborted, UnitOfWork
from service.db.url import normalize_url
from service.errors import DatabaseUnavailable
from service.settings import ServerSettings
from tests.conftest import server_settings
from tests.faults.postgres import RestartablePostgres
from tests.support import ScratchDatabase

_BUMP = text("UPDATE uow_rows SET n = n + 1 WHERE id = :id")


@pytest.fixture
def rows(engine: Engine) -> Iterator[Engine]:
    """The engine, with a table of two rows (ids 1 and 2, ``n`` = 0) for the test only."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE uow_rows (id int PRIMARY KEY, n int NOT NULL)"))
        conn.execute(text("INSERT INTO uow_rows (id, n) VALUES (1, 0), (2, 0)"))
    try:
        yield engine
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE uow_rows"))


def _counts(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT n FROM uow_rows ORDER BY id")).scalars())


def test_a_deadlock_is_run_again_and_then_succeeds(rows: Engine) -> None:
    """Two use cases lock the same two rows in opposite order; PostgreSQL aborts one as a
    deadlock, ``run`` runs it again from the start, and both commit exactly once."""
    uow = UnitOfWork(rows)
    both_hold_one = threading.Barrier(2, timeout=20)
    attempts = {"a": 0, "b": 0}

    def use_case(name: str, first: int, second: int) -> int:
        def work(conn: Connection) -> int:
            attempts[name] += 1
            conn.execute(_BUMP, {"id": first})
            if attempts[name] == 1:
                both_hold_one.wait()  # each holds one row now and will wait for the other's
            conn.execute(_BUMP, {"id": second})
            return attempts[name]

        return uow.transaction(work)

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(use_case, "a", 1, 2)
        b = pool.submit(use_case, "b", 2, 1)
        done = sorted([a.result(timeout=60), b.result(timeout=60)])

    assert done == [1, 2]  # one ran once; the deadlock's victim ran twice, then succeeded
    assert sorted(attempts.values()) == [1, 2]
    assert _counts(rows) == [2, 2]  # each committed once; the aborted attempt left nothing


@pytest.mark.parametrize("attempts", [1, 3])
def test_attempts_bound_the_runs_of_a_transaction_that_never_serialises(
    rows: Engine, attempts: int
) -> None:
    calls = 0

    def work(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"))
        conn.execute(text("SELECT n FROM uow_rows WHERE id = 1")).one()
        with rows.begin() as other:  # another transaction changes the row and commits
            other.execute(_BUMP, {"id": 1})
        conn.execute(_BUMP, {"id": 1})  # could not serialize access due to concurrent update

    with pytest.raises(TransactionAborted):
        UnitOfWork(rows, attempts=attempts).transaction(work)
    assert calls == attempts
    assert _counts(rows) == [attempts, 0]  # only the other transaction's changes committed


def test_an_integrity_error_propagates_unchanged_and_is_not_retried(rows: Engine) -> None:
    calls = 0

    def work(conn: Connection) -> None:
        nonlocal calls
        calls += 1
        conn.execute(_BUMP, {"id": 2})
        conn.execute(text("INSERT INTO uow_rows (id, n) VALUES (1, 0)"))  # a duplicate key

    with pytest.raises(IntegrityError):
        UnitOfWork(rows).transaction(work)
    assert calls == 1
    assert _counts(rows) == [0, 0]  # rolled back


@pytest.fixture
def dead_engine() -> Iterator[Engine]:
    """An engine on a port of 127.0.0.1 where nothing listens: the port is held by a socket
    that never listens (so no other process can take it meanwhile), connections are refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        url = normalize_url(f"postgresql://postgres@127.0.0.1:{held.getsockname()[1]}/hpo")
        engine = create_db_engine(url, pool_size=1, max_overflow=0)
        yield engine
        engine.dispose()


def test_an_unreachable_database_is_unavailable_and_not_retried(dead_engine: Engine) -> None:
    uow = UnitOfWork(dead_engine)
    with pytest.raises(DatabaseUnavailable) as began, uow.begin():
        pass
    with pytest.raises(DatabaseUnavailable) as read, uow.read():
        pass
    assert type(began.value) is DatabaseUnavailable  # not an aborted transaction
    assert type(read.value) is DatabaseUnavailable

    calls = 0

    def work(conn: Connection) -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(DatabaseUnavailable):
        uow.transaction(work)
    assert calls == 0  # the connection was refused before the work began; once, not thrice


def test_a_connection_lost_mid_transaction_is_unavailable(engine: Engine) -> None:
    with pytest.raises(DatabaseUnavailable), UnitOfWork(engine).begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        conn.execute(text("SELECT 1"))


def test_no_free_connection_in_time_is_unavailable(db: ScratchDatabase) -> None:
    engine = create_engine(db.url, pool_size=1, max_overflow=0, pool_timeout=0.1)
    try:
        uow = UnitOfWork(engine)
        with uow.read(), pytest.raises(DatabaseUnavailable), uow.read():
            pass  # the only connection is taken
    finally:
        engine.dispose()


# ---- over HTTP ----


@pytest.fixture
def private_postgres() -> Iterator[RestartablePostgres]:
    """A PostgreSQL of this test's own (it stops it; never the machine's), schema at head."""
    pg = RestartablePostgres()
    try:
        pg.start()
        pg.create_database("hpo_uow")
        migrate.upgrade(normalize_url(pg.url("hpo_uow")))
        yield pg
    finally:
        pg.destroy()


def test_a_stopped_database_is_a_503_to_retry(
    private_postgres: RestartablePostgres, tmp_path: Path
) -> None:
    settings = ServerSettings(
        database_url=SecretStr(private_postgres.url("hpo_uow")),
        data_dir=tmp_path / "data",
        auth="off",
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/studies").status_code == 200
        private_postgres.stop("fast")

        down = client.get("/api/v1/studies")
        assert down.status_code == 503, down.text
        assert down.headers["retry-after"] == "1"
        assert down.json()["error"]["code"] == "database_unavailable"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "database_unavailable"

        private_postgres.start()
        deadline = time.monotonic() + 20  # broken pooled connections are replaced as used
        while (status := client.get("/api/v1/studies").status_code) == 503:
            assert time.monotonic() < deadline
        assert status == 200


def test_a_database_error_that_escapes_is_a_500(db: ScratchDatabase, tmp_path: Path) -> None:
    """A statement the database refuses (a bug, not an outage) is neither translated by the
    unit of work nor answered as a 503: it is an internal error."""
    app = create_app(server_settings(db, tmp_path, auth="off"))

    def broken(request: Request) -> None:
        with UnitOfWork(request.app.state.engine).read() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))

    app.add_api_route("/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/broken")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "retry-after" not in response.headers
