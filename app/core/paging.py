"""Paged lists: the page number read from the query string, checked before it reaches SQL."""

from __future__ import annotations

import re

from flask import abort, current_app, request
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select

from app.extensions import db

# The highest page a list serves (the API documents the same range). A list of 100,000 pages
# of 20 holds two million rows; a larger number only makes an OFFSET the database cannot hold
# (SQLite: "Python int too large to convert to SQLite INTEGER"), which was a 500.
MAX_PAGE = 100_000


def page_number(arg: str = "page") -> int:
    """The page asked for in ``arg`` (1 when absent). Anything that is not a page, from
    "abc" to a 30-digit number, is a 404, as a page past the end is."""
    text = request.args.get(arg)
    if text is None:
        return 1
    if not re.fullmatch(r"[0-9]{1,6}", text) or not 1 <= int(text) <= MAX_PAGE:
        abort(404)
    return int(text)


def paginate(query: Select, per_page: int | None = None, arg: str = "page") -> Pagination:
    """``db.paginate`` at the page asked for in ``arg``, ``ITEMS_PER_PAGE`` rows a page unless
    told otherwise."""
    return db.paginate(
        query,
        page=page_number(arg),
        per_page=per_page or current_app.config["ITEMS_PER_PAGE"],
    )
