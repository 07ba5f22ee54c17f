"""GB/T 2260 region codes: six digits, province (2) + city (2) + county (2). Pure."""

from __future__ import annotations


def region_prefix(code: str) -> str:
    """The prefix every code inside ``code`` starts with: 370000 -> "37", 370100 -> "3701",
    370102 -> "370102". A coordinator of a province sees all of its cities and counties."""
    prefix = code
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix
