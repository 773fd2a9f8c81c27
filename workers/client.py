"""A small typed client of the HPO service's HTTP API.

Transport errors and 5xx answers are retried with exponential backoff (up to ``retry_for_s``
seconds); every other 4xx raises at once as an :class:`ApiError` subclass. POSTs that create
something (create study, ask, claim) carry an ``Idempotency-Key`` that is reused across the
retries of one call, so a retried request never creates a second trial or loses a lease.

The client may be given several base URLs (API processes in front of one database). It sticks
to one; a transport error (refused, reset, timed out) moves it to the next, at once while some
URL of the list has not been tried yet, and the call is retried there with the same
``Idempotency-Key`` (stored in the database, so every process honours it). A 5xx does not move
it: every process shares the database that answered.

Exceptions::

    ApiError            any error answer: .status, .code, .message, .details
    ├── NotFoundError   404
    ├── LeaseLostError  409 lease_lost: the lease is gone, drop the trial
    └── ConflictError   other 409s (duplicate name, invalid state, trial finished)
    Unavailable         the API could not be reached within the retry budget
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

JSON = Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: JSON = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class NotFoundError(ApiError):
    pass


class ConflictError(ApiError):
    pass


class LeaseLostError(ConflictError):
    pass


class Unavailable(Exception):
    """The API did not answer (connection refused, timeouts, 5xx) within the retry budget.

    ``answer_lost``: the last try may have reached the server and been handled, its answer
    lost on the way back (the connection broke after the request was sent); a caller that
    retries itself should do so soon, with the same Idempotency-Key."""

    def __init__(self, message: str, *, answer_lost: bool = False) -> None:
        super().__init__(message)
        self.answer_lost = answer_lost


@dataclass(frozen=True)
class Lease:
    """A trial handed out by ask or claim."""

    trial_id: int
    study_id: int
    number: int
    attempt: int
    params: dict[str, Any]
    task: dict[str, Any] | None
    token: str
    expires_at: str
    heartbeat_seconds: int
    lease_seconds: int

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Lease:
        lease = doc["lease"]
        return cls(
            trial_id=doc["id"],
            study_id=doc["study_id"],
            number=doc["number"],
            attempt=doc["attempt"],
            params=dict(doc["params"]),
            task=doc.get("task"),
            token=lease["token"],
            expires_at=lease["expires_at"],
            heartbeat_seconds=lease["heartbeat_seconds"],
            lease_seconds=lease["lease_seconds"],
        )


@dataclass(frozen=True)
class NoTrial:
    """Ask/claim had nothing to give; ``reason`` (paused, stopped, max_parallel, budget_spent)
    when the server said why."""

    reason: str | None


def api_urls(base_url: str | Sequence[str]) -> list[str]:
    """The base URLs in ``base_url``: a sequence, or one string of comma-separated URLs."""
    parts = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = [u.strip().rstrip("/") for u in parts if u.strip()]
    if not urls:
        raise ValueError("no API URL given")
    return urls


class HPOClient:
    """Thread-safe (httpx.Client is); one instance per process is enough.

    ``base_url``: one URL, or several (a sequence, or comma-separated) to fail over between.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        token: str | None = None,
        timeout_s: float = 30.0,
        retry_for_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_urls = api_urls(base_url)
        self._https = [
            httpx.Client(
                base_url=url + "/api/v1", headers=headers, timeout=timeout_s, transport=transport
            )
            for url in self.base_urls
        ]
        self._current = 0
        self._switch_lock = threading.Lock()
        self.retry_for_s = retry_for_s

    @property
    def base_url(self) -> str:
        """The URL calls go to now."""
        return self.base_urls[self._current]

    def close(self) -> None:
        for http in self._https:
            http.close()

    def __enter__(self) -> HPOClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- transport ----

    def request(
        self,
        method: str,
        path: str,
        *,
        json: JSON = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = False,
        idempotency_key: str | None = None,
        timeout_s: float | None = None,
        retry_for_s: float | None = None,
    ) -> httpx.Response:
        """One API call with retries; returns 2xx responses, raises ApiError for 4xx.

        ``idempotent``: the call carries an ``Idempotency-Key`` (``idempotency_key``, or a new
        one), the same on every retry; a caller that retries the call itself passes its own."""
        headers = dict(headers or {})
        if idempotent:
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        budget = self.retry_for_s if retry_for_s is None else retry_for_s
        deadline = time.monotonic() + budget
        delay = 0.2
        untried = len(self._https) - 1  # other URLs to try at once before backing off
        while True:
            index = self._current
            try:
                response = self._https[index].request(
                    method,
                    path,
                    json=json,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
                if response.status_code < 500:
                    break
                failure: str = f"{response.status_code} from {method} {path}"
                lost = False
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}"
                lost = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if self._fail_over(index) and untried > 0:
                    untried -= 1
                    continue
            untried = len(self._https) - 1
            if time.monotonic() + delay > deadline:
                raise Unavailable(
                    f"the API did not answer {method} {path}: {failure}", answer_lost=lost
                )
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 5.0)
        if response.status_code >= 400:
            raise _error(response)
        return response

    def _fail_over(self, failed: int) -> bool:
        """Move to the URL after ``failed`` unless another thread already moved on; False
        when there is only one URL."""
        if len(self._https) == 1:
            return False
        with self._switch_lock:
            if self._current == failed:
                self._current = (failed + 1) % len(self._https)
        return True

    # ---- studies ----

    def create_study(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", "/studies", json=spec, idempotent=True).json())

    def get_study(self, study: int | str) -> dict[str, Any]:
        """By id, or by name (a string that is not all digits)."""
        if isinstance(study, str) and not study.isdigit():
            return dict(self.request("GET", f"/studies/by-name/{study}").json())
        return dict(self.request("GET", f"/studies/{int(study)}").json())

    def list_studies(self, state: str | None = None) -> Iterator[dict[str, Any]]:
        yield from self._pages("/studies", {"state": state} if state else {})

    def update_study(self, study_id: int, **changes: Any) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/studies/{study_id}", json=changes).json())

    def delete_study(self, study_id: int) -> None:
        self.request("DELETE", f"/studies/{study_id}")

    # ---- trials ----

    def ask(self, study_id: int, worker_id: str) -> Lease | NoTrial:
        response = self.request(
            "POST", f"/studies/{study_id}/trials", json={"worker_id": worker_id}, idempotent=True
        )
        return _lease_or_none(response)

    def claim(
        self,
        worker_id: str,
        *,
        study_ids: Sequence[int] | None = None,
        tasks: Sequence[str] | None = None,
        wait_seconds: float = 0.0,
        retry_for_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> Lease | NoTrial:
        """``idempotency_key``: the key of an earlier claim that got no answer, so that a
        trial handed out to it is not handed out again (see :meth:`request`)."""
        body = {
            "worker_id": worker_id,
            "study_ids": list(study_ids) if study_ids is not None else None,
            "tasks": list(tasks) if tasks is not None else None,
            "wait_seconds": wait_seconds,
        }
        response = self.request(
            "POST",
            "/trials/claim",
            json=body,
            idempotent=True,
            idempotency_key=idempotency_key,
            timeout_s=wait_seconds + 30.0,
            retry_for_s=retry_for_s,
        )
        return _lease_or_none(response)

    def enqueue(
        self, study_id: int, params: Mapping[str, Any], user_attrs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"params": dict(params), "user_attrs": dict(user_attrs or {})}
        return dict(self.request("POST", f"/studies/{study_id}/trials/enqueue", json=body).json())

    def heartbeat(self, trial_id: int, token: str) -> dict[str, Any]:
        body = {"lease_token": token}
        return dict(self.request("POST", f"/trials/{trial_id}/heartbeat", json=body).json())

    def report(
        self,
        trial_id: int,
        token: str,
        step: int,
        value: float,
        *,
        retry_for_s: float | None = None,
    ) -> dict[str, Any]:
        """Returns ``{"should_prune": bool, "should_stop": bool}``."""
        body = {"lease_token": token, "step": step, "value": value}
        response = self.request(
            "POST", f"/trials/{trial_id}/report", json=body, retry_for_s=retry_for_s
        )
        return dict(response.json())

    def set_attrs(self, trial_id: int, token: str, attrs: Mapping[str, Any]) -> None:
        body = {"lease_token": token, "user_attrs": dict(attrs)}
        self.request("POST", f"/trials/{trial_id}/attrs", json=body)

    def complete(
        self,
        trial_id: int,
        token: str,
        *,
        values: Sequence[float] | None = None,
        state: str = "complete",
        reason: str | None = None,
        user_attrs: Mapping[str, Any] | None = None,
        next_worker_id: str | None = None,
        retry_for_s: float | None = None,
    ) -> dict[str, Any]:
        """Finish the trial; with ``next_worker_id`` the answer's ``next_trial`` holds the
        study's next trial for that worker (one request instead of two)."""
        body: dict[str, Any] = {"lease_token": token, "state": state}
        if next_worker_id is not None:
            body["next"] = {"worker_id": next_worker_id}
        if values is not None:
            body["values"] = list(values)
        if reason is not None:
            body["reason"] = reason
        if user_attrs:
            body["user_attrs"] = dict(user_attrs)
        response = self.request(
            "POST", f"/trials/{trial_id}/complete", json=body, retry_for_s=retry_for_s
        )
        return dict(response.json())

    def release(self, trial_id: int, token: str) -> None:
        self.request("POST", f"/trials/{trial_id}/release", json={"lease_token": token})

    def put_checkpoint(
        self,
        trial_id: int,
        token: str,
        step: int,
        data: bytes,
        *,
        retry_for_s: float | None = None,
    ) -> dict[str, Any]:
        """Replace the trial's checkpoint (raises ApiError 413 above the server's cap)."""
        headers = {
            "X-Lease-Token": token,
            "X-Checkpoint-Step": str(step),
            "Content-Type": "application/octet-stream",
        }
        response = self.request(
            "PUT",
            f"/trials/{trial_id}/checkpoint",
            content=data,
            headers=headers,
            retry_for_s=retry_for_s,
        )
        return dict(response.json())

    def get_checkpoint(self, trial_id: int, token: str | None) -> tuple[int, bytes] | None:
        """The trial's last checkpoint as (step, bytes), or None if it has none."""
        headers = {"X-Lease-Token": token} if token else {}
        try:
            response = self.request("GET", f"/trials/{trial_id}/checkpoint", headers=headers)
        except NotFoundError:
            return None
        return int(response.headers["X-Checkpoint-Step"]), response.content

    def get_trial(self, trial_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/trials/{trial_id}").json())

    def trials(self, study_id: int, **filters: Any) -> Iterator[dict[str, Any]]:
        yield from self._pages(f"/studies/{study_id}/trials", filters)

    def best(self, study_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/studies/{study_id}/best").json())

    def export(self, study_id: int, fmt: str = "csv") -> Iterator[bytes]:
        """Every trial as ``csv`` or ``jsonl``, streamed in chunks (not retried: a stream
        cannot resume where it broke)."""
        http = self._https[self._current]
        try:
            with http.stream("GET", f"/studies/{study_id}/trials.{fmt}") as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield from response.iter_bytes()
        except httpx.TransportError as exc:
            raise Unavailable(f"the API did not answer the export: {exc}") from exc

    # ---- workers ----

    def workers(self, seen_within_s: int | None = None) -> Iterator[dict[str, Any]]:
        """Workers seen within ``seen_within_s`` seconds (the API's default: an hour) or
        holding a lease, with the trials they hold."""
        yield from self._pages("/workers", {"seen_within_s": seen_within_s})

    def _pages(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v is not None}
        while True:
            page = self.request("GET", path, params=query).json()
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            query["cursor"] = page["next_cursor"]


def _lease_or_none(response: httpx.Response) -> Lease | NoTrial:
    if response.status_code == 204:
        return NoTrial(response.headers.get("HPO-No-Trial-Reason"))
    return Lease.from_json(response.json())


def _error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:500], None
    cls: type[ApiError] = ApiError
    if response.status_code == 404:
        cls = NotFoundError
    elif response.status_code == 409:
        cls = LeaseLostError if code == "lease_lost" else ConflictError
    return cls(response.status_code, code, message, details)
