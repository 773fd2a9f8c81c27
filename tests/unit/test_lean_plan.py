"""Which routes ``LeanRoute`` plans, and that a planned route still behaves as FastAPI's.

A small app without a database: each route kind the lean handler must leave to FastAPI (query
parameters, a dependency with ``yield``, an endpoint whose value FastAPI
serialises) and one it plans. A spy on FastAPI's dependency solver tells which handler
served a request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from service.api import lean
from service.api.lean import LeanRoute

calls: list[str] = []
_JSON = "application/json"


class Item(BaseModel):
    name: str
    size: int = 1


async def service(request: Request) -> str:
    calls.append("service")
    return "real"


async def caller(x_team: Annotated[str, Header()], svc: Annotated[str, Depends(service)]) -> str:
    calls.append("caller")
    return f"{x_team}/{svc}"


def closing() -> Iterator[str]:
    yield "resource"


router = APIRouter(route_class=LeanRoute)


@router.post("/items/{item_id}")
def planned(
    item_id: int,
    item: Item,
    who: Annotated[str, Depends(caller)],
    svc: Annotated[str, Depends(service)],  # cached: called once per request
) -> Response:
    return Response(f"{item_id} {item.name} {item.size} {who} {svc}", media_type="text/plain")


@router.post("/query/{item_id}")
def with_query(item_id: int, item: Item, q: int = 0) -> Response:
    return Response(f"{item_id} {q}")


@router.post("/yield")
def with_yield(item: Item, res: Annotated[str, Depends(closing)]) -> Response:
    return Response(res)


@router.post("/tags")
def with_repeated_header(
    item: Item, x_tag: Annotated[str | list[str] | None, Header()] = None
) -> Response:
    """FastAPI reads every value of a header that may be a list; a single one would do too."""
    return Response(x_tag if isinstance(x_tag, str) else ",".join(x_tag or []))


@router.post("/model")
def returns_model(item: Item) -> Item:
    return item


app = FastAPI()
app.include_router(router, prefix="/v1")


@pytest.fixture
def client() -> Iterator[TestClient]:
    calls.clear()
    with TestClient(app) as c:
        yield c
    app.dependency_overrides.clear()
    app.state.lean_handlers = True


def test_a_simple_route_is_served_by_the_plan(
    client: TestClient, fastapi_solved: list[str]
) -> None:
    r = client.post("/v1/items/7", json={"name": "a", "size": "3"}, headers={"x-team": "t"})
    assert (r.status_code, r.text) == (200, "7 a 3 t/real real")
    assert fastapi_solved == []
    assert calls == ["service", "caller"]  # FastAPI's order; the cached service ran once


def test_off_the_happy_path_fastapi_answers(client: TestClient, fastapi_solved: list[str]) -> None:
    """Bad requests go to FastAPI's handler before the plan runs any dependency: the same
    answers and the same dependency calls as with the lean handler switched off."""
    bad = [
        ("/v1/items/7", {"json": {"name": "a"}}),  # no x-team header
        ("/v1/items/x", {"json": {"name": "a"}, "headers": {"x-team": "t"}}),
        ("/v1/items/7", {"json": {"size": 2}, "headers": {"x-team": "t"}}),
        ("/v1/items/7", {"content": b'{"name": "a"}', "headers": {"x-team": "t"}}),
        ("/v1/items/7", {"content": b"{", "headers": {"x-team": "t", "content-type": _JSON}}),
    ]
    seen = []
    for switch in (False, True):
        app.state.lean_handlers = switch
        calls.clear()
        answers = [(r.status_code, r.json()) for r in (client.post(p, **kw) for p, kw in bad)]
        seen.append((answers, list(calls)))
    assert seen[0] == seen[1]
    assert [status for status, _ in seen[0][0]] == [422] * 5
    # Both times FastAPI's handler served them (it refuses a body that is not JSON before it
    # solves anything, hence four of five).
    assert fastapi_solved == [f"POST {path}" for path, _ in bad[:4]] * 2


def test_overrides_are_honoured(client: TestClient, fastapi_solved: list[str]) -> None:
    app.dependency_overrides[service] = lambda: "fake"
    r = client.post("/v1/items/7", json={"name": "a"}, headers={"x-team": "t"})
    assert r.text == "7 a 1 t/fake fake"
    assert fastapi_solved == ["POST /v1/items/7"]


@pytest.mark.parametrize(
    ("path", "request_kwargs", "expected"),
    [
        ("/v1/query/3?q=5", {"json": {"name": "a"}}, "3 5"),
        ("/v1/yield", {"json": {"name": "a"}}, "resource"),
        ("/v1/model", {"json": {"name": "m"}}, '{"name":"m","size":1}'),
        ("/v1/tags", {"json": {"name": "t"}, "headers": [("x-tag", "a"), ("x-tag", "b")]}, "a,b"),
    ],
)
def test_routes_it_cannot_plan_keep_fastapis_handler(
    client: TestClient,
    fastapi_solved: list[str],
    path: str,
    request_kwargs: dict[str, Any],
    expected: str,
) -> None:
    r = client.post(path, **request_kwargs)
    assert (r.status_code, r.text) == (200, expected)
    assert fastapi_solved == [f"POST {path.split('?')[0]}"]


def test_a_plan_that_breaks_leaves_the_route_to_fastapi(
    monkeypatch: pytest.MonkeyPatch, fastapi_solved: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """If FastAPI's internals no longer read as the planner expects, the route still works."""

    def broken(route: Any) -> Any:
        raise AttributeError("'Dependant' object has no attribute 'path_params'")

    monkeypatch.setattr(lean, "_plan", broken)
    other = APIRouter(route_class=LeanRoute)
    other.add_api_route("/items/{item_id}", planned, methods=["POST"])
    fresh = FastAPI()
    fresh.include_router(other)
    with TestClient(fresh) as c:
        r = c.post("/items/7", json={"name": "a"}, headers={"x-team": "t"})
    assert (r.status_code, r.text) == (200, "7 a 1 t/real real")
    assert fastapi_solved == ["POST /items/7"]
    assert "no lean handler for /items/{item_id}" in caplog.text
