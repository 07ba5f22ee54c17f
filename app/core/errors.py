"""Domain errors and the friendly error pages."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_babel import lazy_gettext as _l
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
        if request.path.startswith("/api/"):
            return json_error(error.code)
        return render_template("errors/error.html", status=shown), error.code


HTTP_MESSAGES = {
    400: _l("The request could not be read."),
    401: _l("A valid API token is needed (Bearer)."),
    403: _l("Your role may not do this."),
    404: _l("Not found."),
    405: _l("This method is not allowed here."),
    413: _l("The request is too large."),
    429: _l("Too many requests: slow down and try again in a minute."),
}


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    """The API's one shape of error (machines read ``code``, people ``message``)."""
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def json_error(status: int):
    message = HTTP_MESSAGES.get(status, _l("Something went wrong on our side."))
    return jsonify(error_body(f"http_{status}", str(message))), status
