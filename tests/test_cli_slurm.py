"""``hpo slurm submit`` without Slurm or a server: the script's text, the documented example,
and the one-line errors of options that cannot work (tests/deploy/test_slurm.py runs it on a
real Slurm)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from service.cli.main import main
from service.cli.slurm_script import (
    EXAMPLE,
    JobError,
    WorkerJob,
    parse_directives,
    render,
    time_limit_s,
)
from workers.settings import WorkerSettings

EXAMPLE_FILE = Path(__file__).parents[1] / "deploy" / "slurm" / "hpo-worker.sbatch"


def job(**changes: Any) -> WorkerJob:
    return dataclasses.replace(EXAMPLE, **changes)


def test_the_documented_example_is_the_template_with_example_values() -> None:
    # regenerate: python -c "from service.cli.slurm_script import *; print(render(EXAMPLE), end='')"
    assert EXAMPLE_FILE.read_text() == render(EXAMPLE)


def test_the_slurm_page_shows_the_example_as_it_is() -> None:
    example = EXAMPLE_FILE.read_text()
    page = (EXAMPLE_FILE.parents[2] / "docs" / "deploy" / "slurm.md").read_text()
    assert example[example.index("#SBATCH") :] in page


def test_one_array_task_per_worker_one_gpu_each_signalled_ahead_of_the_limit() -> None:
    script = render(job(workers=4, signal_lead_s=120, log_dir="/scratch/logs"))
    found = parse_directives(script)
    assert found["--array"] == "0-3"
    assert found["--gres"] == "gpu:1"
    assert found["--signal"] == "B:TERM@120"  # B: the batch shell, which is the worker
    assert found["--export"] == "ALL"  # the token comes through the environment
    assert found["--output"] == "/scratch/logs/hpo-worker-%A_%a.out"
    assert found["--partition"] == "gpu" and found["--time"] == "04:00:00"
    assert "export HPO_DEVICE=cuda\n" in script
    assert script.rstrip().splitlines()[-1] == "exec hpo worker"  # exec: no shell in between
    assert 'HPO_WORKER_NAME="slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"' in script


def test_workers_exit_when_idle_after_300s_by_default_and_never_with_0(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert "\nexport HPO_EXIT_WHEN_IDLE_S=300\n" in render(EXAMPLE)
    assert "\nexport HPO_EXIT_WHEN_IDLE_S=45\n" in render(job(exit_when_idle_s=45))
    never = render(job(exit_when_idle_s=0))
    assert "\nexport HPO_EXIT_WHEN_IDLE_S=0\n" in never and "scancel the job" in never
    monkeypatch.setenv("HPO_EXIT_WHEN_IDLE_S", "45")  # the name the script exports ...
    assert WorkerSettings().exit_when_idle_s == 45  # ... is the worker's setting


def test_a_negative_exit_when_idle_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # refused before sbatch or the API is needed
    argv = ["slurm", "submit", "--study", "s", "--workers", "2", "--exit-when-idle", "-1"]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: --exit-when-idle must be 0 (never) or more seconds"
    assert "hpo slurm submit --help" in err[1] and len(err) == 2


def test_no_gpus_means_no_gres_and_a_cpu_worker() -> None:
    script = render(job(gpus_per_worker=0, partition=None, time=None, account="lab"))
    found = parse_directives(script)
    assert "--gres" not in found and "--partition" not in found and "--time" not in found
    assert found["--account"] == "lab"
    assert "export HPO_DEVICE=cpu\n" in script


def test_values_are_quoted_for_the_shell() -> None:
    script = render(job(api_url="http://a:1,http://b:2", study_name="x y"))
    assert "export HPO_API_URL=http://a:1,http://b:2\n" in script
    script = render(job(api_url="http://h/$(reboot)"))
    assert "export HPO_API_URL='http://h/$(reboot)'\n" in script
    assert parse_directives(render(job(study_name="my study/2")))["--job-name"] == "hpo-my_study_2"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10", 600),
        ("1:30", 90),
        ("04:00:00", 14400),
        ("2-0", 172800),
        ("1-02:03", 93780),
        ("1-00:00:05", 86405),
    ],
)
def test_slurm_time_limits(text: str, seconds: int) -> None:
    assert time_limit_s(text) == seconds


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"workers": 0}, "--workers must be at least 1"),
        ({"time": "5", "signal_lead_s": 300}, "not longer than --signal-lead"),
        ({"time": "four hours"}, "use minutes, H:MM:SS or D-HH:MM:SS"),
        ({"signal_lead_s": 70000}, "--signal-lead must be 1 to 65535"),
        ({"partition": "gpu a100"}, "--partition 'gpu a100'"),
        ({"log_dir": "/my logs"}, "takes no spaces"),
        ({"gpus_per_worker": -1}, "--gpus-per-worker must be 0 or more"),
    ],
)
def test_jobs_that_cannot_work_are_refused(changes: dict[str, object], says: str) -> None:
    with pytest.raises(JobError, match=says):
        render(job(**changes))


def test_without_sbatch_on_path_one_line_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert main(["slurm", "submit", "--study", "s", "--workers", "2"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: Slurm's sbatch is not on PATH"
    assert "--dry-run" in err[1] and len(err) == 2


def test_bad_options_are_refused_before_anything_else(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # neither sbatch nor the API is needed to say it
    argv = ["slurm", "submit", "--study", "s", "--workers", "2", "--time", "3"]
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "error: --time 3 is not longer than --signal-lead 300s:"
        " the worker would be told to stop as it starts"
    )
    assert "hpo slurm submit --help" in err[1]
