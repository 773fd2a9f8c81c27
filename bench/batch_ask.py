"""Batch asks: leasing trials one request each vs ``count`` trials per request.

A study (four float parameters) is asked for ``--trials`` trials by one client, either with
``--trials`` single asks or with asks of ``count`` 8 and 64, each batch completed before the
next ask (as a worker with that many slots would). Printed per sampler: milliseconds per
leased trial (ask only, and ask + complete) and requests made. The sampling work per trial
is the same in every mode; what a batch saves is the round trips and, per request, the ask
lock and the study's refresh.

    python bench/batch_ask.py [--trials 512] [--samplers random tpe]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, scratch_database, serve

_SPACE = {f"x{i}": {"type": "float", "low": -1.0, "high": 1.0} for i in range(4)}


def run(base: str, headers: dict[str, str], sampler: str, trials: int, count: int | None) -> str:
    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        body = {
            "name": f"batch-{sampler}-{count}",
            "search_space": _SPACE,
            "sampler": {"name": sampler, "options": {"seed": 0}},
            "max_trials": trials,
        }
        created = http.post("/api/v1/studies", json=body)
        created.raise_for_status()
        sid = created.json()["id"]
        asking = total = 0.0
        requests = leased = 0
        while leased < trials:
            start = time.perf_counter()
            if count is None:
                answer = http.post(f"/api/v1/studies/{sid}/trials", json={"worker_id": "w"})
                batch = [answer.json()]
            else:
                answer = http.post(
                    f"/api/v1/studies/{sid}/trials", json={"worker_id": "w", "count": count}
                )
                batch = answer.json()["trials"]
            asked = time.perf_counter()
            for trial in batch:
                value = sum(v * v for v in trial["params"].values())
                http.post(
                    f"/api/v1/trials/{trial['id']}/complete",
                    json={"lease_token": trial["lease"]["token"], "values": [value]},
                ).raise_for_status()
            asking += asked - start
            total += time.perf_counter() - start
            requests += 1
            leased += len(batch)
    mode = "single asks" if count is None else f"count {count}"
    return (
        f"{sampler:<8} {mode:<12} {1000 * asking / leased:>10.2f} {1000 * total / leased:>14.2f}"
        f" {requests:>9}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=512)
    parser.add_argument("--samplers", nargs="+", default=["random", "tpe"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        headers = {"Authorization": f"Bearer {admin_token(url)}"}
        with serve(url, port=8794) as server:
            print(f"{args.trials} trials per run, one client, one server process")
            columns = ("ask ms/trial", "+complete ms", "requests")
            print(f"{'sampler':<8} {'mode':<12} {columns[0]:>10} {columns[1]:>14} {columns[2]:>9}")
            for sampler in args.samplers:
                for count in (None, 8, 64):
                    print(run(server.url, headers, sampler, args.trials, count), flush=True)


if __name__ == "__main__":
    main()
