"""GP through the service: how long an ask takes as a study grows, and what it costs others.

1. **GP ask latency.** A GP study (Optuna's ``GPSampler``, four float parameters, a smooth
   objective) is filled to 50, 200 and 500 finished trials (enqueued random points, handed out
   without sampling and completed at once, so filling is fast), and at each size ``--asks``
   asks are timed (each is completed before the next, so the study grows by that many).
   Printed: p50 / p99 / max per size, and whether ``greenlet`` is importable (without it
   Optuna falls back to sequential L-BFGS-B and says so in a warning).
2. **Lease calls on another study while GP samples.** A worker holds a lease on a TPE study
   and sends heartbeat and report calls back to back for ``--seconds`` seconds, first alone,
   then while another client asks the GP study (at its largest size) in a loop. Printed: p50 /
   p99 of those calls in both phases and their ratio.

One ``hpo serve`` process on a scratch database; client and server share this machine's cores.
With ``--second-server``, the lease calls go to a second ``hpo serve`` process on the same
database instead: the two phases then differ only by the CPU the GP asks take, not by anything
the two share inside one process (the GIL, the thread pool, the connection pool).

    python bench/gp_ask.py [--sizes 50 200 500] [--asks 20] [--seconds 20] [--seed 0]
                           [--second-server]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, percentile, scratch_database, serve

PARAMS = ("x0", "x1", "x2", "x3")


def objective(params: dict[str, Any]) -> float:
    """A smooth bowl with a ripple: the minimum 0 is at 0.3 in every coordinate."""
    xs = [float(params[p]) - 0.3 for p in PARAMS]
    return sum(x**2 + 0.05 * (1 - math.cos(8 * x)) for x in xs)


def create(client: httpx.Client, name: str, sampler: str, seed: int) -> int:
    body = {
        "name": name,
        "directions": ["minimize"],
        "search_space": {p: {"type": "float", "low": 0.0, "high": 1.0} for p in PARAMS},
        "sampler": {"name": sampler, "options": {"seed": seed}},
        "lease_seconds": 600,
    }
    answer = client.post("/api/v1/studies", json=body)
    answer.raise_for_status()
    return int(answer.json()["id"])


def ask(client: httpx.Client, study_id: int) -> dict[str, Any]:
    answer = client.post(f"/api/v1/studies/{study_id}/trials", json={"worker_id": "bench"})
    if answer.status_code != 200:
        raise RuntimeError(f"ask answered {answer.status_code}: {answer.text}")
    trial: dict[str, Any] = answer.json()
    return trial


def complete(client: httpx.Client, trial: dict[str, Any]) -> None:
    body = {"lease_token": trial["lease"]["token"], "values": [objective(trial["params"])]}
    client.post(f"/api/v1/trials/{trial['id']}/complete", json=body).raise_for_status()


def fill(client: httpx.Client, study_id: int, target: int, have: int, rng: random.Random) -> int:
    """Finished trials up to ``target``: enqueued points, asked (no sampling) and completed."""
    for _ in range(target - have):
        params = {p: rng.random() for p in PARAMS}
        client.post(
            f"/api/v1/studies/{study_id}/trials/enqueue", json={"params": params}
        ).raise_for_status()
        complete(client, ask(client, study_id))
    return max(target, have)


def time_asks(client: httpx.Client, study_id: int, n: int) -> list[float]:
    took = []
    for _ in range(n):
        start = time.perf_counter()
        trial = ask(client, study_id)
        took.append(time.perf_counter() - start)
        complete(client, trial)
    return took


def lease_calls(client: httpx.Client, trial: dict[str, Any], seconds: float) -> list[float]:
    """Heartbeat and report calls back to back on one leased trial for ``seconds``."""
    token = trial["lease"]["token"]
    took: list[float] = []
    step = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        if step % 2 == 0:
            path, body = "heartbeat", {"lease_token": token}
        else:
            path, body = "report", {"lease_token": token, "step": step, "value": 1.0 / (1 + step)}
        client.post(f"/api/v1/trials/{trial['id']}/{path}", json=body).raise_for_status()
        took.append(time.perf_counter() - start)
        step += 1
    return took


def row(label: str, took: list[float]) -> str:
    return (
        f"{label:<34} n={len(took):>5}  p50 {1000 * percentile(took, 50):8.1f} ms"
        f"  p99 {1000 * percentile(took, 99):8.1f} ms  max {1000 * max(took):8.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--asks", type=int, default=20, help="timed GP asks per size")
    parser.add_argument("--seconds", type=float, default=20.0, help="each lease-call phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--second-server", action="store_true", help="lease calls on a second server process"
    )
    args = parser.parse_args()
    print(f"greenlet importable: {importlib.util.find_spec('greenlet') is not None}")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        token = admin_token(url)
        with (
            serve(url, port=8791) as server,
            serve(url, port=8792) if args.second_server else contextlib.nullcontext(server) as peer,
        ):
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=600) as client:
                gp = create(client, "gp", "gp", args.seed)
                have = 0
                print("\nGP ask latency (one server process)")
                for size in sorted(args.sizes):
                    have = fill(client, gp, size, have, rng)
                    took = time_asks(client, gp, args.asks)
                    have += args.asks
                    print(row(f"GP ask at {size} trials", took))

                lease_client = httpx.Client(base_url=peer.url, headers=headers, timeout=600)
                other = create(lease_client, "other", "tpe", args.seed)
                trial = ask(lease_client, other)
                where = "a second server process" if args.second_server else "the same server"
                print(f"\nheartbeat/report on another study on {where}, {args.seconds:g} s each")
                alone = lease_calls(lease_client, trial, args.seconds)
                print(row("alone", alone))

                stop = threading.Event()
                gp_asks: list[float] = []

                def ask_gp_in_a_loop() -> None:
                    with httpx.Client(base_url=server.url, headers=headers, timeout=600) as gp_c:
                        while not stop.is_set():
                            gp_asks.extend(time_asks(gp_c, gp, 1))

                asker = threading.Thread(target=ask_gp_in_a_loop)
                asker.start()
                try:
                    busy = lease_calls(lease_client, trial, args.seconds)
                finally:
                    stop.set()
                    asker.join()
                    lease_client.close()
                print(row("while GP asks run in a loop", busy))
                print(row("  (those GP asks)", gp_asks))
                ratio = percentile(busy, 99) / percentile(alone, 99)
                print(f"p99 ratio busy / alone: {ratio:.2f}")


if __name__ == "__main__":
    main()
