"""The ``hpo`` command in subprocesses: db upgrade, serve (and its refusal), study commands."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.api.helpers import study_body
from tests.support import ScratchDatabase, ServerProcess

pytestmark = pytest.mark.slow


def hpo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string) as s:
        yield s


def test_help_for_every_command() -> None:
    for args in (
        [],
        ["serve"],
        ["db"],
        ["db", "upgrade"],
        ["study"],
        ["study", "create"],
        ["study", "list"],
        ["study", "show"],
    ):
        result = hpo(*args, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: hpo" in result.stdout


def test_serve_refuses_an_empty_database_and_upgrade_fixes_it(tmp_path: Path) -> None:
    fresh = ScratchDatabase(tmp_path)
    try:
        env = {"HPO_DATABASE_URL": fresh.url_string}
        refused = hpo("serve", "--port", "1", env=env)
        assert refused.returncode == 1
        assert "hpo db upgrade" in refused.stderr
        upgraded = hpo("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "up to date" in upgraded.stdout
        assert hpo("db", "status", env=env).returncode == 0
    finally:
        fresh.drop()


def test_plain_postgresql_urls_are_accepted(db: ScratchDatabase) -> None:
    plain = db.url_string.replace("postgresql+psycopg2://", "postgresql://")
    assert hpo("db", "status", env={"HPO_DATABASE_URL": plain}).returncode == 0
    sqlite = hpo("db", "status", env={"HPO_DATABASE_URL": "sqlite:///x.db"})
    assert sqlite.returncode != 0 and "PostgreSQL" in sqlite.stderr


def test_study_create_list_show(server: ServerProcess, tmp_path: Path) -> None:
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(yaml.safe_dump(study_body("from-yaml")))
    env = {"HPO_API_URL": server.url}
    created = hpo("study", "create", str(spec_file), env=env)
    assert created.returncode == 0, created.stderr
    assert "created study" in created.stdout
    duplicate = hpo("study", "create", str(spec_file), env=env)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    listed = hpo("study", "list", env=env)
    assert "from-yaml" in listed.stdout and "running" in listed.stdout
    shown = hpo("study", "show", "from-yaml", env=env)
    assert shown.returncode == 0 and '"name": "from-yaml"' in shown.stdout
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "search_space": {"a": {"type": "float", "low": 2, "high": 1}}}')
    refused = hpo("study", "create", str(bad), env=env)
    assert refused.returncode == 1 and "low" in refused.stderr
    assert httpx.get(f"{server.url}/api/v1/studies").json()["items"][0]["name"] == "from-yaml"
