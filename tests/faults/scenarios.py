"""Fault scenarios on real processes, shared by ``tests/faults`` and ``bench/chaos.py``.

Each runs one study of scripted trials (:class:`~tests.faults.cluster.StudyPlan`) on real
worker processes against real ``hpo serve`` processes and PostgreSQL, injects its faults while
trials are in flight, waits for the study to finish, and returns a
:class:`~tests.faults.report.ChaosReport`: the audit of the study, every fault injected,
whether it hit (it cost a lease, or took a component down while trials were in flight) and how
long the system took to recover. The tests assert on the report; the benchmark prints it.

- :func:`worker_kills`: SIGKILL of random workers that hold a lease, a fresh worker started
  for each.
- :func:`api_restarts`: SIGKILL of the only API process, started again on the same port.
- :func:`two_apis`: two API processes at once, workers split across them with the other as
  fail-over; each process in turn is killed and restarted.
- :func:`postgres_restarts`: PostgreSQL (a private one) stopped and started, cleanly and as
  after a crash.
- :func:`network_drops`: every worker talks through a proxy that drops connections before
  requests reach the server, after the server handled them, and mid-answer.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from service.auth.service import issue_token
from service.db import migrate
from service.db.url import normalize_url
from tests.faults.audit import audit_study
from tests.faults.cluster import (
    SERVER_ENV,
    Api,
    Database,
    StudyPlan,
    WorkerFleet,
    kill_server,
    restart_server,
)
from tests.faults.postgres import RestartablePostgres
from tests.faults.progress import (
    finished_count,
    lease_loss_after,
    live_leases,
    wait_finished,
    wait_for_event,
    wait_in_flight,
)
from tests.faults.proxy import EveryNth, FaultyProxy
from tests.faults.report import ChaosReport, Fault
from tests.support import ServerProcess


@contextmanager
def _study(
    db: Database, plan: StudyPlan, workdir: Path, name: str, api_url: str
) -> Iterator[tuple[int, WorkerFleet]]:
    """Create the study through ``api_url``; yield it with a fleet (stopped at the end)."""
    study_id = Api(api_url, db.token).create_study(
        plan.study_body(f"{name}-{uuid.uuid4().hex[:6]}")
    )
    fleet = WorkerFleet(workdir, study_id, db.for_workers)
    try:
        yield study_id, fleet
    finally:
        fleet.stop()


def _server(db: Database) -> ServerProcess:
    return ServerProcess(db.url, env=SERVER_ENV).start(timeout_s=60)


def worker_kills(
    db: Database,
    plan: StudyPlan,
    workdir: Path,
    *,
    kills: int,
    jitter_s: float = 0.5,
    seed: int = 0,
    timeout_s: float = 600,
) -> ChaosReport:
    """``kills`` times, evenly through the study (kill ``i`` once ``trials * (i + 1) //
    (kills + 1)`` trials finished, then up to ``jitter_s`` later), SIGKILL a random worker that
    holds a lease with at least two steps to go, and start a fresh worker; stop early only if
    the study ends first.

    A kill hits when the trial's lease then expired; ``recovered_s`` is from the kill to the
    trial being leased again (lease expiry + reaper + a claim)."""
    began = time.time()
    rng = random.Random(seed)
    faults: list[Fault] = []
    server = _server(db)
    try:
        with _study(db, plan, workdir, "faults-kill9", server.url) as (study_id, fleet):
            for _ in range(plan.workers):
                fleet.start(server.url)
            deadline = time.monotonic() + timeout_s
            for i in range(kills):
                wait_finished(
                    db.dsn,
                    study_id,
                    plan.trials * (i + 1) // (kills + 1),
                    deadline - time.monotonic(),
                )
                time.sleep(rng.uniform(0, jitter_s))
                victims: list[tuple[str, int]] = []
                while not victims and (finished_count(db.dsn, study_id) or 0) < plan.trials:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the kill scenario ran out of time")
                    victims = [
                        (w, t)
                        for w, t, reported in live_leases(db.dsn, study_id)
                        if w in fleet.live and plan.steps - reported >= 2
                    ]
                    if not victims:
                        time.sleep(0.05)
                if not victims:
                    break  # the study finished first
                worker_id, trial_id = rng.choice(victims)
                fleet.kill(worker_id)
                faults.append(Fault("kill -9 worker", worker_id, time.time(), trial_id))
                fleet.start(server.url)
            wait_finished(db.dsn, study_id, plan.trials, deadline - time.monotonic())
    finally:
        server.stop()
    for fault in faults:
        assert fault.trial_id is not None
        fault.hit, again = lease_loss_after(db.dsn, fault.trial_id, fault.at)
        fault.recovered_s = None if again is None else again - fault.at
    return _report("worker kills (kill -9)", workdir, db, plan, study_id, faults, began)


def api_restarts(
    db: Database,
    plan: StudyPlan,
    workdir: Path,
    *,
    restarts: int,
    down_s: float = 1.0,
    timeout_s: float = 600,
) -> ChaosReport:
    """SIGKILL the only API process ``restarts`` times, evenly through the study, and start it
    again on the same port after ``down_s``. Hits when trials were in flight; ``recovered_s``
    is from the server being ready again to the first trial started or finished."""
    began = time.time()
    faults: list[Fault] = []
    server = _server(db)
    try:
        with _study(db, plan, workdir, "faults-api-restart", server.url) as (study_id, fleet):
            for _ in range(plan.workers):
                fleet.start(server.url)
            for i in range(restarts):
                wait_finished(db.dsn, study_id, plan.trials * (i + 1) // (restarts + 1), timeout_s)
                in_flight = wait_in_flight(db.dsn, study_id)
                fault = Fault("kill -9 API, restart", server.url, time.time(), hit=in_flight > 0)
                kill_server(server)
                time.sleep(down_s)
                restart_server(server)
                fault.down_s = time.time() - fault.at
                faults.append(fault)
                _wait_recovery(db.dsn, study_id, fault, fault.at + fault.down_s)
            wait_finished(db.dsn, study_id, plan.trials, timeout_s)
    finally:
        server.stop()
    return _report("API process killed and restarted", workdir, db, plan, study_id, faults, began)


def two_apis(
    db: Database,
    plan: StudyPlan,
    workdir: Path,
    *,
    failover_timeout_s: float = 30.0,
    timeout_s: float = 600,
) -> ChaosReport:
    """Two API processes at once; even workers use ``--api A,B``, odd ones ``--api B,A``.
    A quarter through, A is killed; it stays down until a worker that was using it has started
    or finished a trial (through B: it failed over), then is restarted; at 60 %, B likewise. A
    kill hits when that happened within ``failover_timeout_s``; ``recovered_s`` is from the
    kill to that moment. While A restarts the study is paused (through B), so that trials are
    left for B's kill however long a start takes on the machine (on a slow one the workers
    used to finish the study during A's restart, and B's kill found nothing to fail over)."""
    began = time.time()
    faults: list[Fault] = []
    servers = [_server(db)]
    try:
        servers.append(_server(db))
        a, b = servers
        with _study(db, plan, workdir, "faults-two-apis", a.url) as (study_id, fleet):
            users: dict[str, list[str]] = {a.url: [], b.url: []}
            for i in range(plan.workers):
                first, second = (a, b) if i % 2 == 0 else (b, a)
                users[first.url].append(fleet.start(f"{first.url},{second.url}"))
            for victim, fraction in ((a, 0.25), (b, 0.6)):
                wait_finished(db.dsn, study_id, int(plan.trials * fraction), timeout_s)
                # Workers of the victim now: its own first-choice ones, and (for B) A's, which
                # moved to B when A died and stayed there.
                moved = users[a.url] if victim is b else []
                kill_server(victim)
                # After the kill: an event the dying server committed is not a fail-over.
                fault = Fault("kill -9 one of two APIs", victim.url, time.time())
                failover = wait_for_event(
                    db.dsn, study_id, fault.at, users[victim.url] + moved, failover_timeout_s
                )
                fault.hit = failover is not None
                fault.recovered_s = None if failover is None else failover - fault.at
                if victim is a:  # trials are left for B's kill, however long A's start
                    Api(b.url, db.token).set_state(study_id, "paused")
                restart_server(victim)
                fault.down_s = time.time() - fault.at
                if victim is a:
                    Api(b.url, db.token).set_state(study_id, "running")
                faults.append(fault)
            wait_finished(db.dsn, study_id, plan.trials, timeout_s)
    finally:
        for server in servers:
            server.stop()
    return _report(
        "two API processes, each killed in turn", workdir, db, plan, study_id, faults, began
    )


def postgres_restarts(
    plan: StudyPlan,
    workdir: Path,
    *,
    modes: Sequence[str] = ("fast", "immediate"),
    down_s: float = 2.0,
    timeout_s: float = 600,
) -> ChaosReport:
    """On a private PostgreSQL: stop it (``pg_ctl stop -m fast``, then ``-m immediate`` as after
    a crash), evenly through the study, start it again after ``down_s``. Hits when trials were
    in flight; ``recovered_s`` is from PostgreSQL being back to the first trial started or
    finished."""
    began = time.time()
    faults: list[Fault] = []
    pg = RestartablePostgres()
    try:
        pg.start()
        pg.create_database("hpo_faults")
        url = pg.url("hpo_faults")
        migrate.upgrade(normalize_url(url))
        db = Database(
            url,
            issue_token(normalize_url(url), "faults", "admin"),
            issue_token(normalize_url(url), "faults", "worker"),
        )
        server = _server(db)
        try:
            with _study(db, plan, workdir, "faults-postgres", server.url) as (study_id, fleet):
                for _ in range(plan.workers):
                    fleet.start(server.url)
                for i, mode in enumerate(modes):
                    wait_finished(db.dsn, study_id, plan.trials * (i + 1) // (len(modes) + 1), 300)
                    in_flight = wait_in_flight(db.dsn, study_id)
                    fault = Fault(f"PostgreSQL stop -m {mode}, start", "", time.time())
                    fault.hit = in_flight > 0
                    pg.stop(mode)
                    time.sleep(down_s)
                    pg.start()
                    fault.down_s = time.time() - fault.at
                    faults.append(fault)
                    _wait_recovery(db.dsn, study_id, fault, fault.at + fault.down_s)
                wait_finished(db.dsn, study_id, plan.trials, timeout_s)
        finally:
            server.stop()
        return _report("PostgreSQL restarted", workdir, db, plan, study_id, faults, began)
    finally:
        pg.destroy()


def network_drops(
    db: Database,
    plan: StudyPlan,
    workdir: Path,
    *,
    every_nth: int = 3,
    timeout_s: float = 600,
) -> ChaosReport:
    """Workers reach the API through a :class:`FaultyProxy`: of each trial endpoint's requests
    (claim, heartbeat, report, checkpoint, complete) every ``every_nth`` is dropped, before it
    reaches the server, after the server handled it, or mid-answer, in turn."""
    began = time.time()
    server = _server(db)
    policy = EveryNth(every_nth, lambda name: name.split(" ", 1)[-1].startswith("/trials"))
    try:
        with (
            FaultyProxy(server.port, policy) as proxy,
            _study(db, plan, workdir, "faults-network", server.url) as (study_id, fleet),
        ):
            for _ in range(plan.workers):
                fleet.start(proxy.url)
            wait_finished(db.dsn, study_id, plan.trials, timeout_s)
            drops, lost, requests = proxy.drops(), proxy.lost_answers(), proxy.requests
    finally:
        server.stop()
    report = _report(
        "network drops between workers and API", workdir, db, plan, study_id, [], began
    )
    report.drops, report.lost_answers, report.requests = drops, lost, requests
    return report


def _wait_recovery(dsn: str, study_id: int, fault: Fault, back_at: float) -> None:
    found = wait_for_event(dsn, study_id, back_at, None, 60)
    fault.recovered_s = None if found is None else max(0.0, found - back_at)


def _report(
    scenario: str,
    workdir: Path,
    db: Database,
    plan: StudyPlan,
    study_id: int,
    faults: list[Fault],
    began: float,
) -> ChaosReport:
    audit = audit_study(db.dsn, study_id, plan.steps)
    return ChaosReport(scenario, plan, audit, faults, time.time() - began, workdir=workdir)
