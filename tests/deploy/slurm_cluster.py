"""A private single-node Slurm cluster for tests: munged, slurmctld and slurmd of Debian's
``munge`` and ``slurm-wlm``, run as root in the foreground, everything under one directory.

It has its own munge key and socket, its own ports, state, spool and log files, and a
``slurm.conf`` that sbatch, squeue and scancel find through ``SLURM_CONF`` (:attr:`env`). The
node is this machine as ``slurmd -C`` sees it (CPUs and memory), without GPUs: no cgroups,
``proctrack/linuxproc``, ``task/none``. :meth:`stop` cancels what is left, waits for the jobs to
end and stops the daemons; a process of one of its jobs still running afterwards is killed and
reported (:attr:`SlurmCluster.leftovers`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support import free_port

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
# What a job gets after scancel's SIGTERM before SIGKILL: time for one epoch and a checkpoint.
KILL_WAIT_S = 20


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    absent = [name for name in DAEMONS if binary(name) is None]
    if absent:
        return (
            f"Slurm is not installed ({', '.join(absent)} not on PATH nor in /usr/sbin):"
            " apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        return "a private Slurm cluster runs slurmd as root (SlurmUser=root); run as root"
    return None


def binary(name: str) -> str | None:
    """A Slurm or munge program: on PATH, or in /usr/sbin (the daemons; not on every PATH)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


class SlurmCluster:
    """One node (this machine) in one partition, ``debug``; ``start`` waits until it is idle."""

    partition = "debug"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.socket = root / "munge" / "munge.socket"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.leftovers: list[int] = []

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def start(self, timeout_s: float = 60.0) -> SlurmCluster:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self._start_munge()
        self.conf.write_text(self._config())
        self._spawn("slurmctld", ["-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", ["-D", "-f", str(self.conf)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_running()
            state = self.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node did not become idle (state {state!r})\n{self.logs()}")

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command (sbatch, squeue, scancel, sinfo) against this cluster."""
        done = subprocess.run(
            list(argv),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
        return done

    def jobs(self) -> dict[str, str]:
        """Job (array task ``J_T``) → state (``PENDING``, ``RUNNING``, ``COMPLETING``...)."""
        out = self.run("squeue", "-h", "-r", "-o", "%i %T").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def stop(self) -> None:
        try:
            ctld = self._procs.get("slurmctld")
            if ctld is not None and ctld.poll() is None:
                self.run("scancel", "--partition", self.partition, check=False)
                deadline = time.monotonic() + KILL_WAIT_S + 30
                while self.jobs() and time.monotonic() < deadline:
                    time.sleep(0.5)
        finally:
            for proc in reversed(self._procs.values()):  # slurmd, slurmctld, munged
                _terminate(proc)
            self.leftovers = _kill_jobs_of(self.conf)

    def logs(self) -> str:
        parts = []
        for path in sorted((self.root / "log").glob("*")):
            parts.append(f"---- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    # ---- the parts ----

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = self.root / "munge"
        self._spawn(
            "munged",
            [
                "--foreground",
                "--force",
                f"--socket={self.socket}",
                f"--key-file={key}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            self._check_running()
            if time.monotonic() > deadline:
                raise RuntimeError(f"munged made no socket\n{self.logs()}")
            time.sleep(0.1)

    def _config(self) -> str:
        node = _this_node()
        host = node["NodeName"]
        root = self.root
        settings: Mapping[str, object] = {
            "ClusterName": "hpotest",
            "SlurmctldHost": f"{host}(127.0.0.1)",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "AuthInfo": f"socket={self.socket}",
            "CredType": "cred/munge",
            "StateSaveLocation": root / "state",
            "SlurmdSpoolDir": root / "spool",
            "SlurmctldPidFile": root / "slurmctld.pid",
            "SlurmdPidFile": root / "slurmd.pid",
            "SlurmctldLogFile": root / "log" / "slurmctld.log",
            "SlurmdLogFile": root / "log" / "slurmd.log",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "MpiDefault": "none",
            "MailProg": "/bin/true",
            "ReturnToService": 2,
            "KillWait": KILL_WAIT_S,
            "MinJobAge": 300,
            "SlurmdTimeout": 60,
        }
        lines = [f"{k}={v}" for k, v in settings.items()]
        described = " ".join(f"{k}={v}" for k, v in node.items() if k != "UpTime")
        lines.append(f"{described} NodeAddr=127.0.0.1 State=UNKNOWN")
        lines.append(
            f"PartitionName={self.partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP"
        )
        return "\n".join(lines) + "\n"

    def _spawn(self, name: str, args: list[str]) -> None:
        out = (self.root / "log" / f"{name}.out").open("wb")
        proc = subprocess.Popen(
            [binary(name) or name, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        out.close()
        self._procs[name] = proc

    def _check_running(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.logs()}")


def _this_node() -> dict[str, str]:
    """``slurmd -C``'s first line: NodeName=... CPUs=... RealMemory=... as this host has."""
    out = subprocess.run(
        [binary("slurmd") or "slurmd", "-C"], capture_output=True, text=True, check=True
    ).stdout
    first = out.splitlines()[0]
    node = dict(item.split("=", 1) for item in first.split())
    node.setdefault("NodeName", socket.gethostname().split(".")[0])
    return node


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _kill_jobs_of(conf: Path) -> list[int]:
    """Kill the processes of this cluster's jobs that outlived it (a batch shell that died
    and left its worker running, say): those with its ``SLURM_CONF`` and a ``SLURM_JOB_ID``
    in their environment. Their pids."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        names = {item.split(b"=", 1)[0] for item in environ}
        if f"SLURM_CONF={conf}".encode() in environ and b"SLURM_JOB_ID" in names:
            found.append(int(entry.name))
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)
    return found
