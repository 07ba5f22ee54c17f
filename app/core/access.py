"""Roles and access checks.

Every model that a signed-in user can open by id defines ``visible_to(user)``: a SQL condition
for the rows that user may see (an employer: its own organization's). Views load objects only
through ``get_visible_or_404`` and ``select_visible``, so scoping is the default: a model without
``visible_to`` cannot be loaded that way at all, and another organization's object is a 404,
indistinguishable from a missing one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import abort
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import Select, or_, select

from app.core.regions import region_prefix
from app.extensions import db


def route_in_region(model, user):
    """Rows of a route (``origin_region_code``, ``destination_region_code``) leaving from or
    going to the user's region: what a coordinator sees of requests, trips and their
    messages."""
    prefix = region_prefix(user.region_code)
    return or_(
        model.origin_region_code.startswith(prefix),
        model.destination_region_code.startswith(prefix),
    )


class Role(enum.StrEnum):
    ADMIN = "admin"
    COORDINATOR = "coordinator"
    EMPLOYER = "employer"


ROLE_NAMES = {
    Role.ADMIN.value: _l("Administrator"),
    Role.COORDINATOR.value: _l("Coordinator"),
    Role.EMPLOYER.value: _l("Employer"),
}

F = TypeVar("F", bound=Callable)
M = TypeVar("M")


def roles_required(*roles: Role) -> Callable[[F], F]:
    """Signed in (else to the sign-in page) and holding one of ``roles`` (else 403)."""

    def decorator(view: F) -> F:
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorator


def select_visible(model: type[M]) -> Select[tuple[M]]:
    """``select(model)`` limited to the rows the current user may see."""
    return select(model).where(model.visible_to(current_user))  # type: ignore[attr-defined]


def get_visible_or_404(model: type[M], object_id: int) -> M:
    found = db.session.scalar(select_visible(model).where(model.id == object_id))  # type: ignore[attr-defined]
    if found is None:
        abort(404)
    return found
