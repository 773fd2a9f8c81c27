"""Test support: a PostgreSQL to test against, and real uvicorn servers in subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx
import psycopg2
from psycopg2 import sql

from service.db.embedded import leave_embedded, start_embedded
from service.db.url import normalize_url, render_url

LOCAL_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

OPTUNA_TABLES = (
    "trial_heartbeats",
    "trial_intermediate_values",
    "trial_params",
    "trial_system_attributes",
    "trial_user_attributes",
    "trial_values",
    "trials",
    "study_directions",
    "study_system_attributes",
    "study_user_attributes",
    "studies",
)


def local_postgres_reachable() -> bool:
    try:
        psycopg2.connect(LOCAL_ADMIN_DSN, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


class ScratchDatabase:
    """A fresh database for one test session: on the machine's PostgreSQL when it answers
    (127.0.0.1:5432, user postgres), else on the embedded PostgreSQL the service ships."""

    def __init__(self, tmp_dir: Path) -> None:
        self.name = f"hpo_test_{uuid.uuid4().hex[:10]}"
        self._embedded: Path | None = None
        explicit = os.environ.get("HPO_TEST_DATABASE_URL")
        if explicit:
            self.admin_dsn = explicit
        elif local_postgres_reachable():
            self.admin_dsn = LOCAL_ADMIN_DSN
        else:
            self._embedded = tmp_dir / "embedded"
            embedded = start_embedded(self._embedded, database="postgres")
            self.admin_dsn = render_url(embedded.set(drivername="postgresql"))
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.url = normalize_url(self.admin_dsn).set(database=self.name)
        # An admin token of the session's team, set once the schema exists (tests/conftest.py).
        self.token = ""

    @property
    def auth_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>`` for the session team's admin token."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def url_string(self) -> str:
        return render_url(self.url)

    def _admin(self, statement: sql.Composable) -> None:
        conn = psycopg2.connect(self.admin_dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def drop(self) -> None:
        """Drop the database (and stop the embedded PostgreSQL this started, if any)."""
        self._admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
        )
        if self._embedded is not None:
            leave_embedded(self._embedded)

    def truncate(self) -> None:
        """Empty every table but keep sequences going, so ids are never reused across tests
        (server processes keep per-study caches keyed by id)."""
        tables = [*OPTUNA_TABLES, "hpo_idempotency_keys", "hpo_workers"]
        conn = psycopg2.connect(render_url(self.url.set(drivername="postgresql")))
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL("TRUNCATE {} CASCADE").format(
                        sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                    )
                )
        finally:
            conn.close()


def postgres_pids(under: Path) -> list[int]:
    """PostgreSQL servers running on a data directory under ``under`` (Linux: from /proc)."""
    found = []
    root = str(under.resolve())
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if args and Path(args[0]).name == "postgres" and "-D" in args[:-1]:
            data = args[args.index("-D") + 1]
            if data == root or data.startswith(root + "/"):
                found.append(int(proc.name))
    return found


def hpo(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``hpo ARGS`` in a subprocess (``python -m service``), its output as text; ``env`` is
    added to this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``hpo serve`` in a subprocess (a real uvicorn), stopped with SIGTERM."""

    def __init__(
        self,
        database_url: str,
        *,
        workers: int = 1,
        env: Mapping[str, str] | None = None,
        token: str = "",
    ) -> None:
        self.token = token  # the token its clients call with (tests' ScratchDatabase.token)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {
            **os.environ,
            "HPO_DATABASE_URL": database_url,
            "HPO_PORT": str(self.port),
            "HPO_WORKERS": str(workers),
            "HPO_LOG_LEVEL": "warning",
            "HPO_REAPER_INTERVAL_S": "0.2",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, timeout_s: float = 30.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], env=self._env, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
