"""The one place that reads the wall clock; rules and services take ``now`` from here."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
