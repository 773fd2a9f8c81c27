"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from service.db.migrate import schema_status

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready"}})
def readyz(request: Request) -> JSONResponse:
    """The database answers and both schemas are at head."""
    try:
        engine = request.app.state.engine
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        status = schema_status(engine)
    except DBAPIError as exc:
        return _not_ready("database_unavailable", f"database unreachable: {exc.orig}")
    if not status.up_to_date:
        return _not_ready("schema_out_of_date", f"{status.describe()}; run `hpo db upgrade`")
    return JSONResponse({"status": "ready", "schema": status.describe()})


def _not_ready(code: str, message: str) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": None}}
    return JSONResponse(body, status_code=503)
