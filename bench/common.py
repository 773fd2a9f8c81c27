"""Shared pieces of the benchmarks: a scratch database, a server process, statistics."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg2
from psycopg2 import sql

from service.db import migrate
from service.db.embedded import start_embedded
from service.db.url import normalize_url, render_url

LOCAL_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _admin_dsn(tmp: Path) -> str:
    explicit = os.environ.get("HPO_BENCH_ADMIN_URL")
    if explicit:
        return explicit
    try:
        psycopg2.connect(LOCAL_ADMIN_DSN, connect_timeout=2).close()
        return LOCAL_ADMIN_DSN
    except psycopg2.OperationalError:
        url = start_embedded(tmp / "embedded", database="postgres")
        return render_url(url.set(drivername="postgresql"))


@contextmanager
def scratch_database(tmp: Path) -> Iterator[str]:
    """A fresh database with both schemas; yields its SQLAlchemy URL, drops it afterwards."""
    admin = _admin_dsn(tmp)
    name = f"hpo_bench_{uuid.uuid4().hex[:8]}"
    _admin(admin, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = normalize_url(admin).set(database=name)
    try:
        migrate.upgrade(url)
        yield render_url(url)
    finally:
        _admin(admin, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _admin(dsn: str, statement: sql.Composable) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@contextmanager
def server_process(database_url: str, port: int = 8765, workers: int = 1) -> Iterator[str]:
    with serve(database_url, port, workers) as server:
        yield server.url


@contextmanager
def serve(
    database_url: str,
    port: int = 8765,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """``hpo serve`` in a subprocess (``env`` adds ``HPO_*`` settings), stopped at the end."""
    env = {
        **os.environ,
        "HPO_DATABASE_URL": database_url,
        "HPO_PORT": str(port),
        "HPO_WORKERS": str(workers),
        "HPO_LOG_LEVEL": "warning",
        **(env or {}),
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "service", "serve"]
    with subprocess_server(command, base + "/readyz", env=env) as proc:
        yield Server(base, proc.pid)


@contextmanager
def subprocess_server(
    command: Sequence[str],
    ready_url: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` in a subprocess, yielded once ``ready_url`` answers 200; stopped at the
    end. Fails if it exits or is not ready within ``timeout_s``."""
    proc = subprocess.Popen(list(command), env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(ready_url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} did not start")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies_s: Sequence[float]) -> dict[str, float]:
    total = sum(latencies_s)
    return {
        "per_s": len(latencies_s) / total if total else float("nan"),
        "p50_ms": 1000 * statistics.median(latencies_s),
        "p99_ms": 1000 * percentile(latencies_s, 99),
    }


def admin_token(database_url: str, team: str = "bench") -> str:
    """``HPO_BENCH_TOKEN`` if set, else a new admin token of ``team`` from ``hpo token
    create``."""
    explicit = os.environ.get("HPO_BENCH_TOKEN")
    if explicit:
        return explicit
    return new_token(database_url, team, "admin")


def new_token(database_url: str, team: str, role: str) -> str:
    """A new token of ``team`` with ``role``, from ``hpo token create``."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "token", "create", "--team", team, "--role", role],
        env={**os.environ, "HPO_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"hpo token create failed: {done.stderr.strip()}")
    return done.stdout.strip()
