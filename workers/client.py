"""A small typed client of the HPO service's HTTP API.

Transport errors and 5xx answers are retried with exponential backoff (up to ``retry_for_s``
seconds); every other 4xx raises at once as an :class:`ApiError` subclass. POSTs that create
something (create study, ask, claim) carry an ``Idempotency-Key`` that is reused across the
retries of one call, so a retried request never creates a second trial or loses a lease.

Checkpoints travel through the API (``PUT /trials/{id}/checkpoint``) or, on a server with object
storage (``HPO_ARTIFACT_URL``), straight to the bucket through presigned URLs the API hands out;
:meth:`HPOClient.save_checkpoint` finds out which on its first call (the upload request answers
409 ``artifacts_off`` on a server without object storage) and remembers it.

The client may be given several base URLs (API processes in front of one database). It sticks
to one; a transport error (refused, reset, timed out) moves it to the next, at once while some
URL of the list has not been tried yet, and the call is retried there with the same
``Idempotency-Key`` (stored in the database, so every process honours it). A 5xx does not move
it: every process shares the database that answered.

Exceptions::

    ApiError            any error answer: .status, .code, .message, .details
    ├── NotFoundError   404
    ├── ConflictError   other 409s (duplicate name, invalid state, trial finished)
    │   └── LeaseLostError  409 lease_lost: the lease is gone, drop the trial
    └── ObjectStoreError    the bucket refused a presigned request
    Unavailable         the API could not be reached within the retry budget
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

JSON = Any
Blob = bytes | Path  # what an upload sends: bytes, or a file's contents
_CHUNK = 1024 * 1024


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


class ObjectStoreError(ApiError):
    """The bucket refused a presigned request (expired URL, wrong size, no such bucket...)."""


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
    # A paused trial promoted by the asha pruner, or a pbt child's first attempt: the first
    # step to run (None otherwise).
    resume_from_step: int | None = None
    # A pbt child (every attempt): its parent and its first step.
    parent_trial_id: int | None = None
    started_from_step: int | None = None

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
            resume_from_step=doc.get("resume_from_step"),
            parent_trial_id=doc.get("parent_trial_id"),
            started_from_step=doc.get("started_from_step"),
        )


@dataclass(frozen=True)
class NoTrial:
    """Ask/claim had nothing to give; ``reason`` (paused, stopped, max_parallel, budget_spent)
    when the server said why."""

    reason: str | None


@dataclass(frozen=True)
class LeaseBatch:
    """A batch ask or claim: the trials leased (maybe fewer than asked for, or none), and the
    study's reason when it said why there are no more."""

    leases: list[Lease]
    reason: str | None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LeaseBatch:
        return cls([Lease.from_json(t) for t in doc["trials"]], doc.get("no_trial_reason"))


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
        # Presigned URLs: no Authorization header (the URL's signature is the credential).
        self._objects = httpx.Client(timeout=timeout_s, transport=transport)
        self.checkpoint_mode: Literal["api", "presigned"] | None = None  # learnt on first save

    @property
    def base_url(self) -> str:
        """The URL calls go to now."""
        return self.base_urls[self._current]

    def close(self) -> None:
        for http in self._https:
            http.close()
        self._objects.close()

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

    def ask(self, study_id: int, worker_id: str, *, device: str | None = None) -> Lease | NoTrial:
        """``device``: what the trial will run on (``cuda:0``: its wall time counts as GPU
        time; None: not counted)."""
        body: dict[str, Any] = {"worker_id": worker_id}
        if device is not None:
            body["device"] = device
        response = self.request("POST", f"/studies/{study_id}/trials", json=body, idempotent=True)
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
        device: str | None = None,
    ) -> Lease | NoTrial:
        """``idempotency_key``: the key of an earlier claim that got no answer, so that a
        trial handed out to it is not handed out again (see :meth:`request`). ``device``: what
        the trial will run on (see :meth:`ask`)."""
        body = _claim_body(worker_id, None, study_ids, tasks, wait_seconds, device)
        response = self._claim(body, retry_for_s, idempotency_key)
        return _lease_or_none(response)

    def _claim(
        self, body: dict[str, Any], retry_for_s: float | None, idempotency_key: str | None
    ) -> httpx.Response:
        return self.request(
            "POST",
            "/trials/claim",
            json=body,
            idempotent=True,
            idempotency_key=idempotency_key,
            timeout_s=float(body["wait_seconds"]) + 30.0,
            retry_for_s=retry_for_s,
        )

    def ask_many(self, study_id: int, worker_id: str, count: int) -> LeaseBatch:
        """Up to ``count`` trials of the study, each under its own lease, in one request."""
        response = self.request(
            "POST",
            f"/studies/{study_id}/trials",
            json={"worker_id": worker_id, "count": count},
            idempotent=True,
        )
        return LeaseBatch.from_json(response.json())

    def claim_many(
        self,
        worker_id: str,
        count: int,
        *,
        study_ids: Sequence[int] | None = None,
        tasks: Sequence[str] | None = None,
        wait_seconds: float = 0.0,
        retry_for_s: float | None = None,
        idempotency_key: str | None = None,
        device: str | None = None,
    ) -> LeaseBatch:
        """:meth:`claim` for up to ``count`` trials in one request (a worker's free slots);
        with ``wait_seconds`` it answers as soon as there is at least one. ``device``: what
        every one of them will run on (one GPU each for ``cuda``)."""
        body = _claim_body(worker_id, count, study_ids, tasks, wait_seconds, device)
        response = self._claim(body, retry_for_s, idempotency_key)
        return LeaseBatch.from_json(response.json())

    def enqueue(
        self, study_id: int, params: Mapping[str, Any], user_attrs: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"params": dict(params), "user_attrs": dict(user_attrs or {})}
        return dict(self.request("POST", f"/studies/{study_id}/trials/enqueue", json=body).json())

    def import_trials(
        self,
        study_id: int,
        trials: Sequence[Mapping[str, Any]],
        *,
        source: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Import up to 10 000 finished trials (``{"params", "values"}``, or ``"state":
        "pruned"``/``"failed"``; see ``POST /studies/{id}/trials/import``). Retried with one
        ``Idempotency-Key``, so a lost answer never imports them twice; ``dry_run`` only checks.
        Returns ``{"imported", "first_number", "last_number", ...}``."""
        body: dict[str, Any] = {"trials": [dict(t) for t in trials]}
        if source is not None:
            body["source"] = source
        response = self.request(
            "POST",
            f"/studies/{study_id}/trials/import",
            json=body,
            params={"dry_run": "true"} if dry_run else None,
            idempotent=not dry_run,
            timeout_s=300.0,
        )
        return dict(response.json())

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

    def suggest(self, trial_id: int, token: str, name: str, distribution: Mapping[str, Any]) -> Any:
        """Define-by-run: the value of ``name``, a parameter the study does not declare,
        sampled by the server for the trial leased with ``token``. ``distribution`` has the
        search space's JSON shape. Idempotent: a repeat answers the same value."""
        body = {"lease_token": token, "name": name, "distribution": dict(distribution)}
        return self.request("POST", f"/trials/{trial_id}/suggest", json=body).json()["value"]

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
        constraints: Mapping[str, float] | None = None,
        next_worker_id: str | None = None,
        retry_for_s: float | None = None,
        next_device: str | None = None,
    ) -> dict[str, Any]:
        """Finish the trial; with ``next_worker_id`` the answer's ``next_trial`` holds the
        study's next trial for that worker (one request instead of two). ``constraints``: the
        values of the study's declared constraints (complete trials only; <= 0 is feasible)."""
        body: dict[str, Any] = {"lease_token": token, "state": state}
        if next_worker_id is not None:
            body["next"] = {"worker_id": next_worker_id}
            if next_device is not None:
                body["next"]["device"] = next_device
        if values is not None:
            body["values"] = list(values)
        if reason is not None:
            body["reason"] = reason
        if user_attrs:
            body["user_attrs"] = dict(user_attrs)
        if constraints is not None:
            body["constraints"] = {k: float(v) for k, v in constraints.items()}
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
        """The trial's last checkpoint as (step, bytes), or None if it has none (from the
        bucket when the API answers a 303 to a presigned URL)."""
        headers = {"X-Lease-Token": token} if token else {}
        try:
            response = self.request("GET", f"/trials/{trial_id}/checkpoint", headers=headers)
        except NotFoundError:
            return None
        step = int(response.headers["X-Checkpoint-Step"])
        if response.status_code == 303:
            return step, self.download(response.headers["Location"])
        return step, response.content

    def save_checkpoint(
        self, trial_id: int, token: str, step: int, data: bytes, *, retry_for_s: float | None = None
    ) -> dict[str, Any]:
        """Replace the trial's checkpoint, through the API or the bucket, whichever the server
        uses (see the module docstring); a wrong guess is corrected by the server's answer."""
        if self.checkpoint_mode != "api":
            try:
                stored = self._upload_checkpoint(trial_id, token, step, data, retry_for_s)
            except ConflictError as exc:
                if exc.code != "artifacts_off":
                    raise
                self.checkpoint_mode = "api"
            except NotFoundError:
                if self.checkpoint_mode == "presigned":
                    raise
                self.checkpoint_mode = "api"  # a server older than uploads; PUT tells the rest
            else:
                return stored
        try:
            return self.put_checkpoint(trial_id, token, step, data, retry_for_s=retry_for_s)
        except ConflictError as exc:
            if exc.code != "use_presigned":
                raise
        return self._upload_checkpoint(trial_id, token, step, data, retry_for_s)

    def _upload_checkpoint(
        self, trial_id: int, token: str, step: int, data: bytes, retry_for_s: float | None
    ) -> dict[str, Any]:
        stored = self.upload_artifact(
            trial_id, token, "checkpoint", data, step=step, retry_for_s=retry_for_s
        )
        self.checkpoint_mode = "presigned"
        return stored

    # ---- artifacts in object storage ----

    def upload_artifact(
        self,
        trial_id: int,
        token: str,
        name: str,
        data: Blob,
        *,
        step: int | None = None,
        retry_for_s: float | None = None,
    ) -> dict[str, Any]:
        """Upload ``data`` as the trial's artifact ``name`` (presigned PUT, or multipart for a
        large one) and confirm it; the stored artifact. Raises ConflictError ``artifacts_off``
        on a server without object storage, LeaseLostError when the lease went meanwhile (the
        server then deletes the object), ObjectStoreError when the bucket refuses a PUT."""
        size, digest = _size_and_digest(data)
        body = {"name": name, "step": step, "size": size, "sha256": digest}
        headers = {"X-Lease-Token": token}
        base = f"/trials/{trial_id}/artifacts/uploads"
        upload = self.request(
            "POST", base, json=body, headers=headers, retry_for_s=retry_for_s
        ).json()
        done: dict[str, Any] = {}
        if upload["url"] is not None:
            self._put_object(upload["url"], _read(data, 0, size))
        else:
            part_size = int(upload["part_size"])
            done["parts"] = [
                {
                    "part_number": part["part_number"],
                    "etag": self._put_object(
                        part["url"], _read(data, (part["part_number"] - 1) * part_size, part_size)
                    ),
                }
                for part in upload["parts"]
            ]
        path = f"{base}/{upload['upload_id']}/complete"
        answer = self.request("POST", path, json=done, headers=headers, retry_for_s=retry_for_s)
        return dict(answer.json())

    def list_artifacts(self, trial_id: int) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/trials/{trial_id}/artifacts").json()["items"])

    def artifact_url(self, trial_id: int, artifact_id: int, token: str | None = None) -> str:
        """A presigned GET URL of the artifact (a running trial's needs its lease token)."""
        headers = {"X-Lease-Token": token} if token else {}
        path = f"/trials/{trial_id}/artifacts/{artifact_id}/url"
        return str(self.request("GET", path, headers=headers).json()["url"])

    def download(self, url: str) -> bytes:
        """The bytes behind a presigned GET URL."""
        response = self._object_call("GET", url, None)
        return response.content

    def _put_object(self, url: str, content: bytes) -> str:
        """PUT to a presigned URL; the answer's ETag."""
        return str(self._object_call("PUT", url, content).headers.get("ETag", ""))

    def _object_call(self, method: str, url: str, content: bytes | None) -> httpx.Response:
        """A call to the bucket, retried a few times on transport errors and 5xx."""
        failure = ""
        for attempt in range(4):
            if attempt:
                time.sleep(0.2 * 2**attempt)
            try:
                response = self._objects.request(method, url, content=content)
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 300:
                return response
            if response.status_code < 500:
                raise ObjectStoreError(
                    response.status_code, "object_store_error", response.text[:500]
                )
            failure = f"{response.status_code} from object storage"
        raise Unavailable(f"object storage did not answer {method}: {failure}")

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


def _size_and_digest(data: Blob) -> tuple[int, str]:
    if isinstance(data, bytes):
        return len(data), hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with data.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return data.stat().st_size, digest.hexdigest()


def _read(data: Blob, offset: int, length: int) -> bytes:
    """``length`` bytes of ``data`` from ``offset`` (fewer at the end)."""
    if isinstance(data, bytes):
        return data[offset : offset + length]
    with data.open("rb") as f:
        f.seek(offset)
        return f.read(length)


def _claim_body(
    worker_id: str,
    count: int | None,
    study_ids: Sequence[int] | None,
    tasks: Sequence[str] | None,
    wait_seconds: float,
    device: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "worker_id": worker_id,
        "study_ids": list(study_ids) if study_ids is not None else None,
        "tasks": list(tasks) if tasks is not None else None,
        "wait_seconds": wait_seconds,
    }
    if device is not None:
        body["device"] = device
    if count is not None:
        body["count"] = count
    return body


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
