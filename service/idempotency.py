"""``Idempotency-Key``: a POST sent again with the same key gets the first response again.

The first response is stored in ``hpo_idempotency_keys`` in the same transaction as the change
it describes, so a retried request after a lost response neither repeats the change (a second
trial, a second study) nor loses it. Keys are scoped by endpoint and expire after a TTL.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from service.db.prepared import Statement
from service.errors import IdempotencyMismatch, ServiceError

MAX_IDEMPOTENCY_KEY_LENGTH = 255  # hpo_idempotency_keys.key


@dataclass(frozen=True)
class IdempotencyKey:
    scope: str  # e.g. "POST /api/v1/trials/claim"
    key: str
    request_hash: str

    @classmethod
    def of(cls, scope: str, key: str, body: Any) -> IdempotencyKey:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        return cls(scope, key, hashlib.sha256(canonical.encode()).hexdigest())


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any


_RECORD = Statement(
    """
    INSERT INTO hpo_idempotency_keys (scope, key, request_hash, status_code, response)
    VALUES (:scope, :key, :hash, :status, CAST(:body AS jsonb))
    ON CONFLICT DO NOTHING
    RETURNING 1
    """
)


class KeyRace(ServiceError):
    """Another request with the same key committed first; the caller replays its response."""


def find(conn: Connection, key: IdempotencyKey) -> StoredResponse | None:
    row = conn.execute(
        text(
            "SELECT request_hash, status_code, response FROM hpo_idempotency_keys"
            " WHERE scope = :scope AND key = :key"
        ),
        {"scope": key.scope, "key": key.key},
    ).one_or_none()
    if row is None:
        return None
    if row.request_hash != key.request_hash:
        raise IdempotencyMismatch(
            f"Idempotency-Key {key.key!r} was already used with a different request",
            {"scope": key.scope},
        )
    return StoredResponse(row.status_code, row.response)


def record(conn: Connection, key: IdempotencyKey, status_code: int, body: Any) -> None:
    """Store the response; raises :class:`KeyRace` if the key was stored concurrently."""
    inserted = _RECORD.one_or_none(
        conn,
        {
            "scope": key.scope,
            "key": key.key,
            "hash": key.request_hash,
            "status": status_code,
            "body": json.dumps(body, default=str),
        },
    )
    if inserted is None:
        raise KeyRace("idempotency key stored concurrently")
