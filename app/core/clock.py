"""The one place that reads the wall clock; rules and services take ``now`` from here."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_today(timezone: str) -> date:
    """Today's date where the users are (Asia/Shanghai by default), not on the server."""
    return utcnow().astimezone(ZoneInfo(timezone)).date()
