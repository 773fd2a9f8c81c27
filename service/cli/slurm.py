"""``hpo slurm submit``: N workers of a study as one Slurm array job.

It resolves the study (name or id) through the API, writes the sbatch script of
:mod:`service.cli.slurm_script` and submits it with ``sbatch --parsable``; the job id goes to
standard output, the rest to standard error. The token reaches the workers through sbatch's
environment (``--export=ALL``), never through the script file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.cli.api import api_client
from service.cli.errors import CliError
from service.cli.options import DEFAULT_API, command, group
from service.cli.slurm_script import JobError, WorkerJob, render

_NO_SBATCH = "Slurm's sbatch is not on PATH"


def add_commands(commands: Any) -> None:
    _, sub = group(commands, "slurm", "run workers as Slurm jobs", api=True)
    submit = command(
        sub,
        "submit",
        "write the sbatch script of N workers for a study and submit it",
        api=True,
        description="Writes an array job of N `hpo worker`s (one GPU each by default) for a "
        "study and submits it with sbatch; prints the job id. The token (--token or "
        "HPO_API_TOKEN) reaches the workers through sbatch's environment, not the script.",
    )
    submit.add_argument("--study", required=True, help="name or id")
    submit.add_argument("--workers", type=int, required=True, metavar="N", help="array tasks")
    submit.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    submit.add_argument("--account", help="Slurm account to charge")
    submit.add_argument(
        "--time", help="time limit per worker, e.g. 04:00:00 (default: the partition's)"
    )
    submit.add_argument(
        "--gpus-per-worker",
        type=int,
        default=1,
        metavar="G",
        help="--gres=gpu:G per worker (default 1; 0: no --gres, the worker trains on CPU)",
    )
    submit.add_argument("--cpus-per-worker", type=int, default=4, metavar="C", help="default 4")
    submit.add_argument(
        "--signal-lead",
        type=int,
        default=300,
        metavar="SECONDS",
        help="SIGTERM this long before the time limit, to checkpoint (default 300)",
    )
    submit.add_argument(
        "--exit-when-idle",
        type=int,
        default=300,
        metavar="SECONDS",
        help="a worker exits once it found no trial for this long, freeing its GPUs "
        "(default 300; 0: never)",
    )
    submit.add_argument(
        "--log-dir",
        default="hpo-slurm-logs",
        help="the script and the workers' logs go here (default ./hpo-slurm-logs)",
    )
    submit.add_argument(
        "--dry-run", action="store_true", help="print the script; write and submit nothing"
    )
    submit.set_defaults(handler=_submit)


def _submit(args: argparse.Namespace) -> int:
    api_url = args.api or os.environ.get("HPO_API_URL") or DEFAULT_API
    log_dir = Path(args.log_dir).absolute()
    _job(args, api_url, log_dir, study_id=0, study_name="-")  # bad options first, then the rest
    sbatch = None if args.dry_run else _sbatch()
    with api_client(args) as client:
        study = client.get_study(args.study)
    job = _job(args, api_url, log_dir, study_id=int(study["id"]), study_name=str(study["name"]))
    text = render(job)
    if sbatch is None:
        sys.stdout.write(text)
        return 0
    log_dir.mkdir(parents=True, exist_ok=True)
    script = log_dir / f"hpo-worker-{job.study_id}.sbatch"
    script.write_text(text)
    print(f"wrote {script}", file=sys.stderr)
    _warn_if_local(api_url)
    job_id = _run_sbatch(sbatch, script, args.token or os.environ.get("HPO_API_TOKEN"))
    print(job_id)
    print(
        f"submitted {job.workers} worker(s) for study {job.study_name} (id {job.study_id}):"
        f" job {job_id}, logs in {log_dir}; `squeue -j {job_id}` shows them, "
        f"`scancel {job_id}` stops them ({_when_they_end(job.exit_when_idle_s)})",
        file=sys.stderr,
    )
    return 0


def _when_they_end(exit_when_idle_s: int) -> str:
    if exit_when_idle_s == 0:
        return "they keep polling once the study is done"
    return f"each exits by itself after {exit_when_idle_s}s without a trial"


def _job(
    args: argparse.Namespace, api_url: str, log_dir: Path, *, study_id: int, study_name: str
) -> WorkerJob:
    job = WorkerJob(
        study_id=study_id,
        study_name=study_name,
        api_url=api_url,
        workers=args.workers,
        hpo=_hpo_on_nodes(),
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        partition=args.partition,
        account=args.account,
        time=args.time,
        signal_lead_s=args.signal_lead,
        exit_when_idle_s=args.exit_when_idle,
        log_dir=str(log_dir),
    )
    try:
        job.check()
    except JobError as exc:
        raise CliError(str(exc), "`hpo slurm submit --help` lists the options") from exc
    return job


def _sbatch() -> str:
    found = shutil.which("sbatch")
    if found is None:
        raise CliError(
            _NO_SBATCH,
            "run this on a Slurm login node, or add Slurm's bin directory to PATH; "
            "--dry-run prints the script without it",
        )
    return found


def _hpo_on_nodes() -> str:
    """This installation's ``hpo``, by absolute path (compute nodes share the file system
    with the login node), else ``python -m service``."""
    scripts = Path(sys.executable).absolute().parent
    if (scripts / "hpo").exists():
        return shlex.quote(str(scripts / "hpo"))
    return shlex.join([str(Path(sys.executable).absolute()), "-m", "service"])


def _run_sbatch(sbatch: str, script: Path, token: str | None) -> str:
    env = {**os.environ, **({"HPO_API_TOKEN": token} if token else {})}
    done = subprocess.run(
        [sbatch, "--parsable", str(script)],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CliError(
            f"sbatch refused the job: {said}", f"the script is {script}; fix it and `sbatch` it"
        )
    # --parsable: "jobid" or "jobid;cluster"
    return done.stdout.strip().split(";")[0]


def _warn_if_local(api_url: str) -> None:
    hosts = {urlsplit(u.strip()).hostname for u in api_url.split(",")}
    if hosts & {"127.0.0.1", "localhost", "::1"}:
        print(
            f"note: workers reach the API at {api_url}; on other nodes than this one that is "
            "not this machine: pass --api with an address the compute nodes reach",
            file=sys.stderr,
        )
