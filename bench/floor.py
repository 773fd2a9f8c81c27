"""The floor under one ask+tell through the service: one bare HTTP request, one durable commit.

Whatever the service does, a sequential client that asks and tells in one request (complete
with ``next``) pays at least one HTTP request through the same stack (httpx, uvicorn with the
same loop and parser, FastAPI validating a small body, a synchronous endpoint's thread-pool
hop) and one committed write to PostgreSQL (its ``fsync``). This prints both, measured on this
machine, so ``bench/ask_tell.py``'s figures can be read against them: how far the service is
above the floor, and whether a target such as "10x Optuna RDB" fits above it at all.

- request: ``POST /floor/{id}`` with a body like complete's, answered by a ``def`` endpoint
  (``sync``, what the service's hot endpoints are) or an ``async def`` one (``async``, no
  thread hop), answering a ``Response`` as the service does, served by uvicorn in a
  subprocess;
- commit: ``INSERT`` of one row and ``COMMIT`` with psycopg2, on a scratch database on the
  same PostgreSQL as the other benchmarks.

Nothing is asserted.

    python bench/floor.py [--iters 2000] [--blocks 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg2
from fastapi import FastAPI, Response
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import scratch_database, subprocess_server, summary

app = FastAPI()


class _Body(BaseModel):
    lease_token: str
    values: list[float]


class _Answer(BaseModel):
    id: int
    state: str
    params: dict[str, float | int]


def _answer(item: int) -> Response:
    """Answered as the service's hot endpoints answer: serialised once by pydantic-core, in a
    ``Response`` that FastAPI passes through (a returned model would cost a second thread hop
    for its validation, which the service does not pay)."""
    answer = _Answer(id=item, state="complete", params={"lr": 0.01, "n_layers": 2})
    return Response(answer.model_dump_json(), media_type="application/json")


@app.post("/floor/{item}/sync")
def _sync(item: int, body: _Body) -> Response:
    return _answer(item)


@app.post("/floor/{item}/async")
async def _async(item: int, body: _Body) -> Response:
    return _answer(item)


@contextmanager
def _server(port: int) -> Iterator[str]:
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "uvicorn", "bench.floor:app", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with subprocess_server(
        [*command, "--log-level", "warning", "--no-access-log"],
        base + "/openapi.json",
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=root,
        timeout_s=30,
    ):
        yield base


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    per_block = max(1, args.iters // args.blocks)
    timings: dict[str, list[float]] = {"sync": [], "async": [], "commit": []}
    with (
        tempfile.TemporaryDirectory() as tmp,
        scratch_database(Path(tmp)) as url,
        _server(args.port) as base,
        httpx.Client(timeout=30) as http,
    ):
        conn = psycopg2.connect(url.replace("+psycopg2", ""))
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE floor_rows (id bigserial PRIMARY KEY, value float8)")
        conn.commit()
        body = {"lease_token": "x" * 32, "values": [0.5]}

        def request(kind: str) -> Callable[[int], None]:
            def one(i: int) -> None:
                http.post(f"{base}/floor/{i}/{kind}", json=body).raise_for_status()

            return one

        def commit(i: int) -> None:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO floor_rows (value) VALUES (%s)", (float(i),))
            conn.commit()

        runs = {"sync": request("sync"), "async": request("async"), "commit": commit}
        for run in runs.values():  # warm up: connections, first-call costs
            for i in range(50):
                run(i)
        for _ in range(args.blocks):  # in turns, so drift weighs on all alike
            for name, run in runs.items():
                for i in range(per_block):
                    t0 = time.perf_counter()
                    run(i)
                    timings[name].append(time.perf_counter() - t0)
        conn.close()
    for name, label in (
        ("sync", "HTTP request, def endpoint (thread hop)"),
        ("async", "HTTP request, async def endpoint"),
        ("commit", "INSERT + COMMIT"),
    ):
        s = summary(timings[name])
        mean_ms = 1000 / s["per_s"]
        print(
            f"{label:42} mean {mean_ms:6.3f} ms  p50 {s['p50_ms']:6.3f} ms  "
            f"p99 {s['p99_ms']:6.3f} ms"
        )
    floor = sum(1 / summary(timings[name])["per_s"] for name in ("sync", "commit"))
    print(
        f"floor of one ask+tell (one request, one commit): {1000 * floor:.3f} ms "
        f"= {1 / floor:.0f} trials/s at most"
    )


if __name__ == "__main__":
    main()
