"""The one call ``create_app`` makes: request ids and metrics middleware, ``GET /metrics``."""

from __future__ import annotations

from fastapi import FastAPI

from service.observability.endpoints import router
from service.observability.logs import route_optuna_logs
from service.observability.requests import RequestObserver


def install_observability(app: FastAPI) -> None:
    """Wire observability into ``app``. Logging itself is configured by whoever runs the app
    (``hpo serve`` hands ``logs.logging_config(settings.log_format, ...)`` to uvicorn);
    ``GET /metrics`` reads ``metrics_token`` from ``app.state.settings`` per request."""
    app.add_middleware(RequestObserver)
    app.include_router(router)
    route_optuna_logs()
