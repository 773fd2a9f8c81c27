"""Ask+tell throughput: the service over HTTP vs plain Optuna on PostgreSQL vs Optuna in memory.

For each sampler (TPE with defaults, random) and each study size (100, 1 000, 5 000 finished
trials, each with 10 intermediate values), the study is prefilled with the same history in one
bulk insert, then timed for ``--iters`` sequential ask+tell rounds (in ``--blocks`` turns,
each system running one block in turn, so that a shared machine's drift in speed weighs on all
of them alike):

- service: POST /studies/{id}/trials then POST /trials/{id}/complete, against ``hpo serve``
  (one process) on the same PostgreSQL;
- optuna-rdb: ``study.ask(fixed_distributions)`` + ``study.tell`` with ``RDBStorage``;
- optuna-mem: the same with Optuna's in-memory storage (the sampler's own cost: the limit).

It also times one report with a pruning decision (median pruner), and counts SQL statements
per ask+tell for the service and for Optuna RDB. Under each system's line it prints where its
rounds' time went (``bench/cpu.py``): the CPU of this client, of the server process and of
PostgreSQL's backends per round, and how busy the whole machine was. Prints a table; nothing is
asserted.

    python bench/ask_tell.py [--sizes 100,1000,5000] [--samplers tpe,random] [--iters 100]
                             [--blocks 10] [--runs 1]

With ``--runs N`` the whole measurement is repeated N times, each on fresh studies, and the
ratios are printed as their range over the runs (this machine's speed drifts by more than the
margins the targets are read at).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import optuna
import psycopg2
from psycopg2.extras import execute_values

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, scratch_database, serve, summary
from bench.cpu import CpuMeter, Split
from tests.round_trips import RoundTrips

optuna.logging.set_verbosity(optuna.logging.WARNING)

# Every call carries an admin token of the bench team (made once the database exists).
AUTH: dict[str, str] = {}

SPACE = {
    "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 6},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128, 256, 512]},
}
DISTRIBUTIONS = {
    "lr": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
    "n_layers": optuna.distributions.IntDistribution(1, 6),
    "batch_size": optuna.distributions.CategoricalDistribution([16, 32, 64, 128, 256, 512]),
}
STEPS = 10

# ask+tell s per round, report s, and where the ask+tell rounds' time went (client CPU included)
Timings = tuple[list[float], list[float], list[Split]]


def objective(params: dict[str, Any]) -> float:
    import math

    lr: float = params["lr"]
    n_layers: int = params["n_layers"]
    batch_size: int = params["batch_size"]
    return (math.log10(lr) + 2.5) ** 2 + 0.1 * n_layers + batch_size / 1000


def history(n: int, seed: int = 0) -> list[tuple[dict[str, Any], float, list[float]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        params = {
            "lr": 10 ** rng.uniform(-5, -1),
            "n_layers": rng.randint(1, 6),
            "batch_size": rng.choice([16, 32, 64, 128, 256, 512]),
        }
        value = objective(params)
        curve = [value * (1 + 2.0 / (s + 1)) for s in range(STEPS)]
        out.append((params, value, curve))
    return out


def frozen_trials(
    rows: list[tuple[dict[str, Any], float, list[float]]],
) -> list[optuna.trial.FrozenTrial]:
    """``history`` rows as finished trials for an in-memory study."""
    return [
        optuna.trial.create_trial(
            params=p, distributions=DISTRIBUTIONS, value=v, intermediate_values=dict(enumerate(c))
        )
        for p, v, c in rows
    ]


def prefill(
    dsn: str, study_id: int, rows: list[tuple[dict[str, Any], float, list[float]]], service: bool
) -> None:
    """Bulk-insert finished trials the way Optuna stores them (plus lease rows for the service)."""
    conn = psycopg2.connect(dsn)
    dist_json = {k: optuna.distributions.distribution_to_json(d) for k, d in DISTRIBUTIONS.items()}
    with conn, conn.cursor() as cur:
        ids = execute_values(
            cur,
            "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete)"
            " VALUES %s RETURNING trial_id",
            [(i, study_id, "COMPLETE", "2026-01-01", "2026-01-01") for i in range(len(rows))],
            fetch=True,
        )
        trial_ids = [r[0] for r in ids]
        params, values, inter = [], [], []
        for tid, (p, v, curve) in zip(trial_ids, rows, strict=True):
            for name, value in p.items():
                internal = DISTRIBUTIONS[name].to_internal_repr(value)
                params.append((tid, name, internal, dist_json[name]))
            values.append((tid, 0, v, "FINITE"))
            inter += [(tid, s, x, "FINITE") for s, x in enumerate(curve)]
        execute_values(
            cur,
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json)"
            " VALUES %s",
            params,
        )
        execute_values(
            cur,
            "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES %s",
            values,
        )
        execute_values(
            cur,
            "INSERT INTO trial_intermediate_values"
            " (trial_id, step, intermediate_value, intermediate_value_type) VALUES %s",
            inter,
        )
        if service:
            execute_values(
                cur,
                "INSERT INTO hpo_trials (trial_id, study_id, attempt, change_xid) VALUES %s",
                [(tid, study_id, 1, 0) for tid in trial_ids],
            )
            cur.execute(
                "UPDATE hpo_studies SET n_started = %s WHERE study_id = %s", (len(rows), study_id)
            )
    conn.close()


def make_sampler(name: str) -> optuna.samplers.BaseSampler:
    return (
        optuna.samplers.TPESampler(seed=0)
        if name == "tpe"
        else optuna.samplers.RandomSampler(seed=0)
    )


def time_optuna(study: optuna.Study, meter: CpuMeter, iters: int) -> Timings:
    """ask+tell latencies, report+should_prune latencies, and the rounds' CPU."""
    latencies: list[float] = []
    reports: list[float] = []
    splits: list[Split] = []
    with meter.block(splits):
        for _ in range(iters):
            t0 = time.perf_counter()
            trial = study.ask(DISTRIBUTIONS)
            study.tell(trial, objective(trial.params))
            latencies.append(time.perf_counter() - t0)
    trial = study.ask(DISTRIBUTIONS)
    for step in range(STEPS):
        t0 = time.perf_counter()
        trial.report(objective(trial.params) * 2, step)
        trial.should_prune()
        reports.append(time.perf_counter() - t0)
    study.tell(trial, objective(trial.params))
    return latencies, reports, splits


def time_service(base: str, study_id: int, meter: CpuMeter, iters: int) -> Timings:
    api = base + "/api/v1"
    latencies: list[float] = []
    reports: list[float] = []
    splits: list[Split] = []
    with httpx.Client(timeout=60, headers=AUTH) as http:
        with meter.block(splits):
            for _ in range(iters):
                t0 = time.perf_counter()
                trial = http.post(
                    f"{api}/studies/{study_id}/trials", json={"worker_id": "bench"}
                ).json()
                value = objective(trial["params"])
                http.post(
                    f"{api}/trials/{trial['id']}/complete",
                    json={"lease_token": trial["lease"]["token"], "values": [value]},
                ).raise_for_status()
                latencies.append(time.perf_counter() - t0)
        trial = http.post(f"{api}/studies/{study_id}/trials", json={"worker_id": "bench"}).json()
        token = trial["lease"]["token"]
        for step in range(STEPS):
            t0 = time.perf_counter()
            http.post(
                f"{api}/trials/{trial['id']}/report",
                json={"lease_token": token, "step": step, "value": objective(trial["params"]) * 2},
            ).raise_for_status()
            reports.append(time.perf_counter() - t0)
        http.post(
            f"{api}/trials/{trial['id']}/complete", json={"lease_token": token, "values": [1.0]}
        )
    return latencies, reports, splits


def time_service_next(base: str, study_id: int, meter: CpuMeter, iters: int) -> Timings:
    """The same loop with one request per trial: complete carries ``next`` (ask the next trial)."""
    api = base + "/api/v1"
    latencies: list[float] = []
    splits: list[Split] = []
    with httpx.Client(timeout=60, headers=AUTH) as http:
        trial = http.post(f"{api}/studies/{study_id}/trials", json={"worker_id": "bench"}).json()
        with meter.block(splits):
            for _ in range(iters):
                t0 = time.perf_counter()
                value = objective(trial["params"])
                done = http.post(
                    f"{api}/trials/{trial['id']}/complete",
                    json={
                        "lease_token": trial["lease"]["token"],
                        "values": [value],
                        "next": {"worker_id": "bench"},
                    },
                )
                done.raise_for_status()
                trial = done.json()["next_trial"]
                latencies.append(time.perf_counter() - t0)
        http.post(
            f"{api}/trials/{trial['id']}/complete",
            json={"lease_token": trial["lease"]["token"], "values": [1.0]},
        )
    return latencies, [], splits


def interleaved(
    systems: Sequence[tuple[str, Callable[[int], Timings]]], iters: int, blocks: int
) -> dict[str, Timings]:
    """Each system's timings over ``iters`` rounds, run in ``blocks`` turns: every system runs
    a block in turn, so a machine that speeds up or slows down during the run (a shared VM
    does) weighs on all of them alike. One untimed block each first (view load, caches)."""
    per_block = max(1, iters // blocks)
    out: dict[str, Timings] = {name: ([], [], []) for name, _ in systems}
    for _, run in systems:
        run(per_block)
    for _ in range(blocks):
        for name, run in systems:
            latencies, reports, splits = run(per_block)
            out[name][0].extend(latencies)
            out[name][1].extend(reports)
            out[name][2].extend(splits)
    return out


def counted(counter: RoundTrips, run: Callable[[], object]) -> tuple[int, int, int]:
    """Statements, round trips and transactions committed while ``run`` runs (every statement
    the psycopg2 connections execute but the one-time PREPAREs; each transaction adds BEGIN
    and COMMIT, two more round trips)."""
    executes, commits = counter.cost(run)
    return counter.statements, executes, commits


def statements_per_round(url: str, sampler: str, size: int, rounds: int = 20) -> dict[str, float]:
    """SQL statements and transactions per ask+tell: the service in-process, Optuna RDB."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from service.app import create_app
    from service.settings import ServerSettings

    counter = RoundTrips()
    rows = history(size)
    storage = optuna.storages.RDBStorage(
        url, engine_kwargs={"connect_args": {"connection_factory": counter.connection_factory}}
    )
    study = optuna.create_study(
        study_name=f"count-rdb-{sampler}-{size}", storage=storage, sampler=make_sampler(sampler)
    )
    study_id = storage.get_study_id_from_name(study.study_name)
    prefill(url.replace("+psycopg2", ""), study_id, rows, service=False)
    study.tell(study.ask(DISTRIBUTIONS), 1.0)  # warm caches
    optuna_n, optuna_rt, optuna_tx = counted(
        counter,
        lambda: [
            study.tell(t, objective(t.params))
            for t in (study.ask(DISTRIBUTIONS) for _ in range(rounds))
        ],
    )

    with counter.installed():
        # The token stays cached all run: the count is the hot path's alone.
        settings = ServerSettings(
            database_url=SecretStr(url), reaper_interval_s=300, auth_cache_s=300
        )
        app = create_app(settings)
        with TestClient(app, headers=AUTH) as client:
            body = {
                "name": f"count-svc-{sampler}-{size}",
                "search_space": SPACE,
                "sampler": {"name": sampler},
            }
            sid = client.post("/api/v1/studies", json=body).json()["id"]
            prefill(url.replace("+psycopg2", ""), sid, rows, service=True)
            warm = client.post(f"/api/v1/studies/{sid}/trials", json={"worker_id": "warm"}).json()
            client.post(
                f"/api/v1/trials/{warm['id']}/complete",
                json={"lease_token": warm["lease"]["token"], "values": [1.0]},
            )

            def service_rounds() -> None:
                for _ in range(rounds):
                    t = client.post(
                        f"/api/v1/studies/{sid}/trials", json={"worker_id": "count"}
                    ).json()
                    client.post(
                        f"/api/v1/trials/{t['id']}/complete",
                        json={
                            "lease_token": t["lease"]["token"],
                            "values": [objective(t["params"])],
                        },
                    )

            service_n, service_rt, service_tx = counted(counter, service_rounds)
    return {
        "service": service_n / rounds,
        "service_round_trips": service_rt / rounds,
        "service_tx": service_tx / rounds,
        "optuna_rdb": optuna_n / rounds,
        "optuna_rdb_round_trips": optuna_rt / rounds,
        "optuna_rdb_tx": optuna_tx / rounds,
    }


def measure(
    base: str,
    url: str,
    meter: CpuMeter,
    sampler: str,
    size: int,
    run: int,
    iters: int,
    blocks: int,
) -> list[dict[str, Any]]:
    """One interleaved measurement of the four systems on fresh studies of ``size`` trials."""
    dsn = url.replace("+psycopg2", "")
    rows = history(size)
    mem = optuna.create_study(sampler=make_sampler(sampler), pruner=optuna.pruners.MedianPruner())
    mem.add_trials(frozen_trials(rows))
    rdb_storage = optuna.storages.RDBStorage(url)
    rdb = optuna.create_study(
        study_name=f"rdb-{sampler}-{size}-{run}",
        storage=rdb_storage,
        sampler=make_sampler(sampler),
        pruner=optuna.pruners.MedianPruner(),
    )
    prefill(dsn, rdb_storage.get_study_id_from_name(rdb.study_name), rows, service=False)
    body = {
        "name": f"svc-{sampler}-{size}-{run}",
        "search_space": SPACE,
        "sampler": {"name": sampler, "options": {"seed": 0}},
        "pruner": {"name": "median"},
    }
    sid = httpx.post(f"{base}/api/v1/studies", json=body, headers=AUTH).json()["id"]
    prefill(dsn, sid, rows, service=True)
    systems: list[tuple[str, Callable[[int], Timings]]] = [
        ("optuna-mem", partial(time_optuna, mem, meter)),
        ("optuna-rdb", partial(time_optuna, rdb, meter)),
        ("service", partial(time_service, base, sid, meter)),
        ("svc-1req", partial(time_service_next, base, sid, meter)),
    ]
    timings = interleaved(systems, iters, blocks)
    measured = []
    for name, _ in systems:
        lat, rep, splits = timings[name]
        reports = summary(rep) if rep else {"p50_ms": float("nan"), "p99_ms": float("nan")}
        spent = sum(splits, Split())
        row = {
            "run": run,
            "sampler": sampler,
            "size": size,
            "system": name,
            **summary(lat),
            "client_cpu_ms": 1000 * spent.client / len(lat),
            "report_p50_ms": reports["p50_ms"],
            "report_p99_ms": reports["p99_ms"],
            **{f"{k}_ms_per_round": 1000 * v / len(lat) for k, v in vars(spent).items()},
        }
        measured.append(row)
        print(
            f"{sampler:6} {size:5} {name:10} {row['per_s']:8.1f} trials/s  "
            f"p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
            f"client cpu {row['client_cpu_ms']:6.2f} ms  "
            f"report p50 {row['report_p50_ms']:6.2f} ms "
            f"p99 {row['report_p99_ms']:6.2f} ms",
            flush=True,
        )
        if meter.available:
            print(f"{'':24}{_where(spent, len(lat))}", flush=True)
    return measured


def _where(spent: Split, rounds: int) -> str:
    """Per round: the wall time, the CPU of each part, and how much of the machine was busy."""
    ms = {k: 1000 * v / rounds for k, v in vars(spent).items()}
    other = ms["busy"] - ms["client"] - ms["server"] - ms["postgres"]
    return (
        f"per round: wall {ms['wall']:6.2f} ms = CPU of client {ms['client']:5.2f}"
        f" + server {ms['server']:5.2f} + postgres {ms['postgres']:5.2f}"
        f" + other {other:5.2f} (machine busy {ms['busy']:6.2f} ms,"
        f" {ms['busy'] / ms['wall']:.2f} cores)"
    )


def ratio_ranges(
    results: list[dict[str, Any]], sampler: str, size: int, system: str
) -> dict[str, list[float]]:
    """``system``'s trials/s over Optuna RDB's and in-memory Optuna's, one ratio per run."""
    by_run: dict[int, dict[str, float]] = {}
    for r in results:
        if r["sampler"] == sampler and r["size"] == size:
            by_run.setdefault(r["run"], {})[r["system"]] = r["per_s"]
    return {
        base: sorted(by[system] / by[base] for by in by_run.values())
        for base in ("optuna-rdb", "optuna-mem")
    }


def _span(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:5.2f}x"
    return f"{values[0]:5.2f}-{values[-1]:.2f}x (median {statistics.median(values):.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,5000")
    parser.add_argument("--samplers", default="tpe,random")
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument(
        "--blocks", type=int, default=10, help="turns the systems take (see interleaved())"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="whole measurements, each on fresh studies; ratios are printed as their range",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    samplers = args.samplers.split(",")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as url:
        AUTH["Authorization"] = f"Bearer {admin_token(url)}"
        dsn = url.replace("+psycopg2", "")
        with serve(url) as server, closing(CpuMeter(dsn, server.pid)) as meter:
            for run in range(args.runs):
                if args.runs > 1:
                    print(f"run {run + 1} of {args.runs}", flush=True)
                for sampler in samplers:
                    for size in sizes:
                        results += measure(
                            server.url, url, meter, sampler, size, run, args.iters, args.blocks
                        )
        counts = {s: statements_per_round(url, s, 1000) for s in samplers}
    print()
    print("ratios (trials/s)" + (f", range over {args.runs} runs:" if args.runs > 1 else ":"))
    for sampler in samplers:
        for size in sizes:
            for system in ("service", "svc-1req"):
                ratios = ratio_ranges(results, sampler, size, system)
                print(
                    f"  {sampler:6} {size:5} {system:8}: "
                    f"/ optuna-rdb = {_span(ratios['optuna-rdb'])}"
                    f"   / optuna-mem = {_span(ratios['optuna-mem'])}"
                )
    print()
    print(
        "SQL per ask+tell at 1000 trials: statements in round trips, and transactions"
        " (each adding BEGIN and COMMIT round trips):"
    )
    for sampler, c in counts.items():
        print(
            f"  {sampler:6}: service {c['service']:.1f} in {c['service_round_trips']:.1f}"
            f" ({c['service_tx']:.1f} tx)   optuna-rdb {c['optuna_rdb']:.1f} in"
            f" {c['optuna_rdb_round_trips']:.1f} ({c['optuna_rdb_tx']:.1f} tx)"
        )
    if args.json:
        args.json.write_text(json.dumps({"results": results, "statements": counts}, indent=2))


if __name__ == "__main__":
    main()
