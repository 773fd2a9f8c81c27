"""Dashboard read paths on a large study, through a real server, next to plain Optuna.

A study of ``--trials`` finished trials (85 % complete, 10 % pruned, 5 % failed) with ``--steps``
intermediate values each is bulk-inserted the way the service stores trials, next to a
two-objective study of the same size and a handful of small studies. Then, through ``hpo serve``
on the same PostgreSQL, each read is repeated ``--repeats`` times (after one untimed warm-up):

- summary: GET /studies/summary (every study, one page);
- history: GET /studies/{id}/history pages of 100 at random cursors, and of 1000;
- changes: a poll with the last cursor after 3 new trials were asked and completed;
- changes full sync: the whole study in pages of 1000 (the dashboard's first load);
- intermediate: GET /studies/{id}/intermediate pages of 1000 curves down-sampled to 50 points;
- importance: the background computation (first call to fresh), then cached answers;
- export: the whole CSV, streamed;
- optuna: ``optuna.load_study(...).trials`` on the same database (the whole study, as a client
  without the service would read it).

Prints p50/p99 per read; nothing is asserted.

    python bench/dashboard.py [--trials 10000] [--steps 20] [--repeats 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import optuna
import psycopg2
from psycopg2.extras import execute_values

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, percentile, scratch_database, server_process

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 6},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
}
DISTRIBUTIONS = {
    "lr": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
    "n_layers": optuna.distributions.IntDistribution(1, 6),
    "dropout": optuna.distributions.FloatDistribution(0.0, 0.5),
    "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64, 128, 256, 512]),
}

# Every call carries an admin token of the bench team (made once the database exists).
AUTH: dict[str, str] = {}


def objective(params: dict[str, Any]) -> float:
    return float(
        (math.log10(params["lr"]) + 2.5) ** 2
        + 0.1 * params["n_layers"]
        + params["dropout"]
        + params["batch_size"] / 1000
    )


def _sample(rng: random.Random) -> dict[str, Any]:
    return {
        "lr": 10 ** rng.uniform(-5, -1),
        "n_layers": rng.randint(1, 6),
        "dropout": rng.uniform(0.0, 0.5),
        "batch_size": rng.choice([16, 32, 64, 128, 256, 512]),
    }


def bulk_insert(dsn: str, study_id: int, n: int, steps: int, n_objectives: int) -> None:
    """``n`` finished trials as the service stores them (Optuna's rows plus ``hpo_trials``)."""
    rng = random.Random(study_id)
    dists = {k: optuna.distributions.distribution_to_json(d) for k, d in DISTRIBUTIONS.items()}
    start = dt.datetime(2026, 1, 1)
    states = ["COMPLETE"] * 17 + ["PRUNED"] * 2 + ["FAIL"]
    rows = []
    for i in range(n):
        began = start + dt.timedelta(seconds=10 * i)
        ended = began + dt.timedelta(seconds=rng.uniform(5, 60))
        state = rng.choice(states) if n_objectives == 1 else rng.choice(["COMPLETE"] * 9 + ["FAIL"])
        rows.append((i, study_id, state, began, ended))
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        ids = execute_values(
            cur,
            "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete)"
            " VALUES %s RETURNING trial_id",
            rows,
            page_size=5000,
            fetch=True,
        )
        trial_ids = [r[0] for r in ids]
        params, values, curves = [], [], []
        for trial_id, (_, _, state, _, _) in zip(trial_ids, rows, strict=True):
            p = _sample(rng)
            for name, value in p.items():
                internal = DISTRIBUTIONS[name].to_internal_repr(value)
                params.append((trial_id, name, internal, dists[name]))
            final = objective(p)
            if state == "COMPLETE":
                values.append((trial_id, 0, final, "FINITE"))
                if n_objectives == 2:
                    values.append((trial_id, 1, p["n_layers"] * (1 - p["dropout"]), "FINITE"))
            if n_objectives == 1:
                last = steps if state == "COMPLETE" else rng.randint(1, steps)
                curves += [
                    (trial_id, s, final * (1 + 3.0 / (s + 1)), "FINITE") for s in range(last)
                ]
        execute_values(
            cur,
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)"
            " VALUES %s",
            params,
            page_size=10000,
        )
        execute_values(
            cur,
            "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES %s",
            values,
            page_size=10000,
        )
        if curves:
            execute_values(
                cur,
                "INSERT INTO trial_intermediate_values"
                " (trial_id, step, intermediate_value, intermediate_value_type) VALUES %s",
                curves,
                page_size=10000,
            )
        execute_values(
            cur,
            "INSERT INTO hpo_trials (trial_id, study_id, attempt, worker_id, change_xid) VALUES %s",
            [(tid, study_id, 1, f"bench-{tid % 8}") for tid in trial_ids],
            template="(%s, %s, %s, %s, 0)",
            page_size=10000,
        )
        cur.execute("UPDATE hpo_studies SET n_started = %s WHERE study_id = %s", (n, study_id))
        cur.execute("ANALYZE")
    conn.close()


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up, not timed
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _ok(response: httpx.Response) -> Any:
    response.raise_for_status()
    return response.json()


def _create(http: httpx.Client, name: str, directions: list[str]) -> int:
    body = {
        "name": name,
        "directions": directions,
        "search_space": SPACE,
        "sampler": {"name": "random", "options": {"seed": 0}},
    }
    return int(_ok(http.post("/studies", json=body))["id"])


def bench_history(http: httpx.Client, sid: int, repeats: int) -> dict[str, list[float]]:
    cursors: list[str | None] = [None]
    while True:
        page = _ok(
            http.get(f"/studies/{sid}/history", params=_params(limit=100, cursor=cursors[-1]))
        )
        if page["next_cursor"] is None:
            break
        cursors.append(page["next_cursor"])
    rng = random.Random(1)
    return {
        "history page (100)": timed(
            lambda: _ok(
                http.get(
                    f"/studies/{sid}/history", params=_params(limit=100, cursor=rng.choice(cursors))
                )
            ),
            repeats,
        ),
        "history page (1000)": timed(
            lambda: _ok(http.get(f"/studies/{sid}/history", params={"limit": 1000})), repeats
        ),
    }


def _params(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def full_sync(http: httpx.Client, sid: int) -> str:
    cursor = None
    while True:
        body = _ok(http.get(f"/studies/{sid}/changes", params=_params(since=cursor, limit=1000)))
        cursor = body["cursor"]
        if not body["more"]:
            return str(cursor)


def bench_changes(http: httpx.Client, sid: int, repeats: int) -> dict[str, list[float]]:
    sync = timed(lambda: full_sync(http, sid), max(3, repeats // 10))
    cursor = full_sync(http, sid)
    polls = []
    for _ in range(repeats):
        for _ in range(3):
            trial = _ok(http.post(f"/studies/{sid}/trials", json={"worker_id": "bench"}))
            value = objective(trial["params"])
            _ok(
                http.post(
                    f"/trials/{trial['id']}/complete",
                    json={"lease_token": trial["lease"]["token"], "values": [value]},
                )
            )
        t0 = time.perf_counter()
        body = _ok(http.get(f"/studies/{sid}/changes", params={"since": cursor, "limit": 1000}))
        polls.append(time.perf_counter() - t0)
        assert len(body["items"]) >= 3, body
        cursor = body["cursor"]
    return {"changes poll (3 new trials)": polls, "changes full sync (pages of 1000)": sync}


def bench_importance(http: httpx.Client, sid: int, repeats: int) -> dict[str, list[float]]:
    t0 = time.perf_counter()
    while _ok(http.get(f"/studies/{sid}/importance"))["status"] != "fresh":
        time.sleep(0.05)
    first = time.perf_counter() - t0
    cached = timed(lambda: _ok(http.get(f"/studies/{sid}/importance")), repeats)
    return {"importance first (background, to fresh)": [first], "importance cached": cached}


def bench_export(base: str, sid: int, repeats: int) -> dict[str, list[float]]:
    def export() -> None:
        url = f"{base}/api/v1/studies/{sid}/trials.csv"
        with httpx.stream("GET", url, timeout=120, headers=AUTH) as r:
            r.raise_for_status()
            for _ in r.iter_bytes():
                pass

    return {"export CSV (whole study)": timed(export, max(3, repeats // 10))}


def bench_optuna(url: str, name: str, repeats: int) -> dict[str, list[float]]:
    def load() -> None:
        storage = optuna.storages.RDBStorage(url)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).trials
            assert trials
        finally:
            storage.engine.dispose()

    return {"optuna.load_study(...).trials": timed(load, max(3, repeats // 10))}


def prefill(http: httpx.Client, dsn: str, args: argparse.Namespace) -> int:
    """The big single-objective study (its id is returned), a two-objective one of the same
    size, and ``args.small_studies`` small ones."""
    t0 = time.perf_counter()
    big = _create(http, "big", ["minimize"])
    bulk_insert(dsn, big, args.trials, args.steps, 1)
    multi = _create(http, "big-2-objectives", ["minimize", "maximize"])
    bulk_insert(dsn, multi, args.trials, args.steps, 2)
    for i in range(args.small_studies):
        bulk_insert(dsn, _create(http, f"small-{i}", ["minimize"]), 50, 5, 1)
    print(
        f"prefilled 2 x {args.trials} trials ({args.steps} intermediate values each in the"
        f" first) and {args.small_studies} small studies in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return big


def run_service(base: str, http: httpx.Client, big: int, repeats: int) -> dict[str, list[float]]:
    results = {"summary (every study)": timed(lambda: _ok(http.get("/studies/summary")), repeats)}
    results |= bench_history(http, big, repeats)
    results |= bench_changes(http, big, repeats)
    curves = {"limit": 1000, "max_points": 50}
    results["intermediate page (1000 curves, 50 points)"] = timed(
        lambda: _ok(http.get(f"/studies/{big}/intermediate", params=curves)), repeats
    )
    results |= bench_importance(http, big, repeats)
    results |= bench_export(base, big, repeats)
    return results


def report(results: dict[str, list[float]]) -> None:
    print(f"{'read':44} {'n':>4} {'p50 ms':>10} {'p99 ms':>10}")
    for name, latencies in results.items():
        p50 = 1000 * statistics.median(latencies)
        p99 = 1000 * percentile(latencies, 99)
        print(f"{name:44} {len(latencies):4d} {p50:10.1f} {p99:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--small-studies", type=int, default=10)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--json", type=Path, help="also write the latencies here")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        AUTH["Authorization"] = f"Bearer {admin_token(url)}"
        with (
            server_process(url, port=args.port) as base,
            httpx.Client(base_url=base + "/api/v1", timeout=120, headers=AUTH) as http,
        ):
            big = prefill(http, url.replace("+psycopg2", ""), args)
            results |= run_service(base, http, big, args.repeats)
        results |= bench_optuna(url, "bench/big", args.repeats)  # Optuna: <team>/<name>
    print()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
