"""``hpo study import`` in subprocesses, on a real server: an export (CSV and JSON Lines) read
back into another study, an Optuna study read through ``optuna.load_study``, and every mistake
told in one or two lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest

from service.cli.trial_import import MAX_CHUNK_TRIALS, Row, chunks
from tests.api.helpers import study_body
from tests.support import ScratchDatabase, ServerProcess, hpo
from tests.test_cli_errors import short_error
from workers.client import HPOClient, Lease

pytestmark = pytest.mark.slow

SPACE: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True},
    "n_layers": {"type": "int", "low": 1, "high": 6},
    "act": {"type": "categorical", "choices": ["relu", "tanh", True, 3]},
}
QUIET = {"search_space": SPACE, "pruner": {"name": "none", "options": {}}, "task": None}
ATTRS = {"note": 'a "quoted", {braced} \\ text', "n": 3, "ok": True, "cfg": {"a": [1, 2]}}


@pytest.fixture(scope="module")
def server(test_db: ScratchDatabase) -> Iterator[ServerProcess]:
    with ServerProcess(test_db.url_string, token=test_db.token) as s:
        yield s


@pytest.fixture
def client(db: ScratchDatabase, server: ServerProcess) -> Iterator[HPOClient]:
    with HPOClient(server.url, token=server.token) as c:
        yield c


def env_of(server: ServerProcess) -> dict[str, str]:
    return {"HPO_API_URL": server.url, "HPO_API_TOKEN": server.token}


def ok(*args: str, env: dict[str, str]) -> str:
    result = hpo(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def create(client: HPOClient, name: str, **extra: Any) -> dict[str, Any]:
    return client.create_study(study_body(name, **{**QUIET, **extra}))


def comparable(trial: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "params", "values", "user_attrs", "fail_reason", "datetime_start")
    return {k: trial[k] for k in keys}


def source_study(client: HPOClient) -> dict[str, Any]:
    """Study "src": 3 complete trials (one with every kind of user attribute), a pruned one
    with a curve, a failed one and a running one."""
    study = create(client, "src")
    first = {"lr": 1e-3, "n_layers": 2, "act": "relu"}
    trials: list[dict[str, Any]] = [
        {"params": first, "values": [0.3], "user_attrs": ATTRS},
        {"params": {"lr": 1e-2, "n_layers": 6, "act": True}, "values": [0.1]},
        {"params": {"lr": 1e-4, "n_layers": 1, "act": 3}, "values": [0.2]},
        {"state": "pruned", "params": {"lr": 5e-4, "n_layers": 3, "act": "tanh"},
         "intermediate_values": [{"step": 0, "value": 0.9}, {"step": 1, "value": 0.8}]},
        {"state": "failed", "reason": "oom", "params": {"lr": 5e-4, "n_layers": 3, "act": "tanh"}},
    ]  # fmt: skip
    client.import_trials(study["id"], trials)
    assert isinstance(client.ask(study["id"], "w"), Lease)
    return study


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_an_export_comes_back(
    fmt: str, client: HPOClient, server: ServerProcess, tmp_path: Path
) -> None:
    env = env_of(server)
    source = source_study(client)
    target = create(client, "dst")
    out = tmp_path / f"src.{fmt}"
    ok("study", "export", "src", "--format", fmt, "-o", str(out), env=env)
    said = ok("study", "import", "dst", str(out), env=env)
    assert said == f"imported 5 trials into dst from src.{fmt} (1 unfinished left out)\n"
    before = [comparable(t) for t in client.trials(source["id"]) if t["state"] != "running"]
    after = list(client.trials(target["id"], include_intermediate=True))
    assert [comparable(t) for t in after] == before
    assert after[0]["user_attrs"] == ATTRS
    curve = [{"step": 0, "value": 0.9}, {"step": 1, "value": 0.8}]
    assert after[3]["intermediate_values"] == (curve if fmt == "jsonl" else [])
    assert client.get_study("dst")["n_trials_started"] == 0
    # The same file again: five more trials, numbered after the first five.
    ok("study", "import", str(target["id"]), str(out), env=env)
    assert [t["number"] for t in client.trials(target["id"])] == list(range(10))


def test_an_optuna_study_comes_in(client: HPOClient, server: ServerProcess, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="local", storage=storage)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 0.1, log=True)
        layers = trial.suggest_int("n_layers", 1, 6)
        trial.suggest_categorical("act", ["relu", "tanh", True, 3])
        trial.set_user_attr("layers", layers)
        if trial.number == 3:
            trial.report(0.5, 0)
            raise optuna.TrialPruned()
        if trial.number == 4:
            raise RuntimeError("boom")
        return lr * layers

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=8, catch=(RuntimeError,))
    target = create(client, "from-optuna")
    said = ok(
        "study", "import", "from-optuna", "--optuna-storage", storage, "--optuna-study", "local",
        env=env_of(server),
    )  # fmt: skip
    assert said == "imported 8 trials into from-optuna from optuna:local\n"
    trials = list(client.trials(target["id"], include_intermediate=True))
    assert [t["params"] for t in trials] == [t.params for t in study.trials]
    assert [t["state"] for t in trials] == ["complete"] * 3 + ["pruned", "failed"] + [
        "complete"
    ] * 3
    assert trials[0]["values"] == [study.trials[0].value]
    assert trials[3]["values"] is None and trials[3]["intermediate_values"] == [
        {"step": 0, "value": 0.5}
    ]  # fmt: skip
    assert trials[5]["user_attrs"] == {"layers": study.trials[5].params["n_layers"]}


def test_import_mistakes_are_told_in_a_line_or_two(
    client: HPOClient, server: ServerProcess, tmp_path: Path
) -> None:
    env = env_of(server)
    target = create(client, "dst")
    assert "give the file to import" in short_error(hpo("study", "import", "dst", env=env))
    both = hpo("study", "import", "dst", "x.csv", "--optuna-study", "s", env=env)
    assert "not both" in short_error(both)
    half = hpo("study", "import", "dst", "--optuna-study", "s", env=env)
    assert "--optuna-storage URL" in short_error(half)
    assert "no such file" in short_error(hpo("study", "import", "dst", "nope.csv", env=env))
    missing_db = hpo(
        "study", "import", "dst", "--optuna-storage", f"sqlite:///{tmp_path / 'x.db'}",
        "--optuna-study", "s", env=env,
    )  # fmt: skip
    assert "no such file" in short_error(missing_db)
    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="other", storage=storage)
    unknown = hpo(
        "study", "import", "dst", "--optuna-storage", storage, "--optuna-study", "s", env=env
    )
    assert "no Optuna study named 's'" in short_error(unknown)
    bad_url = hpo(
        "study", "import", "dst", "--optuna-storage", "nosuch://x", "--optuna-study", "s", env=env
    )
    assert "cannot open the Optuna storage" in short_error(bad_url)
    not_export = tmp_path / "other.csv"
    not_export.write_text("a,b\n1,2\n")
    assert "has no 'number' and 'state' columns" in short_error(
        hpo("study", "import", "dst", str(not_export), env=env)
    )
    not_json = tmp_path / "bad.jsonl"
    not_json.write_text('{"state": "complete", "params": {}}\nnot json\n')
    assert "line 2 of" in short_error(hpo("study", "import", "dst", str(not_json), env=env))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "no finished trial" in short_error(hpo("study", "import", "dst", str(empty), env=env))
    assert "study list" in short_error(hpo("study", "import", "nope", str(empty), env=env))

    # A trial the study refuses: its line is named, and nothing of the file is stored.
    lines: list[dict[str, Any]] = [
        {"state": "complete", "number": n, "params": {"lr": 1e-3, "n_layers": 2, "act": "relu"},
         "values": [0.5]}
        for n in range(3)
    ]  # fmt: skip
    lines[2]["params"]["lr"] = 0.5
    bad = tmp_path / "bad-trial.jsonl"
    bad.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    error = short_error(hpo("study", "import", "dst", str(bad), env=env))
    assert (
        f"line 3 of {bad}: params.lr: 0.5 is outside" in error and "nothing was imported" in error
    )
    assert list(client.trials(target["id"])) == []


def test_chunks_hold_at_most_ten_thousand_trials() -> None:
    rows = [Row({"params": {"x": i}}, f"line {i}") for i in range(2 * MAX_CHUNK_TRIALS + 5)]
    sizes = [len(c) for c in chunks(rows)]
    assert sizes == [MAX_CHUNK_TRIALS, MAX_CHUNK_TRIALS, 5]
    big = [Row({"blob": "x" * (6 * 1024 * 1024)}, f"line {i}") for i in range(4)]
    assert [len(c) for c in chunks(big)] == [2, 2]


def test_a_define_by_run_optuna_study_keeps_its_undeclared_parameters(
    client: HPOClient, server: ServerProcess, db: ScratchDatabase, tmp_path: Path
) -> None:
    """Parameters the target study does not declare come with their Optuna distributions."""
    storage = f"sqlite:///{tmp_path / 'dbr.db'}"
    study = optuna.create_study(study_name="branches", storage=storage)

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 0.1, log=True)
        if trial.number % 2:
            return lr * trial.suggest_float("momentum", 0.0, 0.99)
        return lr * trial.suggest_int("width", 16, 256, log=True)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study.optimize(objective, n_trials=4)
    created = create(client, "open", search_space={"lr": SPACE["lr"]})
    ok(
        "study", "import", "open", "--optuna-storage", storage, "--optuna-study", "branches",
        env=env_of(server),
    )  # fmt: skip
    trials = list(client.trials(created["id"]))
    assert [t["params"] for t in trials] == [t.params for t in study.trials]
    loaded = optuna.load_study(study_name=created["optuna_study_name"], storage=db.url_string)
    assert [t.distributions for t in loaded.trials] == [t.distributions for t in study.trials]
