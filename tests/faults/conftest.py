"""Fault tests: real worker processes, real ``hpo serve`` processes, real PostgreSQL.

Each test runs one scenario of ``tests.faults.scenarios`` (also run, at full size, by
``bench/chaos.py``) and asserts on its report: every invariant of ``tests.faults.audit`` holds,
and every fault injected actually hit (a fault that never fired proves nothing).
"""

from __future__ import annotations

import pytest

from service.auth.service import issue_token
from tests.faults.cluster import Database
from tests.support import ScratchDatabase


@pytest.fixture
def database(db: ScratchDatabase) -> Database:
    """The session database, emptied, with its team's admin token, and a worker token of the
    same team for the worker processes."""
    return Database(db.url_string, db.token, issue_token(db.url, "tests", "worker"))
