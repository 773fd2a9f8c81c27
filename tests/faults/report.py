"""What a fault scenario reports: its faults, the audit of its study, and figures to print."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.audit import Audit
from tests.faults.cluster import StudyPlan
from tests.faults.proxy import DROP_MODES, DropMode


@dataclass
class Fault:
    """One fault injected. ``hit``: it did what it was meant to (a lease was lost; a component
    was down while trials were in flight). ``down_s``: how long the component was away.
    ``recovered_s``: from the end of the fault to work flowing again (see each scenario)."""

    kind: str
    target: str
    at: float  # time.time() when injected
    trial_id: int | None = None  # the trial in flight on a killed worker
    hit: bool = False
    down_s: float | None = None
    recovered_s: float | None = None


@dataclass
class ChaosReport:
    scenario: str
    plan: StudyPlan
    audit: Audit
    faults: list[Fault]
    wall_s: float
    drops: Counter[tuple[DropMode, str]] = field(default_factory=Counter)
    lost_answers: Counter[tuple[DropMode, str, int]] = field(default_factory=Counter)
    requests: int = 0
    workdir: Path | None = None  # where the workers' logs are

    def failures(self) -> list[str]:
        """What went wrong, one line each; empty when the scenario passed: an invariant of the
        audit broken, a trial lost or finished twice, a fault that did not hit."""
        found = [f"VIOLATION: {p}" for p in self.audit.problems()]
        if self.audit.lost or self.audit.duplicates:
            found.append(f"LOST: {self.audit.lost}, DUPLICATES: {self.audit.duplicates}")
        found += [f"MISSED: {f.kind} {f.target} (did not hit)" for f in self.missed]
        return found

    def assert_sound(self) -> None:
        """Nothing lost, nothing finished twice, every invariant of the audit holds, every
        fault hit (:meth:`failures` is empty)."""
        failures = self.failures()
        assert not failures, "\n".join(failures[:30]) + self.explain()

    def explain(self) -> str:
        """The figures, the faults and the tail of every worker's log: for a failing test."""
        out = ["", *self.lines(), *(f"  {f}" for f in self.faults)]
        for log in sorted(self.workdir.glob("w*.log")) if self.workdir else []:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            out += [f"--- {log.name}", *tail]
        return "\n".join(out)

    @property
    def missed(self) -> list[Fault]:
        """Faults that did not hit: they prove nothing."""
        return [f for f in self.faults if not f.hit]

    def lines(self) -> list[str]:
        """The figures, for printing."""
        a = self.audit
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(a.states.items()))
        out = [
            f"== {self.scenario}: {self.plan.trials} trials, {self.plan.workers} workers, "
            f"{self.plan.steps} steps x {self.plan.sleep_s}s, lease {self.plan.lease_seconds}s",
            f"  trials finished    {a.finished}/{a.max_trials} ({states})",
            f"  faults injected    {len(self.faults) + self.drops.total()} "
            f"({len(self.faults) - len(self.missed) + self.drops.total()} hit)",
            f"  trials retried     {a.retried} (attempts beyond the first: "
            f"{sum(t.attempt - 1 for t in a.trials)})",
        ]
        down = [f.down_s for f in self.faults if f.down_s is not None]
        if down:
            out.append(f"  down time          {_spread(down)}")
        recovered = [f.recovered_s for f in self.faults if f.recovered_s is not None]
        if recovered:
            out.append(f"  time to recover    {_spread(recovered)}")
        if self.drops:
            out.append(f"  requests proxied   {self.requests}, {self.drops.total()} dropped:")
            out += self._drop_lines()
        out += [
            f"  lost = {a.lost}, duplicates = {a.duplicates}, "
            f"invariant violations = {len(a.problems())}",
            f"  wall time          {self.wall_s:.1f} s",
        ]
        return out

    def _drop_lines(self) -> list[str]:
        out = []
        for name in sorted({name for _, name in self.drops}):
            modes = "  ".join(f"{m} {self.drops[(m, name)]:>2}" for m in DROP_MODES)
            ok = sum(
                n for (_, e, status), n in self.lost_answers.items() if e == name and status < 300
            )
            out.append(f"    {name:<28} {modes}   (2xx answers lost: {ok})")
        return out


def _spread(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return (
        f"min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
        f"max {max(values):.2f} s (n = {len(values)})"
    )
