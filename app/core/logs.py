"""Logs: one line per event, JSON on stdout in production (``LOG_FORMAT=json``), plain text on
stderr in development; every request gets an id and one access line.

The access line carries the method, the path without its query string (ID and phone numbers
travel in query strings and forms, never in logs) with signed-link tokens taken out, the status
and the duration. The request id comes from an incoming ``X-Request-ID`` that looks like one
(so a load balancer's id follows the request), else is made here, and goes back in the response.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import IO

from flask import Flask, Response, g, has_request_context, request

ACCESS_LOG = logging.getLogger("fangang.access")
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
# URL parts that are credentials (the signed link to a worker's trip page).
SECRET_VIEW_ARGS = frozenset({"token"})
# Fields a record may carry (set by the access log, the request filter or a Celery hook).
EXTRA_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "task_id", "task_name")
FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in EXTRA_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines for development, with the request id when there is one."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [{request_id}]" if request_id else line


class RequestIdFilter(logging.Filter):
    """Gives every record logged during a request that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing ``log_format`` lines to ``stream``: by default JSON to stdout (for
    the log collector), text to stderr (beside a command's own output, as Flask's does)."""
    if log_format == "json":
        handler = logging.StreamHandler(stream or sys.stdout)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(TextFormatter())
    handler.addFilter(RequestIdFilter())
    handler._fangang = True  # type: ignore[attr-defined] - ours, replaced on reconfiguration
    return handler


def install(
    logger: logging.Logger, log_format: str, level: str | int | None = None, stream=None
) -> logging.Handler:
    """Put this module's handler on ``logger`` in place of any it put there before."""
    remove(logger)
    handler = make_handler(log_format, stream)
    logger.addHandler(handler)
    if level is not None:
        logger.setLevel(level)
    return handler


def remove(logger: logging.Logger) -> None:
    """Take this module's handlers off ``logger``."""
    for handler in [h for h in logger.handlers if getattr(h, "_fangang", False)]:
        logger.removeHandler(handler)


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """The root logger, once per process (again for a new app: the handler is replaced).

    JSON: our handler on stdout, always. Text: ours only when nobody else has configured
    logging (a test runner, an embedding host), so nothing is printed twice."""
    if log_format not in FORMATS:
        raise SystemExit(f"fangang: LOG_FORMAT={log_format!r} is not one of {', '.join(FORMATS)}.")
    if not isinstance(logging.getLevelName(level.upper()), int):
        raise SystemExit(f"fangang: LOG_LEVEL={level!r} is not a logging level (INFO, DEBUG…).")
    # Alembic announces its plugins at import (INFO): seven lines of nothing in every process.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    root = logging.getLogger()
    remove(root)
    if log_format == "json" or not root.handlers:
        install(root, log_format, level.upper())


def init_app(app: Flask) -> None:
    configure_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])

    @app.before_request
    def start_request() -> None:
        g.request_started = time.perf_counter()
        given = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = given if _SANE_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

    @app.after_request
    def log_request(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started")
        duration = round((time.perf_counter() - started) * 1000, 1) if started else None
        path = logged_path()
        ACCESS_LOG.info(
            "%s %s %s",
            request.method,
            path,
            response.status_code,
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": path,
                "status": response.status_code,
                "duration_ms": duration,
            },
        )
        return response


def logged_path() -> str:
    """The request's path, without its query string and with credentials replaced."""
    path = request.path
    for name, value in (request.view_args or {}).items():
        if name in SECRET_VIEW_ARGS and str(value):
            path = path.replace(str(value), f"<{name}>")
    return path
