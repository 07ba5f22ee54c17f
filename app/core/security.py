"""Security headers on every response; input no column can keep is refused before any view.

A dozen lines of headers do not justify another dependency (Flask-Talisman would also manage
cookies and HTTPS redirects, which the config and the proxy already do).
"""

from __future__ import annotations

from flask import Flask, Response, request

from app.core.errors import UnusableCharacter

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"
)


def nul_byte_at(value: object, path: str) -> str | None:
    """Where in a JSON value a NUL byte is (``workers[0].name``), or None."""
    if isinstance(value, str):
        return path if "\0" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else key
            found = nul_byte_at(key, name.replace("\0", "")) or nul_byte_at(item, name)
            if found is not None:
                return found
    if isinstance(value, list):
        for n, item in enumerate(value):
            found = nul_byte_at(item, f"{path}[{n}]")
            if found is not None:
                return found
    return None


def refuse_nul_bytes() -> None:
    """One check for every page and the API: a NUL byte in a query, a form, an uploaded
    file's name (a roster import keeps it) or a JSON body."""
    for values in (request.args, request.form):
        for name, value in values.items(multi=True):
            found = nul_byte_at({name: value}, "")
            if found is not None:
                raise UnusableCharacter(found)
    for name, upload in request.files.items(multi=True):
        found = nul_byte_at({name: upload.filename or ""}, "")
        if found is not None:
            raise UnusableCharacter(found)
    if request.is_json:
        found = nul_byte_at(request.get_json(silent=True), "")
        if found is not None:
            raise UnusableCharacter(found)


def init_app(app: Flask) -> None:
    app.before_request(refuse_nul_bytes)

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "geolocation=(), microphone=(), camera=(self)")
        if app.config.get("HSTS"):
            headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if response.mimetype == "text/html":
            # Pages hold personal data: never keep them in shared caches.
            headers.setdefault("Cache-Control", "no-store")
        return response
