"""Benchmark: multi-fidelity schedulers on real training, through the service (issue 16).

Starts a scratch database, one API server process (``python -m service serve``) and
``--workers`` real worker processes (``python -m workers``, CPU, one torch thread each), then
runs, for every dataset, seed and arm, one study of the built-in task ``mlp_classifier``
(an MLP; search space: ``lr``, ``weight_decay`` (both log), ``n_layers``, ``hidden_size``,
``batch_size``; the same sampler, ``random`` by default, seeded with the seed, in every arm):

- ``a``: no pruning, ``--trials`` N trials of ``--epochs`` E epochs: the budget B = N x E;
- ``b``: Optuna's median pruner (default options);
- ``c``: Optuna's successive halving (kill-only; min_resource 1, reduction_factor 3);
- ``d``: the service's ``asha`` pruner, pause and promote (min_resource 1, reduction_factor 3,
  max_resource E, ``max_resource_total`` B: the service stops it at B epochs);
- ``e``: population-based training (``scheduler`` ``pbt``: population ``--pbt-population``,
  default N, so that its own budget is about N x E; interval ``--pbt-interval``; mutable
  ``lr`` and ``weight_decay``).

Arms ``b``, ``c`` and ``e`` get an unbounded trial budget; the bench polls the study and stops
it (``PATCH state=stopped``) once B epochs have been reported. A stop lands at each running
trial's next report, so a run can report a few epochs more than B: those are not counted.

**Epoch order.** Each report (one intermediate value = one epoch trained) writes a
``trial_reported`` event in the same statement; after a run the bench replays the study's event
stream (``GET /studies/{id}/events`` from the start) and takes the reports in that order (the
commit order on the server, across all workers). Figures use the first B of them only.

**Figures** per dataset and arm, medians over seeds (min-max in brackets):

- ``best@B``: the best validation loss reported within B epochs;
- ``to 2% of a``: epochs spent until a loss within 2% of arm (a)'s best of the same seed was
  reported (``-``: not reached within B; the median counts "not reached" as worst), and how many
  seeds reached it;
- ``best@k``: the best loss within the first k epochs, k = B/8, B/4, 0.4 B, B/2, B;
- ``trials``: trials that trained at least one epoch within B.

**Targets** (printed with pass/fail): (1) arm (d) reaches (a)'s best within 2% using at most
40% of B, in the median over seeds; (2) arm (d) is no worse than arm (c) at equal epochs: its
median best loss at every checkpoint k is <= that of (c).

Datasets: ``digits`` (scikit-learn's copy) and ``fashion_mnist`` (4000 samples of the IDX files
of Debian's ``dataset-fashion-mnist``); without those files use ``--datasets digits mnist1d``.
A worker that exits during a run stops that run's study and is reported (its last log lines)
and started again; the run is left out of the figures. ``--json FILE`` keeps every run's
reports and trial lineage. The default run takes about 13 minutes on two cores.

Examples::

    python bench/multifidelity.py                       # default: 5 seeds, digits + fashion
    python bench/multifidelity.py --seeds 1 --datasets digits --trials 6 --epochs 9
    python bench/multifidelity.py --arms a d e --seeds 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import admin_token, new_token, scratch_database, serve
from bench.multifidelity_arms import (
    ARMS,
    DATASETS,
    Arm,
    ArmFigures,
    Budget,
    Report,
    checkpoints_of,
    figures,
    median_or_none,
    study_body,
)

TEAM = "bench"
TOLERANCE = 0.02
EPOCH_SHARE = 0.40


class Api:
    """The service's ``/api/v1`` with an admin token; errors raise with the answer's text."""

    def __init__(self, base: str, token: str) -> None:
        self.client = httpx.Client(
            base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.client.request(method, path, json=body)
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json() if answer.content else None

    def trials(self, study_id: int) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = "limit=1000&include_intermediate=true" + (f"&cursor={cursor}" if cursor else "")
            page = self.call("GET", f"/studies/{study_id}/trials?{query}")
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return items

    def reports(self, study_id: int, expected: int) -> list[Report]:
        """The first ``expected`` ``trial_reported`` events of the study, in stream order."""
        out: list[Report] = []
        if expected == 0:
            return out
        kind = ""
        timeout = httpx.Timeout(60, read=40)
        with self.client.stream(
            "GET", f"/studies/{study_id}/events", headers={"Last-Event-ID": "0-0"}, timeout=timeout
        ) as stream:
            if stream.status_code != 200:
                raise RuntimeError(f"events of study {study_id}: {stream.status_code}")
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:") and kind == "trial_reported":
                    data = json.loads(line[5:])
                    out.append(Report(int(data["trial_id"]), int(data["step"]), data["value"]))
                    if len(out) >= expected:
                        break
        return out


def _reported(trials: Sequence[dict[str, Any]]) -> int:
    return sum(len(t.get("intermediate_values") or []) for t in trials)


@dataclass
class Run:
    reports: list[Report]
    seconds: float
    stopped_by_bench: bool
    states: dict[str, int]
    children: int
    """Trials with a ``parent_trial_id`` (PBT's children)."""
    lineage: list[list[int | None]]
    """``[trial id, number, parent_trial_id, started_from_step]`` of every trial."""


def run_study(
    api: Api, fleet: Workers, body: dict[str, Any], arm: Arm, budget: int, timeout_s: float
) -> Run:
    """Create the study, wait until it ends (stopping it at ``budget`` epochs where the bench
    does), and read its reports back in order. A worker that exits meanwhile stops the study
    and raises RuntimeError (with its last log lines); the worker is started again."""
    started = time.monotonic()
    study_id = int(api.call("POST", "/studies", body)["id"])
    stopped = False
    while True:
        dead = fleet.casualties()
        if dead:
            api.call("PATCH", f"/studies/{study_id}", {"state": "stopped"})
            raise RuntimeError(f"study {study_id}: " + "; ".join(dead))
        study = api.call("GET", f"/studies/{study_id}")
        running = study["trial_counts"]["running"]
        if study["state"] == "completed" or (stopped and running == 0):
            break
        overdue = time.monotonic() - started > timeout_s
        if not stopped and (
            overdue or (arm.bench_stops and _reported(api.trials(study_id)) >= budget)
        ):
            api.call("PATCH", f"/studies/{study_id}", {"state": "stopped"})
            stopped = True
            if overdue:
                print(f"  ! study {body['name']} ran past {timeout_s:.0f} s: stopped", flush=True)
        time.sleep(0.5)
    seconds = time.monotonic() - started
    trials = api.trials(study_id)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    lineage = [
        [t["id"], t["number"], t.get("parent_trial_id"), t.get("started_from_step")] for t in trials
    ]
    children = sum(row[2] is not None for row in lineage)
    reports = api.reports(study_id, _reported(trials))
    return Run(reports, seconds, stopped, states, children, lineage)


# -- processes ----------------------------------------------------------------------------------


class Workers:
    """``count`` worker processes (CPU, one slot, one torch thread each, log level info, each
    its log file). A worker that exits is reported by :meth:`casualties` and started again."""

    def __init__(self, api_url: str, token: str, count: int, logs: Path) -> None:
        self.api_url = api_url
        self.env = {
            **os.environ,
            "HPO_API_TOKEN": token,
            "HPO_TORCH_THREADS": "1",
            "HPO_SPOOL_DIR": str(logs / "spool"),
            "HPO_LOG_LEVEL": "info",
        }
        self.logs = logs
        self.starts = 0
        self.procs: list[subprocess.Popen[bytes]] = [self._start(i) for i in range(count)]

    def _start(self, index: int) -> subprocess.Popen[bytes]:
        self.starts += 1
        command = [
            sys.executable, "-m", "workers", "--api", self.api_url, "--device", "cpu",
            "--slots", "1", "--poll-wait", "1", "--tasks", "mlp_classifier",
            "--name", f"mf-{index}",
        ]  # fmt: skip
        with self.log(index).open("ab") as log:
            return subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, index: int) -> Path:
        return self.logs / f"worker-{index}.log"

    def casualties(self) -> list[str]:
        """For each worker that exited since the last call: its exit code and last log lines
        (without the traceback's frames); it is started again."""
        out = []
        for i, proc in enumerate(self.procs):
            if proc.poll() is None:
                continue
            lines = self.log(i).read_text(errors="replace").splitlines()
            kept = [ln[:300] for ln in lines if not ln.startswith(" ")][-3:]
            out.append(f"worker mf-{i} exited ({proc.returncode}): " + " | ".join(kept))
            self.procs[i] = self._start(i)
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def workers(api_url: str, token: str, count: int, logs: Path) -> Iterator[Workers]:
    fleet = Workers(api_url, token, count, logs)
    try:
        yield fleet
    finally:
        fleet.stop()


# -- the table ----------------------------------------------------------------------------------


def _fmt_loss(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.4f} [{min(values):.4f}-{max(values):.4f}]"


def _fmt_epochs(values: Sequence[int | None]) -> str:
    med = median_or_none(values)
    reached = sum(v is not None for v in values)
    return f"{'-' if med is None else f'{med:.0f}'} ({reached}/{len(values)})"


def print_dataset(
    dataset: str, budget: Budget, results: dict[str, ArmFigures], seconds: dict[str, float]
) -> list[str]:
    """The table of one dataset; returns its target lines."""
    total = budget.total
    ks = checkpoints_of(total)
    print(f"\n== {dataset}: B = {budget.trials} x {budget.epochs} = {total} epochs per run ==")
    head = f"{'arm':<19} {'best@B':>24} {'to 2% of a':>12}"
    head += "".join(f" {'best@' + str(k):>9}" for k in ks)
    print(head + f" {'trials':>7} {'epochs':>7} {'s/run':>6}")
    for key, fig in results.items():
        row = f"{ARMS[key].label:<19} {_fmt_loss(fig.best):>24} {_fmt_epochs(fig.to_target):>12}"
        row += "".join(f" {statistics.median(fig.curve[k]):>9.4f}" for k in ks)
        row += f" {statistics.median(fig.trials):>7.0f} {statistics.median(fig.spent):>7.0f}"
        print(row + f" {seconds[key]:>6.0f}")
    return targets(dataset, total, results)


def targets(dataset: str, total: int, results: dict[str, ArmFigures]) -> list[str]:
    lines = []
    d = results.get("d")
    if d is not None and "a" in results:
        med = median_or_none(d.to_target)
        limit = EPOCH_SHARE * total
        ok = med is not None and med <= limit
        shown = (
            "does not reach (a)'s best within 2% (median)"
            if med is None
            else f"reaches (a)'s best within 2% in {med:.0f} epochs ({med / total:.0%} of B)"
        )
        lines.append(
            f"{dataset}: target 1 {'PASS' if ok else 'FAIL'}: (d) {shown}, "
            f"limit {limit:.0f} (40% of B); per seed: "
            + ", ".join("-" if v is None else str(v) for v in d.to_target)
        )
    c = results.get("c")
    if d is not None and c is not None:
        worse = [
            k for k in d.curve if statistics.median(d.curve[k]) > statistics.median(c.curve[k])
        ]
        paired = {k: (d.at(k), c.at(k)) for k in d.curve}
        wins = {
            k: (sum(dk[s] <= ck[s] for s in dk if s in ck), sum(s in ck for s in dk))
            for k, (dk, ck) in paired.items()
        }
        lines.append(
            f"{dataset}: target 2 {'PASS' if not worse else 'FAIL'}: (d) no worse than (c) at "
            f"equal epochs (median best@k); worse at k = {worse or 'none'}; seeds where (d) <= "
            "(c): " + ", ".join(f"@{k} {n}/{m}" for k, (n, m) in wins.items())
        )
    return lines


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5, help="sampler seeds 0..n-1 (default 5)")
    parser.add_argument(
        "--datasets", nargs="+", choices=list(DATASETS), default=["digits", "fashion_mnist"]
    )
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), help="default: all of a-e")
    parser.add_argument("--trials", type=int, default=12, help="N: trials of arm (a)")
    parser.add_argument("--epochs", type=int, default=27, help="E: epochs per full trial")
    parser.add_argument("--sampler", choices=["random", "tpe"], default="random")
    parser.add_argument("--pbt-population", type=int, help="default: N")
    parser.add_argument("--pbt-interval", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--port", type=int, default=8797)
    parser.add_argument("--json", type=Path, help="write every run's reports here")
    parser.add_argument("--run-timeout", type=float, default=600.0, help="seconds per study")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    arms: list[str] = args.arms or list(ARMS)
    if any(k in arms for k in "bcde") and "a" not in arms:
        arms = ["a", *arms]  # the 2% target is (a)'s best
    budget = Budget(args.trials, args.epochs, args.pbt_population or args.trials, args.pbt_interval)
    tag = time.strftime("%H%M%S")
    target_lines: list[str] = []
    errors: list[str] = []
    raw: list[dict[str, Any]] = []
    print(
        f"arms {' '.join(arms)}; datasets {' '.join(args.datasets)}; seeds 0-{args.seeds - 1}; "
        f"sampler {args.sampler}; {args.workers} CPU workers; B = {budget.total} epochs",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp, scratch_database(Path(tmp)) as db:
        admin = admin_token(db, TEAM)
        with serve(db, port=args.port) as server:
            api = Api(server.url, admin)
            with workers(
                server.url, new_token(db, TEAM, "worker"), args.workers, Path(tmp)
            ) as fleet:
                for dataset in args.datasets:
                    results, seconds = run_dataset(
                        api, fleet, args, arms, dataset, budget, tag, errors, raw
                    )
                    if results:
                        target_lines += print_dataset(dataset, budget, results, seconds)
    print()
    for line in target_lines + errors:
        print(line)
    if args.json:
        args.json.write_text(json.dumps(raw))
    return 1 if errors else 0


def run_dataset(
    api: Api,
    fleet: Workers,
    args: argparse.Namespace,
    arms: list[str],
    dataset: str,
    budget: Budget,
    tag: str,
    errors: list[str],
    raw: list[dict[str, Any]],
) -> tuple[dict[str, ArmFigures], dict[str, float]]:
    """Every arm and seed of one dataset (seeds outer, so that machine drift hits all arms). A
    run that fails is reported and left out (that arm's figures then have fewer seeds)."""
    runs: dict[str, dict[int, list[Report]]] = {k: {} for k in arms}
    seconds: dict[str, list[float]] = {k: [] for k in arms}
    for seed in range(args.seeds):
        for key in arms:
            body = study_body(ARMS[key], dataset, seed, args.sampler, budget, tag)
            try:
                run = run_study(api, fleet, body, ARMS[key], budget.total, args.run_timeout)
            except RuntimeError as exc:
                errors.append(f"{dataset} arm {key} seed {seed}: {exc}")
                print(f"  ! {errors[-1]}", flush=True)
                continue
            runs[key][seed] = run.reports
            seconds[key].append(run.seconds)
            values = [r.value for r in run.reports[: budget.total]]
            best = min(values) if values else math.inf
            print(
                f"  {dataset} seed {seed} {ARMS[key].label}: {len(run.reports)} epochs, best "
                f"{best:.4f}, {run.seconds:.0f} s, trials {run.states}"
                + (f", {run.children} children" if run.children else ""),
                flush=True,
            )
            raw.append(
                {
                    "dataset": dataset,
                    "arm": key,
                    "seed": seed,
                    "seconds": run.seconds,
                    "states": run.states,
                    "lineage": run.lineage,
                    "reports": [[r.trial_id, r.step, r.value] for r in run.reports],
                }
            )
    if not runs.get("a"):
        return {}, {}
    aim = {
        seed: (1 + TOLERANCE) * min(r.value for r in run[: budget.total])
        for seed, run in runs["a"].items()
    }
    ks = checkpoints_of(budget.total)
    done = {k: {s: r for s, r in runs[k].items() if s in aim} for k in arms}
    return (
        {k: figures(done[k], aim, budget.total, ks) for k in arms if done[k]},
        {k: statistics.median(seconds[k]) for k in arms if done[k]},
    )


if __name__ == "__main__":
    sys.exit(main())
