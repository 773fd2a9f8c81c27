"""The ``hpo`` command in subprocesses: db upgrade, serve (and its refusal), study commands."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.api.helpers import study_body
from tests.support import ScratchDatabase, ServerProcess, hpo

pytestmark = pytest.mark.slow


@pytest.fixture
def server(db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(db.url_string, token=db.token) as s:
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
        ["study", "trials"],
        ["study", "best"],
        ["study", "export"],
        ["study", "enqueue"],
        ["study", "pause"],
        ["study", "resume"],
        ["study", "stop"],
        ["study", "delete"],
        ["worker"],
        ["worker", "list"],
        ["demo"],
        ["db", "status"],
        ["token"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["slurm"],
        ["slurm", "submit"],
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
    env = {"HPO_API_URL": server.url, "HPO_API_TOKEN": server.token}
    assert hpo("study", "list", env={"HPO_API_URL": server.url}).returncode == 1  # no token
    created = hpo("study", "create", str(spec_file), env=env)
    assert created.returncode == 0, created.stderr
    assert "created study" in created.stdout
    duplicate = hpo("study", "create", str(spec_file), env=env)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    listed = hpo("study", "list", env=env)
    assert "from-yaml" in listed.stdout and "running" in listed.stdout
    shown = hpo("study", "show", "from-yaml", env=env)
    assert shown.returncode == 0 and shown.stdout.startswith("from-yaml  (id ")
    as_json = hpo("study", "show", "from-yaml", "--json", env=env)
    assert json.loads(as_json.stdout)["study"]["name"] == "from-yaml"
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "search_space": {"a": {"type": "float", "low": 2, "high": 1}}}')
    refused = hpo("study", "create", str(bad), env=env)
    assert refused.returncode == 1 and "low" in refused.stderr
    listed_over_http = httpx.get(f"{server.url}/api/v1/studies", headers=server.headers).json()
    assert listed_over_http["items"][0]["name"] == "from-yaml"


def test_token_create_list_revoke(server: ServerProcess, db: ScratchDatabase) -> None:
    env = {"HPO_DATABASE_URL": db.url_string}
    created = hpo(
        "token", "create", "--team", "ml-infra", "--role", "worker", "--name", "ci", env=env
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert created.stdout == token + "\n" and token.startswith("hpo_")  # only the token
    auth = {"Authorization": f"Bearer {token}"}
    whoami = httpx.get(f"{server.url}/api/v1/whoami", headers=auth).json()
    assert whoami["team"] == "ml-infra" and whoami["role"] == "worker"

    listed = hpo("token", "list", "--team", "ml-infra", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if " ci" in line]
    assert "ml-infra" in row and "worker" in row and "active" in row and token[:12] in row
    assert token not in listed.stdout

    revoked = hpo("token", "revoke", str(whoami["token_id"]), env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in hpo("token", "list", "--team", "ml-infra", env=env).stdout
    # the server caches a token for HPO_AUTH_CACHE_S (5 s): revocation holds within that
    deadline = time.monotonic() + 10
    while httpx.get(f"{server.url}/api/v1/whoami", headers=auth).status_code != 401:
        assert time.monotonic() < deadline, "revoked token still accepted"
        time.sleep(0.5)

    bad_role = hpo("token", "create", "--team", "x", "--role", "owner", env=env)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr
    bad_team = hpo("token", "create", "--team", "no spaces", "--role", "read", env=env)
    assert bad_team.returncode == 1 and "team name" in bad_team.stderr
    assert hpo("token", "revoke", "999999", env=env).returncode == 1


def readme_study(language: str) -> str:
    """README's study block in ``language`` (json or yaml), as written."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    (block,) = re.findall(rf"^```{language}\n(.*?)^```$", readme, re.S | re.M)
    return str(block)


def test_readme_studies_are_created_as_written(server: ServerProcess, tmp_path: Path) -> None:
    """README's JSON study and its YAML study (numbers like 1e-5 in both) go through
    `hpo study create` as written, and make the same study."""
    env = {"HPO_API_URL": server.url, "HPO_API_TOKEN": server.token}
    made = []
    for language in ("json", "yaml"):
        path = tmp_path / f"study.{language}"
        path.write_text(readme_study(language))
        created = hpo("study", "create", str(path), env=env)
        assert created.returncode == 0, created.stderr
        shown = hpo("study", "show", "digits-mlp", "--json", env=env)
        study = json.loads(shown.stdout)["study"]
        assert study["search_space"]["lr"]["low"] == 1e-5
        made.append({k: v for k, v in study.items() if k not in ("id", "created_at", "updated_at")})
        deleted = hpo("study", "delete", "digits-mlp", "--yes", env=env)
        assert deleted.returncode == 0, deleted.stderr
    assert made[0] == made[1]


def test_study_files_are_read_by_their_kind(server: ServerProcess, tmp_path: Path) -> None:
    env = {"HPO_API_URL": server.url, "HPO_API_TOKEN": server.token}
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x",}')
    refused = hpo("study", "create", str(broken), env=env)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: ") and "not valid JSON" in refused.stderr
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    refused = hpo("study", "create", str(listed), env=env)
    assert refused.returncode == 1 and "not a study" in refused.stderr
    assert len(refused.stderr.splitlines()) <= 2
