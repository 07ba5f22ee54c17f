"""Domain errors and the friendly error pages."""

from __future__ import annotations

import logging

from flask import Flask, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.extensions import db

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule of the domain refused an operation. ``code`` is stable (``field.reason``);
    the view maps it to a message in the user's language."""

    def __init__(self, code: str, field: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.field = field


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return render_template("errors/error.html", status=400, csrf=True), 400

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        # Unhandled exceptions arrive here as a 500 (Flask wraps them, and re-raises them
        # instead when testing or debugging, so tests see the real traceback).
        if error.code is None or error.code < 400:
            return error
        if error.code >= 500:
            original = getattr(error, "original_exception", None)
            if original is not None:
                log.error("unhandled error", exc_info=original)
            db.session.rollback()
        shown = error.code if error.code in (400, 403, 404, 405, 413, 429) else 500
        return render_template("errors/error.html", status=shown), error.code
