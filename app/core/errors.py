"""Domain errors and the friendly error pages."""

from __future__ import annotations

import contextlib
import logging

from flask import Flask, jsonify, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from markupsafe import escape
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from app.extensions import db

log = logging.getLogger(__name__)


class DomainError(Exception):
    """A rule of the domain refused an operation. ``code`` is stable (``field.reason``);
    the view maps it to a message in the user's language, filled in with ``details`` (e.g.
    who it is about)."""

    def __init__(self, code: str, field: str | None = None, **details: object) -> None:
        super().__init__(code)
        self.code = code
        self.field = field
        self.details = details


class UnusableCharacter(Exception):
    """Input holding a NUL byte, which no text column keeps (PostgreSQL refuses it, SQLite
    would store it). ``field`` names where it was."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(UnusableCharacter)
    def unusable_character(error: UnusableCharacter):
        message = _(
            "The input contains a character that cannot be saved (a NUL byte) in %(field)s: "
            "remove it and try again.",
            field=error.field,
        )
        if request.path.startswith("/api/"):
            return jsonify(error_body("invalid_character", message, {error.field: [message]})), 400
        return render_template("errors/error.html", status=400, message=message), 400

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        # A worker's form ("I can't go", the trip look-up) leads back to their own page, not
        # to the staff sign-in that the home page is for everyone without an account.
        back = None
        if request.endpoint == "public.withdraw":
            back = url_for("public.my_trip", token=request.view_args["token"])
        elif request.endpoint == "public.lookup":
            back = url_for("public.lookup")
        return render_template("errors/error.html", status=400, csrf=True, back=back), 400

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

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_unavailable(error: SQLAlchemyError):
        """The database went away under the request (its connection killed, a restart, a
        failover) or turned it away for a moment (a deadlock, a lock or statement timeout):
        the transaction is rolled back, nothing of it was saved (unless the connection died
        during COMMIT itself, a case no client can tell; the retry then meets what was
        saved, as a double submit does). 503, and the page says to try again; the pool drops
        the dead connection and the next request gets a fresh one."""
        original = getattr(error, "orig", None) or error
        reason = (str(original).strip().splitlines() or [""])[0][:200]  # no SQL, no values
        log.warning("database unavailable (%s: %s): answered 503", type(original).__name__, reason)
        with contextlib.suppress(SQLAlchemyError):
            db.session.rollback()
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if request.path.startswith("/api/"):
            response, status = json_error(503)
            return response, status, headers
        try:
            page = render_template("errors/error.html", status=503)
        except SQLAlchemyError:  # the page itself needs the database (the signed-in user)
            with contextlib.suppress(SQLAlchemyError):
                db.session.rollback()
            # The error page's own sentence.
            page = escape(
                _(
                    "An error occurred on our side and nothing was saved. Please try again in "
                    "a moment; if it happens again, tell your coordinator."
                )
            )
        return page, 503, headers


RETRY_AFTER_SECONDS = 5

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
