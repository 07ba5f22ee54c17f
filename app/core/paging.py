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


def whole_number(text: str, low: int, high: int) -> int | None:
    """``text`` as a whole number from ``low`` to ``high``, or None (the digits are counted
    before ``int`` reads them: a 30-digit number is refused, not converted)."""
    if re.fullmatch(r"[0-9]{1,7}", text) and low <= int(text) <= high:
        return int(text)
    return None


def page_number(arg: str = "page") -> int:
    """The page asked for in ``arg`` (1 when absent). Anything that is not a page, from
    "abc" to a 30-digit number, is a 404, as a page past the end is."""
    text = request.args.get(arg)
    if text is None:
        return 1
    number = whole_number(text, 1, MAX_PAGE)
    if number is None:
        abort(404)
    return number


def paginate(query: Select, per_page: int | None = None, arg: str = "page") -> Pagination:
    """``db.paginate`` at the page asked for in ``arg``, ``ITEMS_PER_PAGE`` rows a page unless
    told otherwise."""
    return db.paginate(
        query,
        page=page_number(arg),
        per_page=per_page or current_app.config["ITEMS_PER_PAGE"],
    )
