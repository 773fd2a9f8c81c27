"""Fixtures: one real PostgreSQL database per test session, emptied before each test.

The database is created on the machine's PostgreSQL (127.0.0.1:5432, user postgres) when it
answers, else on the embedded PostgreSQL, so the suite passes on a machine with only Python.
Its schema is built by ``hpo db upgrade``'s code path (Optuna's schema, then our migrations).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine

from service.app import create_app
from service.auth.service import issue_token
from service.db import migrate
from service.db.engine import create_db_engine
from service.settings import ServerSettings
from tests.support import ScratchDatabase, ServerProcess, postgres_pids


@pytest.fixture(scope="session", autouse=True)
def no_postgres_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What starts an embedded PostgreSQL stops it: one still running on a data directory of
    the session's temporary folder after the last test fails the session (and is stopped)."""
    yield
    base = tmp_path_factory.getbasetemp()
    left = postgres_pids(base)
    for pid in left:
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    assert not left, f"embedded PostgreSQL left running under {base}: pids {left}"


@pytest.fixture(scope="session")
def test_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchDatabase]:
    db = ScratchDatabase(tmp_path_factory.mktemp("pg"))
    migrate.upgrade(db.url)
    db.token = issue_token(db.url, "tests", "admin")  # kept: truncate() spares teams and tokens
    yield db
    db.drop()


@pytest.fixture
def db(test_db: ScratchDatabase) -> ScratchDatabase:
    """The session database, emptied."""
    test_db.truncate()
    return test_db


@pytest.fixture
def engine(db: ScratchDatabase) -> Iterator[Engine]:
    engine = create_db_engine(db.url, pool_size=2, max_overflow=2)
    yield engine
    engine.dispose()


def server_settings(db: ScratchDatabase, tmp_path: Path, **overrides: object) -> ServerSettings:
    values: dict[str, object] = {
        "database_url": SecretStr(db.url_string),
        "data_dir": tmp_path / "data",
        "reaper_interval_s": 0.2,
        **overrides,
    }
    return ServerSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(db: ScratchDatabase, tmp_path: Path) -> Iterator[TestClient]:
    """The app in-process (its lifespan runs: engine, LISTEN thread, reaper), calling with an
    admin token of the session's team."""
    with TestClient(create_app(server_settings(db, tmp_path)), headers=db.auth_headers) as c:
        yield c


@pytest.fixture
def two_servers(db: ScratchDatabase) -> Iterator[list[ServerProcess]]:
    """Two ``hpo serve`` processes on the session database (emptied)."""
    servers = [ServerProcess(db.url_string, token=db.token).start() for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()
