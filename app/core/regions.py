"""GB/T 2260 region codes: six digits, province (2) + city (2) + county (2). Pure."""

from __future__ import annotations


def region_prefix(code: str) -> str:
    """The prefix every code inside ``code`` starts with: 370000 -> "37", 370100 -> "3701",
    370102 -> "370102". A coordinator of a province sees all of its cities and counties."""
    prefix = code
    while prefix.endswith("00") and len(prefix) > 2:
        prefix = prefix[:-2]
    return prefix


def covering_codes(code: str) -> set[str]:
    """The region codes whose coordinators cover ``code``, ``region_prefix`` the other way
    round: 370102 -> {370000, 370100, 370102}. ``code.startswith(region_prefix(c))`` exactly
    when ``c`` is one of them, so a database can find those coordinators by an IN list."""
    return {code[:digits].ljust(len(code), "0") for digits in range(2, len(code) + 1, 2)}
