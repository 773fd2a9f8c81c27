"""The worker's client with several API URLs: it fails over on transport errors only."""

from __future__ import annotations

import httpx
import pytest

from workers.client import HPOClient, Unavailable, api_urls

A = "http://api-a:8000"
B = "http://api-b:8000"


class Fleet:
    """A mock transport for two API hosts; ``down`` hosts refuse connections."""

    def __init__(self, down: set[str], status: int = 200) -> None:
        self.down = down
        self.status = status
        self.seen: list[tuple[str, str | None]] = []  # (host, Idempotency-Key)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.seen.append((host, request.headers.get("Idempotency-Key")))
        if host in self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(self.status, json={"id": 1, "host": host})


def client_for(fleet: Fleet, retry_for_s: float = 5.0) -> HPOClient:
    return HPOClient(f"{A}, {B}/", transport=httpx.MockTransport(fleet), retry_for_s=retry_for_s)


def test_api_urls_split_commas_and_strip() -> None:
    assert api_urls(f" {A}/ ,{B}, ") == [A, B]
    assert api_urls([A]) == [A]
    with pytest.raises(ValueError):
        api_urls(" , ")


def test_a_refused_connection_moves_to_the_next_url_with_the_same_key() -> None:
    fleet = Fleet(down={"api-a"})
    with client_for(fleet) as client:
        client.request("POST", "/trials/claim", json={}, idempotent=True)
        assert [host for host, _ in fleet.seen] == ["api-a", "api-b"]
        assert fleet.seen[0][1] is not None and fleet.seen[0][1] == fleet.seen[1][1]
        assert client.base_url == B
        client.request("GET", "/studies")  # sticks to the URL that answered
        assert fleet.seen[-1][0] == "api-b"


def test_a_5xx_is_retried_on_the_same_url() -> None:
    fleet = Fleet(down=set(), status=503)
    with client_for(fleet, retry_for_s=0.5) as client, pytest.raises(Unavailable):
        client.request("GET", "/studies")
    assert {host for host, _ in fleet.seen} == {"api-a"}
    assert len(fleet.seen) >= 2


def test_every_url_down_alternates_then_gives_up() -> None:
    fleet = Fleet(down={"api-a", "api-b"})
    with client_for(fleet, retry_for_s=0.6) as client, pytest.raises(Unavailable):
        client.request("GET", "/studies")
    hosts = [host for host, _ in fleet.seen]
    assert hosts[:4] == ["api-a", "api-b", "api-a", "api-b"]
