"""Load: 64 concurrent workers across 16 studies against one server process, for 5 minutes.

The workers are simulated: light HTTP clients (one asyncio task and one keep-alive connection
each, all in this process) that do what a real worker does over the API, with the same
requests and headers: claim (long poll, ``Idempotency-Key``) → a few reports (each answered
with the median pruner's decision) → complete (pruned when the pruner said so). 64 real
PyTorch workers cannot run on a 2-core machine beside the server and PostgreSQL; what is
measured here is the service, not training. ``--step-s`` stands for the training between two
calls; heartbeats are left out (a trial lasts well under its lease).

Each of the 16 studies (TPE, three parameters) has a budget of ``--study-trials``; a finished
study is deleted and replaced, so the server holds a steady amount of live data and its memory
can be judged over time. Workers claim from any study, as real ones do (fairness picks).

Printed: trials/s, p50/p99 of claim / report / complete, errors (non-2xx answers and
transport errors; must be 0), PostgreSQL connections of the server over time
(``pg_stat_activity`` of the bench database) against its pool settings, and the server's RSS
over time.

    python bench/load.py [--duration 300] [--workers 64] [--studies 16] [--reports 3]
                         [--step-s 0.05] [--study-trials 300] [--pool-size 20] [--max-overflow 20]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, percentile, scratch_database, serve
from service.db.url import normalize_url, render_url

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 6},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
}


@dataclass
class Tally:
    """What the simulated workers saw (one event loop: no locking needed)."""

    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"claim": [], "report": [], "complete": []}
    )
    errors: Counter[str] = field(default_factory=Counter)
    finished: int = 0
    pruned: int = 0
    no_trial: int = 0  # claims that came back empty after their long poll


@dataclass(frozen=True)
class Sample:
    at_s: float
    rss_mb: float
    connections: int  # the server's connections to the bench database
    active: int  # of which running a statement
    finished: int


def objective(params: dict[str, Any]) -> float:
    lr: float = params["lr"]
    n_layers: int = params["n_layers"]
    batch_size: int = params["batch_size"]
    return (math.log10(lr) + 2.5) ** 2 + 0.1 * n_layers + batch_size / 1000


class LoadRun:
    def __init__(self, api: str, token: str, args: argparse.Namespace) -> None:
        self.api = api + "/api/v1"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.args = args
        self.tally = Tally()
        self.stop_at = 0.0

    async def run(self) -> None:
        async with httpx.AsyncClient(headers=self.headers, timeout=30) as admin:
            studies = [await self._create_study(admin) for _ in range(self.args.studies)]
            self.stop_at = time.monotonic() + self.args.duration
            workers = [asyncio.create_task(self._worker(i)) for i in range(self.args.workers)]
            await self._rotate(admin, studies)
            await asyncio.gather(*workers)

    async def _create_study(self, admin: httpx.AsyncClient) -> int:
        body = {
            "name": f"load-{uuid.uuid4().hex[:8]}",
            "search_space": SPACE,
            "sampler": {"name": "tpe"},
            "pruner": {"name": "median", "options": {"n_startup_trials": 5}},
            "max_trials": self.args.study_trials,
            "lease_seconds": 120,
        }
        response = await admin.post(f"{self.api}/studies", json=body)
        response.raise_for_status()
        return int(response.json()["id"])

    async def _rotate(self, admin: httpx.AsyncClient, studies: list[int]) -> None:
        """Replace each completed study by a new one (deleting it) until the end."""
        while time.monotonic() < self.stop_at:
            await asyncio.sleep(1.0)
            for i, study_id in enumerate(studies):
                got = await admin.get(f"{self.api}/studies/{study_id}")
                if got.status_code != 200:
                    self.tally.errors[f"get study {got.status_code}"] += 1
                elif got.json()["state"] == "completed":
                    studies[i] = await self._create_study(admin)
                    gone = await admin.delete(f"{self.api}/studies/{study_id}")
                    if gone.status_code >= 300:
                        self.tally.errors[f"delete study {gone.status_code}"] += 1

    async def _worker(self, index: int) -> None:
        worker_id = f"load-{index}"
        async with httpx.AsyncClient(headers=self.headers, timeout=60) as http:
            while time.monotonic() < self.stop_at:
                try:
                    await self._one_trial(http, worker_id)
                except httpx.TransportError as exc:
                    self.tally.errors[f"transport {type(exc).__name__}"] += 1
                    await asyncio.sleep(0.5)

    async def _call(
        self, http: httpx.AsyncClient, kind: str, path: str, body: Any, **kw: Any
    ) -> httpx.Response:
        started = time.perf_counter()
        response = await http.post(f"{self.api}{path}", json=body, **kw)
        self.tally.latencies[kind].append(time.perf_counter() - started)
        if response.status_code >= 300:
            self.tally.errors[f"{kind} {response.status_code}"] += 1
        return response

    async def _one_trial(self, http: httpx.AsyncClient, worker_id: str) -> None:
        claim = {"worker_id": worker_id, "wait_seconds": 5.0}
        key = {"Idempotency-Key": uuid.uuid4().hex}
        got = await self._call(http, "claim", "/trials/claim", claim, headers=key)
        if got.status_code == 204:
            self.tally.no_trial += 1
            return
        if got.status_code != 200:
            await asyncio.sleep(0.5)
            return
        trial = got.json()
        token = trial["lease"]["token"]
        value = objective(trial["params"])
        for step in range(self.args.reports):
            await asyncio.sleep(self.args.step_s)
            noisy = value * (1 + 1.0 / (step + 1)) * random.uniform(0.9, 1.1)
            body = {"lease_token": token, "step": step, "value": noisy}
            answer = await self._call(http, "report", f"/trials/{trial['id']}/report", body)
            if answer.status_code == 200 and answer.json()["should_prune"]:
                await self._complete(http, trial["id"], {"lease_token": token, "state": "pruned"})
                self.tally.pruned += 1
                return
        await asyncio.sleep(self.args.step_s)
        await self._complete(http, trial["id"], {"lease_token": token, "values": [value]})

    async def _complete(self, http: httpx.AsyncClient, trial_id: int, body: Any) -> None:
        done = await self._call(http, "complete", f"/trials/{trial_id}/complete", body)
        if done.status_code == 200:
            self.tally.finished += 1


class Sampler:
    """Every ``every_s``: the server's RSS (from /proc) and its connections to the database."""

    def __init__(self, pid: int, dsn: str, database: str, tally: Tally, every_s: float) -> None:
        self._pid = pid
        self._dsn = dsn
        self._database = database
        self._tally = tally
        self._every = every_s
        self._stop = threading.Event()
        self.samples: list[Sample] = []
        self.backends: set[int] = set()  # every server connection seen (churn shows here)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        began = time.monotonic()
        conn = psycopg2.connect(self._dsn, application_name="bench-load-sampler")
        conn.autocommit = True
        try:
            while not self._stop.wait(self._every):
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT pid, state = 'active' FROM pg_stat_activity"
                        " WHERE datname = %s AND application_name LIKE 'hpo-service%%'",
                        (self._database,),
                    )
                    rows = cur.fetchall()
                total, active = len(rows), sum(1 for _, busy in rows if busy)
                self.backends.update(pid for pid, _ in rows)
                self.samples.append(
                    Sample(
                        time.monotonic() - began,
                        _rss_mb(self._pid),
                        int(total),
                        int(active),
                        self._tally.finished,
                    )
                )
        finally:
            conn.close()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass(frozen=True)
class CpuUse:
    server_s: float
    client_s: float
    machine_busy: float  # 0..1 over the run, all cores


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def report(
    args: argparse.Namespace, tally: Tally, sampler: Sampler, wall_s: float, cpu: CpuUse
) -> None:
    samples = sampler.samples
    print(
        f"== load: {args.workers} simulated workers, {args.studies} studies (TPE, median "
        f"pruner, {args.study_trials} trials each, replaced when done), {args.reports} reports "
        f"per trial, {args.step_s * 1000:.0f} ms between calls, {wall_s:.0f} s"
    )
    print(
        f"  trials finished    {tally.finished} ({tally.pruned} pruned): "
        f"{tally.finished / wall_s:.1f} trials/s; empty claims {tally.no_trial}"
    )
    for kind, values in tally.latencies.items():
        if values:
            print(
                f"  {kind:<9} n={len(values):>7}  p50 {1000 * statistics.median(values):6.1f} ms"
                f"  p99 {1000 * percentile(values, 99):6.1f} ms"
                f"  max {1000 * max(values):7.1f} ms"
            )
    print(
        f"  CPU                server {cpu.server_s:.0f} s, this client {cpu.client_s:.0f} s, "
        f"machine {100 * cpu.machine_busy:.0f} % busy ({os.cpu_count()} cores; PostgreSQL "
        "and anything else running take the rest)"
    )
    errors = sum(tally.errors.values())
    detail = ", ".join(f"{n} x {k}" for k, n in tally.errors.most_common())
    print(f"  errors             {errors}" + (f" ({detail})" if detail else ""))
    bound = args.pool_size + args.max_overflow + 1
    if samples:
        print(
            f"  DB connections     max {max(s.connections for s in samples)} "
            f"(max active {max(s.active for s in samples)}); bound: pool_size {args.pool_size} "
            f"+ max_overflow {args.max_overflow} + 1 listener = {bound}; "
            f"{len(sampler.backends)} different connections seen in {len(samples)} samples"
        )
        steady = samples[len(samples) // 5 :] or samples
        rss = [s.rss_mb for s in steady]
        slope = _slope([s.at_s for s in steady], rss) * 60
        print(
            f"  server RSS         {samples[0].rss_mb:.0f} MB first sample, after warm-up "
            f"min {min(rss):.0f} / max {max(rss):.0f} MB, trend {slope:+.2f} MB/min"
        )
        print("  over time:   t (s)   RSS (MB)   DB conns (active)   trials finished")
        step = max(1, len(samples) // 12)
        for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
            print(
                f"             {s.at_s:6.0f}   {s.rss_mb:8.1f}   {s.connections:8d} ({s.active:3d})"
                f"   {s.finished:15d}"
            )


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--studies", type=int, default=16)
    parser.add_argument("--reports", type=int, default=3, help="reports per trial")
    parser.add_argument("--step-s", type=float, default=0.05, help="pause between calls")
    parser.add_argument("--study-trials", type=int, default=300, help="budget of each study")
    parser.add_argument("--pool-size", type=int, default=20, help="server's HPO_POOL_SIZE")
    parser.add_argument("--max-overflow", type=int, default=20, help="HPO_MAX_OVERFLOW")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    settings = {"HPO_POOL_SIZE": str(args.pool_size), "HPO_MAX_OVERFLOW": str(args.max_overflow)}
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        token = admin_token(url)
        database = str(normalize_url(url).database)
        dsn = render_url(normalize_url(url).set(drivername="postgresql"))
        with serve(url, args.port, env=settings) as server:
            run = LoadRun(server.url, token, args)
            every = max(1.0, args.duration / 60)
            with Sampler(server.pid, dsn, database, run.tally, every) as sampler:
                began, server_cpu, busy = time.monotonic(), _cpu_s(server.pid), _machine_busy()
                client_cpu = resource.getrusage(resource.RUSAGE_SELF)
                asyncio.run(run.run())
                wall = time.monotonic() - began
                client_end = resource.getrusage(resource.RUSAGE_SELF)
                busy_end = _machine_busy()
                cpu = CpuUse(
                    _cpu_s(server.pid) - server_cpu,
                    client_end.ru_utime
                    + client_end.ru_stime
                    - client_cpu.ru_utime
                    - client_cpu.ru_stime,
                    (busy_end[0] - busy[0]) / max(1, busy_end[1] - busy[1]),
                )
        report(args, run.tally, sampler, wall, cpu)
    return 1 if run.tally.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
