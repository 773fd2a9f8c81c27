"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.db.migrate import schema_status
from service.db.unit_of_work import database_errors
from service.errors import DatabaseUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
def readyz(request: Request) -> JSONResponse:
    """The database answers and both schemas are at head."""
    try:
        with database_errors():  # reading the version tables proves the database answers
            status = schema_status(request.app.state.engine)
    except DatabaseUnavailable as exc:
        return _not_ready("database_unavailable", f"database unreachable: {_reason(exc)}")
    if not status.up_to_date:
        return _not_ready("schema_out_of_date", f"{status.describe()}; run `hpo db upgrade`")
    return JSONResponse({"status": "ready", "schema": status.describe()})


def _reason(exc: DatabaseUnavailable) -> str:
    """The driver's words for why (what an operator needs), else the error's message."""
    cause = exc.__cause__
    return str(getattr(cause, "orig", cause) or exc.message)


def _not_ready(code: str, message: str) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": None}}
    return JSONResponse(body, status_code=503)
