"""The lean handler of the hot lease calls (``service.api.lean``) against FastAPI's own.

Two apps on one database: one as served (lean handlers on), one with ``lean_handlers=False``
(FastAPI's handler for every route). Each bad request below goes to both, each against its own
trial of the same study, and both must answer the same status and body (ids and tokens
replaced by placeholders). Requests that succeed must succeed on both with the same outcome.
A spy on FastAPI's dependency solver (``fastapi_solved``) shows which handler served a
request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.api.helpers import API, ask, create_study
from tests.conftest import server_settings
from tests.support import ScratchDatabase

Request = dict[str, Any]  # keyword arguments of TestClient.request
Case = Callable[[dict[str, Any]], Request]  # the app's own trial → the request

_JSON = {"content-type": "application/json"}
_VOLATILE = {
    "id",
    "study_id",
    "number",
    "token",
    "expires_at",
    "params",
    "datetime_start",
    "datetime_complete",
    "duration_s",
}


@pytest.fixture
def clients(db: ScratchDatabase, tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    lean = create_app(server_settings(db, tmp_path))
    stock = create_app(server_settings(db, tmp_path / "stock", lean_handlers=False))
    with (
        TestClient(lean, headers=db.auth_headers) as a,
        TestClient(stock, headers=db.auth_headers) as b,
    ):
        yield a, b


def _post(path: str, body: Any = None, *, raw: bytes | None = None, **headers: str) -> Request:
    content = raw if raw is not None else json.dumps(body).encode()
    return {"method": "POST", "url": path, "content": content, "headers": {**_JSON, **headers}}


def _lease(action: str, **extra: Any) -> Case:
    """A lease call on the app's own trial, with its token and ``extra`` in the body."""
    return lambda t: _post(
        f"{API}/trials/{t['id']}/{action}", {"lease_token": t["lease"]["token"], **extra}
    )


def _with(case: Case, **headers: str | None) -> Case:
    """``case`` with headers changed (None: not sent; an empty ``authorization``: no token)."""

    def build(trial: dict[str, Any]) -> Request:
        request = case(trial)
        merged = {**request["headers"], **headers}
        return {**request, "headers": {k: v for k, v in merged.items() if v is not None}}

    return build


def _bad_cases() -> dict[str, Case]:
    """Requests a client can get wrong, on every lean route: path, auth, content type, body."""
    cases: dict[str, Case] = {}
    for action, good in {
        "heartbeat": {},
        "report": {"step": 1, "value": 0.5},
        "attrs": {"user_attrs": {"gpu": "a100"}},
        "complete": {"values": [0.25]},
        "release": {},
    }.items():
        base = _lease(action, **good)
        cases |= {
            f"{action}: id not a number": lambda t, a=action, g=good: _post(
                f"{API}/trials/abc/{a}", {"lease_token": t["lease"]["token"], **g}
            ),
            f"{action}: id 0": lambda t, a=action, g=good: _post(
                f"{API}/trials/0/{a}", {"lease_token": t["lease"]["token"], **g}
            ),
            f"{action}: id too large": lambda t, a=action, g=good: _post(
                f"{API}/trials/99999999999999999999/{a}", {"lease_token": t["lease"]["token"]}
            ),
            f"{action}: unknown trial": lambda t, a=action, g=good: _post(
                f"{API}/trials/987654/{a}", {"lease_token": t["lease"]["token"], **g}
            ),
            f"{action}: no token": _with(base, authorization=""),
            f"{action}: wrong token": _with(base, authorization="Bearer not-a-token"),
            f"{action}: basic auth": _with(base, authorization="Basic dXNlcjpwdw=="),
            f"{action}: no content type": _with(base, **{"content-type": None}),
            f"{action}: text/plain": _with(base, **{"content-type": "text/plain"}),
            f"{action}: empty body": lambda t, a=action: _post(
                f"{API}/trials/{t['id']}/{a}", raw=b""
            ),
            f"{action}: malformed JSON": lambda t, a=action: _post(
                f"{API}/trials/{t['id']}/{a}", raw=b'{"lease_token": '
            ),
            f"{action}: malformed JSON, no auth": lambda t, a=action: _post(
                f"{API}/trials/{t['id']}/{a}", raw=b"{", authorization=""
            ),
            f"{action}: a list": lambda t, a=action: _post(f"{API}/trials/{t['id']}/{a}", [1]),
            f"{action}: null": lambda t, a=action: _post(f"{API}/trials/{t['id']}/{a}", None),
            f"{action}: no lease_token": lambda t, a=action, g=good: _post(
                f"{API}/trials/{t['id']}/{a}", g
            ),
            f"{action}: lease_token a number": lambda t, a=action, g=good: _post(
                f"{API}/trials/{t['id']}/{a}", {"lease_token": 5, **g}
            ),
            f"{action}: unknown field": _lease(action, **good, bogus=1),
            f"{action}: invalid body, no auth": lambda t, a=action: _post(
                f"{API}/trials/{t['id']}/{a}", {"bogus": 1}, authorization=""
            ),
            f"{action}: lost lease": lambda t, a=action, g=good: _post(
                f"{API}/trials/{t['id']}/{a}", {"lease_token": "x" * 32, **g}
            ),
        }
    cases |= {
        "report: negative step": _lease("report", step=-1, value=0.5),
        "report: step a string": _lease("report", step="two", value=0.5),
        "report: value a string": _lease("report", step=1, value="low"),
        "report: value NaN": lambda t: _post(
            f"{API}/trials/{t['id']}/report",
            raw=b'{"lease_token": "%s", "step": 1, "value": NaN}' % t["lease"]["token"].encode(),
        ),
        "complete: no values": _lease("complete", values=[]),
        "complete: unknown state": _lease("complete", state="exploded"),
        "complete: two values, one objective": _lease("complete", values=[0.1, 0.2]),
        "complete: next without worker": _lease("complete", values=[0.1], next={}),
        "attrs: empty": _lease("attrs", user_attrs={}),
        "ask: no worker_id": lambda t: _post(f"{API}/studies/{t['study_id']}/trials", {}),
        "ask: unknown study": lambda t: _post(f"{API}/studies/987654/trials", {"worker_id": "w"}),
        "ask: study id not a number": lambda t: _post(
            f"{API}/studies/x/trials", {"worker_id": "w"}
        ),
        "ask: empty idempotency key": lambda t: _post(
            f"{API}/studies/{t['study_id']}/trials", {"worker_id": "w"}, **{"idempotency-key": ""}
        ),
        "ask: idempotency key too long": lambda t: _post(
            f"{API}/studies/{t['study_id']}/trials",
            {"worker_id": "w"},
            **{"idempotency-key": "k" * 1000},
        ),
        "claim: wait_seconds too long": lambda t: _post(
            f"{API}/trials/claim", {"worker_id": "w", "wait_seconds": 10_000}
        ),
        "claim: study_ids not a list": lambda t: _post(
            f"{API}/trials/claim", {"worker_id": "w", "study_ids": 3}
        ),
    }
    return cases


BAD = _bad_cases()


def _answer(client: TestClient, request: Request, trial: dict[str, Any]) -> tuple[int, Any]:
    response = client.request(**request)
    text = response.text.replace(trial["lease"]["token"], "<token>")
    text = re.sub(rf'"trial_id": ?{trial["id"]}\b', '"trial_id": "<id>"', text)
    text = text.replace(f"trial {trial['id']} ", "trial <id> ")
    return response.status_code, json.loads(text) if text else None


def test_bad_requests_get_fastapis_answers(clients: tuple[TestClient, TestClient]) -> None:
    """Every case in ``BAD``, sent to both apps (each on its own trial): the same answer, an
    error (none of them changes anything, so one trial per app serves them all)."""
    lean, stock = clients
    study = create_study(lean, max_parallel=4)
    trials = ask(lean, study["id"], "lean"), ask(stock, study["id"], "stock")
    differ, accepted = {}, []
    for name, case in BAD.items():
        answers = [
            _answer(client, case(trial), trial)
            for client, trial in zip((lean, stock), trials, strict=True)
        ]
        if answers[0] != answers[1]:
            differ[name] = answers
        if answers[0][0] < 400:
            accepted.append(name)
    assert differ == {}
    # Each case is a client's mistake, but for a NaN intermediate value: Optuna keeps those
    # (its pruners skip them), and both handlers accept it.
    assert accepted == ["report: value NaN"]
    assert len(BAD) > 100


def test_good_requests_answer_alike(
    clients: tuple[TestClient, TestClient], fastapi_solved: list[str]
) -> None:
    """The same calls on a trial of each app: the same answers, the same trial after; the
    lean app's lease calls never reach FastAPI's handler, the other app's always do."""
    outcomes = []
    for n, client in enumerate(clients):
        study = create_study(client, name=f"s{n}", sampler={"name": "random", "options": {}})
        fastapi_solved.clear()
        trial = ask(client, study["id"], "w")
        token = trial["lease"]["token"]
        answers = []
        for action, body in [
            ("heartbeat", {}),
            ("report", {"step": 0, "value": 0.5}),
            ("report", {"step": 0, "value": 0.9}),  # the same step again: the first value stays
            ("attrs", {"user_attrs": {"gpu": "a100"}}),
            ("complete", {"values": [0.5], "next": {"worker_id": "w"}}),
            ("complete", {"values": [0.5], "next": {"worker_id": "w"}}),  # a repetition
        ]:
            response = client.post(
                f"{API}/trials/{trial['id']}/{action}", json={"lease_token": token, **body}
            )
            assert response.status_code in (200, 204), response.text
            answers.append(response.json() if response.content else None)
        following = answers[-1]["next_trial"]
        assert following == answers[-2]["next_trial"]  # the repeated complete: the same next
        released = client.post(
            f"{API}/trials/{following['id']}/release",
            json={"lease_token": following["lease"]["token"]},
        )
        assert released.status_code == 204
        posts = [call for call in fastapi_solved if call.startswith("POST ")]
        got = client.get(f"{API}/trials/{trial['id']}").json()
        outcomes.append((_shape(answers), _shape(got), len(posts)))
    (lean_answers, lean_trial, lean_posts), (stock_answers, stock_trial, stock_posts) = outcomes
    assert lean_answers == stock_answers
    assert lean_trial == stock_trial
    assert (lean_trial["state"], lean_trial["values"]) == ("complete", [0.5])
    assert lean_trial["intermediate_values"] == [{"step": 0, "value": 0.5}]
    assert lean_posts == 0, "the lean app served lease calls with FastAPI's handler"
    assert stock_posts == 8, "lean_handlers=False must leave every call to FastAPI's handler"


def test_reads_keep_fastapis_handler(client: TestClient, fastapi_solved: list[str]) -> None:
    study = create_study(client)
    trial = ask(client, study["id"])
    fastapi_solved.clear()
    assert client.get(f"{API}/trials/{trial['id']}").status_code == 200
    assert fastapi_solved == [f"GET {API}/trials/{trial['id']}"]


def _shape(body: Any) -> Any:
    """An answer without what differs between two trials: ids, numbers, tokens, times."""
    if isinstance(body, dict):
        return {k: ("<>" if k in _VOLATILE else _shape(v)) for k, v in body.items()}
    if isinstance(body, list):
        return [_shape(v) for v in body]
    return body
