"""Domain errors.

Every error the service raises on purpose is a :class:`ServiceError`. Each subclass carries the
HTTP status and the machine-readable ``code`` it maps to (and, for a passing condition, the
``Retry-After`` seconds to answer with); ``service.api.errors`` is the one place that turns them
into responses of the shape ``{"error": {"code", "message", "details"}}``.
Services and repositories never import FastAPI: they raise these.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    """Base class. ``message`` is for humans, ``details`` is optional structured context."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    # Seconds after which retrying may succeed (sent as ``Retry-After``); None: do not retry.
    retry_after: ClassVar[int | None] = None

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(ServiceError):
    """The request is well-formed JSON but its content is invalid (422)."""

    status_code = 422
    code = "invalid_input"


class SpecError(InvalidInput):
    """A study specification (search space, sampler, pruner, budgets) is invalid (422)."""

    code = "invalid_spec"


class BadCursor(ServiceError):
    """A pagination or change cursor could not be decoded (400)."""

    status_code = 400
    code = "bad_cursor"


class NotFound(ServiceError):
    """The addressed study or trial does not exist (404)."""

    status_code = 404
    code = "not_found"


class Conflict(ServiceError):
    """The request conflicts with the current state (409)."""

    status_code = 409
    code = "conflict"


class DuplicateName(Conflict):
    code = "duplicate_name"


class LeaseLost(Conflict):
    """The lease token is unknown, expired or belongs to another attempt. Nothing was changed."""

    code = "lease_lost"


class TrialFinished(Conflict):
    """The trial already finished; it cannot be changed any more."""

    code = "trial_finished"


class StateConflict(Conflict):
    """The study or trial is in a state that does not allow the operation."""

    code = "invalid_state"


class IdempotencyMismatch(Conflict):
    """An ``Idempotency-Key`` was reused for a different request."""

    code = "idempotency_key_reused"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class SchemaOutOfDate(ServiceError):
    """The database schema is behind the code; ``hpo db upgrade`` fixes it."""

    status_code = 503
    code = "schema_out_of_date"
    retry_after = 1


class DatabaseUnavailable(ServiceError):
    """The database cannot be reached or dropped the connection, or no pooled connection became
    free in time: a passing condition (503, which clients retry). Raised by
    ``service.db.unit_of_work``."""

    status_code = 503
    code = "database_unavailable"
    retry_after = 1


class Forbidden(ServiceError):
    """The token is valid, but its role does not allow this call (403)."""

    status_code = 403
    code = "forbidden"
