"""Errors as the ``hpo`` user meets them: one or two lines saying what is wrong and what to do,
the traceback only with ``--debug`` or ``HPO_LOG_LEVEL=debug``; hints runnable as printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.auth.service import issue_token
from tests.api.helpers import study_body
from tests.support import ScratchDatabase, ServerProcess, hpo

pytestmark = pytest.mark.slow

NO_SUCH_DB = "postgresql://postgres@127.0.0.1:5432/no_such_db"


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string, token=db.token) as s:
        yield s


def short_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error of a failed command, checked to be short and without a traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


def test_a_missing_or_refused_token_says_how_to_get_one(
    server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    missing = short_error(hpo("study", "list", env={"HPO_API_URL": server.url}))
    assert "needs a token" in missing
    assert "HPO_API_TOKEN" in missing and "--token" in missing and "token create" in missing
    refused = short_error(hpo("study", "list", "--api", server.url, "--token", "hpo_nonsense"))
    assert "refused the token" in refused and "HPO_API_TOKEN" in refused
    reader = issue_token(db.url, "tests", "read")
    env = {"HPO_API_URL": server.url, "HPO_API_TOKEN": reader}
    spec = tmp_path / "study.json"
    spec.write_text(json.dumps(study_body("read-only")))
    forbidden = short_error(hpo("study", "create", str(spec), env=env))
    assert "'submit' role" in forbidden and "--role submit" in forbidden


def test_an_api_that_does_not_answer() -> None:
    error = short_error(hpo("study", "list", "--api", "http://127.0.0.1:1", "--token", "t"))
    assert "cannot reach the API at http://127.0.0.1:1" in error and "hpo serve" in error


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve", "--port", "1"]])
def test_a_wrong_database_url(command: list[str]) -> None:
    env = {"HPO_DATABASE_URL": NO_SUCH_DB}
    error = short_error(hpo(*command, env=env))
    assert 'database "no_such_db" does not exist' in error and "HPO_DATABASE_URL" in error
    for debug in ({"HPO_LOG_LEVEL": "debug"}, {}):
        args = command if debug else ["--debug", *command]
        traced = hpo(*args, env={**env, **debug})
        assert traced.returncode == 1 and "Traceback" in traced.stderr
        assert traced.stderr.rstrip().endswith(error.rstrip())


def test_a_wrong_setting() -> None:
    error = short_error(hpo("serve", env={"HPO_PORT": "eighty"}))
    assert "HPO_PORT" in error and "'eighty'" in error


def test_a_wrong_worker_setting_is_short_however_the_worker_is_started() -> None:
    env = {"HPO_API_URL": "http://127.0.0.1:9"}
    error = short_error(hpo("worker", "--slots", "-3", env=env))
    assert "HPO_SLOTS" in error and "(got -3)" in error
    module = subprocess.run(
        [sys.executable, "-m", "workers", "--slots", "-3"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )
    assert short_error(module) == error


def test_hints_run_as_printed_without_hpo_on_path(tmp_path: Path) -> None:
    """After the quick start `hpo` is in .venv/bin, not on PATH: the hint names its path."""
    result = hpo(
        "study", "list", env={"PATH": "/usr/bin:/bin", "HPO_API_URL": "http://127.0.0.1:1"},
        cwd=tmp_path,
    )  # fmt: skip
    (hint,) = re.findall(r"`([^`]*)`", short_error(result))
    assert hint.endswith(" serve") and not hint.startswith("hpo ")
    program = shlex.split(hint)[0]
    ran = subprocess.run(
        [program, "serve", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert ran.returncode == 0 and "usage: hpo serve" in ran.stdout
