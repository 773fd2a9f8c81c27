"""The sbatch script of ``hpo worker`` as a Slurm array job: one worker per array task.

:func:`render` is the one template: ``hpo slurm submit`` writes it with the study's values, and
``deploy/slurm/hpo-worker.sbatch`` is it rendered with :data:`EXAMPLE` (a test keeps the two
the same). What the script does and why:

- ``--array=0-(N-1)``: N workers; tasks of one array share a host name, so each worker is
  named after its array task (``HPO_WORKER_NAME``), and its log is ``hpo-worker-%A_%a.out``.
- ``--gres=gpu:G`` (none for ``G = 0``): each worker sees its own GPUs and trains there
  (``HPO_DEVICE=cuda``; ``cpu`` without GPUs).
- ``--signal=B:TERM@S``: S seconds before the time limit Slurm sends SIGTERM to the batch
  shell, which is the worker itself (``exec``, no ``srun``): the worker's first SIGTERM
  finishes the current epoch, checkpoints and hands the lease back, and another worker
  resumes the trial from that checkpoint.
- ``HPO_EXIT_WHEN_IDLE_S``: a worker that found no trial to claim for that long (the study is
  done) exits 0, so the job ends and its GPUs go back before the time limit (0: never).
- ``--export=ALL``: the job gets the submitter's environment, ``HPO_API_TOKEN`` included, so
  the token is never written into the script.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# Slurm keeps a signal's lead time in 16 bits.
MAX_SIGNAL_LEAD_S = 65535
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_NAME = re.compile(r"^[A-Za-z0-9._,-]+$")


class JobError(ValueError):
    """A job that sbatch would refuse or run wrongly; the message names the option."""


@dataclass(frozen=True)
class WorkerJob:
    """What the script holds. ``hpo`` is the command that runs ``hpo`` on the compute nodes."""

    study_id: int
    study_name: str
    api_url: str
    workers: int
    hpo: str = "hpo"
    gpus_per_worker: int = 1
    cpus_per_worker: int = 4
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    signal_lead_s: int = 300
    exit_when_idle_s: int = 300
    log_dir: str = "."

    def check(self) -> None:
        """Raise :class:`JobError` for values sbatch would refuse or that defeat the signal."""
        if self.workers < 1:
            raise JobError("--workers must be at least 1")
        if self.gpus_per_worker < 0 or self.cpus_per_worker < 1:
            raise JobError("--gpus-per-worker must be 0 or more, --cpus-per-worker 1 or more")
        if not 1 <= self.signal_lead_s <= MAX_SIGNAL_LEAD_S:
            raise JobError(f"--signal-lead must be 1 to {MAX_SIGNAL_LEAD_S} seconds")
        if self.exit_when_idle_s < 0:
            raise JobError("--exit-when-idle must be 0 (never) or more seconds")
        for option, value in (("--partition", self.partition), ("--account", self.account)):
            if value is not None and not _NAME.match(value):
                raise JobError(f"{option} {value!r}: letters, digits and . _ , - only")
        if any(c.isspace() for c in self.log_dir):
            raise JobError(f"--log-dir {self.log_dir!r}: Slurm's --output takes no spaces")
        if self.time is not None and time_limit_s(self.time) <= self.signal_lead_s:
            raise JobError(
                f"--time {self.time} is not longer than --signal-lead {self.signal_lead_s}s:"
                " the worker would be told to stop as it starts"
            )


def time_limit_s(text: str) -> int:
    """Seconds of a Slurm time limit: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``."""
    match = _TIME.match(text.strip())
    if not match:
        raise JobError(f"--time {text!r}: use minutes, H:MM:SS or D-HH:MM:SS")
    days, first, second, third = match.groups()
    parts = [int(p) for p in (first, second, third) if p is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = [*parts, 0, 0][:3]
        return ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    if len(parts) == 1:
        return parts[0] * 60
    if len(parts) == 2:
        return parts[0] * 60 + parts[1]
    return (parts[0] * 60 + parts[1]) * 60 + parts[2]


def job_name(study_name: str) -> str:
    return "hpo-" + re.sub(r"[^A-Za-z0-9._-]", "_", study_name)[:60]


def directives(job: WorkerJob) -> list[str]:
    """The ``#SBATCH`` options, in order."""
    lines = [f"--job-name={job_name(job.study_name)}", f"--array=0-{job.workers - 1}"]
    if job.gpus_per_worker:
        lines.append(f"--gres=gpu:{job.gpus_per_worker}")
    lines.append(f"--cpus-per-task={job.cpus_per_worker}")
    for option, value in (
        ("partition", job.partition),
        ("account", job.account),
        ("time", job.time),
    ):
        if value is not None:
            lines.append(f"--{option}={value}")
    lines += [
        f"--signal=B:TERM@{job.signal_lead_s}",
        "--export=ALL",
        f"--output={job.log_dir.rstrip('/') or '/'}/hpo-worker-%A_%a.out",
    ]
    return lines


_HEADER = """\
#!/bin/bash
# `hpo worker` as a Slurm array job: one worker per array task, {gpus} each.
# Written by `hpo slurm submit` (deploy/slurm/hpo-worker.sbatch is it with example values);
# docs/deploy/slurm.md explains every line. Slurm does not make the --output directory:
# `mkdir -p` it before sbatch (hpo slurm submit does).
#
# The API token is not in this file: sbatch hands the job the environment it was run in
# (--export=ALL), so run `HPO_API_TOKEN=... sbatch THIS_FILE` (hpo slurm submit does).
# Slurm sends the worker SIGTERM {lead}s before the time limit (--signal=B:TERM@{lead}) and on
# scancel: it finishes its epoch, checkpoints and hands the trial back for another worker.
"""

_BODY = """
set -eu
# Array tasks may share a host: each worker is named after its own task.
export HPO_WORKER_NAME="slurm-${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
export HPO_API_URL={api_url}
export HPO_STUDIES={study_id}  # study {study_name}
export HPO_DEVICE={device}
export HPO_TORCH_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
# {idle_comment}
export HPO_EXIT_WHEN_IDLE_S={idle}
# exec, not srun: the worker replaces this shell, so --signal=B:TERM reaches the worker itself.
exec {hpo} worker
"""


def render(job: WorkerJob) -> str:
    """The script's text (checked first: see :meth:`WorkerJob.check`)."""
    job.check()
    gpus = f"{job.gpus_per_worker} GPU" if job.gpus_per_worker else "no GPU"
    header = _HEADER.format(
        gpus=gpus + ("s" if job.gpus_per_worker > 1 else ""), lead=job.signal_lead_s
    )
    sbatch = "".join(f"#SBATCH {line}\n" for line in directives(job))
    body = _BODY.format(
        api_url=shlex.quote(job.api_url),
        study_id=job.study_id,
        study_name=job.study_name.replace("\n", " "),
        device="cuda" if job.gpus_per_worker else "cpu",
        hpo=job.hpo,
        idle=job.exit_when_idle_s,
        idle_comment=_idle_comment(job.exit_when_idle_s),
    )
    return header + sbatch + body


def _idle_comment(seconds: int) -> str:
    if seconds == 0:
        return "0: the worker never exits by itself; scancel the job when the study is done."
    return f"No trial to claim for {seconds}s (e.g. the study is done): exit 0, freeing the GPUs."


def parse_directives(script: str) -> dict[str, str]:
    """``#SBATCH --name=value`` lines of a script as ``{"--name": "value"}`` (as sbatch reads
    them: up to the first command)."""
    found: dict[str, str] = {}
    for raw in script.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            name, _, value = line.removeprefix("#SBATCH ").strip().partition("=")
            found[name] = value
    return found


# deploy/slurm/hpo-worker.sbatch is render(EXAMPLE).
EXAMPLE = WorkerJob(
    study_id=1,
    study_name="digits",
    api_url="http://hpo.example.org:8000",
    workers=4,
    partition="gpu",
    time="04:00:00",
    log_dir="hpo-slurm-logs",
)
