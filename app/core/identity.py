"""Identifier validation for the domain (pure: no Flask, no database).

Each check normalises what people really type (full-width characters, stray spaces, lower case)
and either returns the canonical value or raises ``InvalidIdentifier`` with a reason code; the
caller turns the code into a sentence in the user's language.
"""

from __future__ import annotations

import re
import unicodedata


class InvalidIdentifier(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalize_identifier(value: str) -> str:
    """NFKC folds full-width digits and letters; spaces of any width are removed; upper case."""
    folded = unicodedata.normalize("NFKC", value or "")
    return re.sub(r"\s+", "", folded).upper()


# GB 32100-2015 unified social credit code: 18 characters from a 31-character alphabet
# (no I, O, S, V, Z), the last one a check character over the first 17.
CREDIT_CODE_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
CREDIT_CODE_PATTERN = re.compile(r"[0-9A-HJ-NP-RTUW-Y]{2}\d{6}[0-9A-HJ-NP-RTUW-Y]{10}")


def credit_code_check_character(first17: str) -> str:
    total = sum(
        CREDIT_CODE_ALPHABET.index(char) * weight
        for char, weight in zip(first17, CREDIT_CODE_WEIGHTS, strict=True)
    )
    return CREDIT_CODE_ALPHABET[(31 - total % 31) % 31]


def validate_credit_code(value: str) -> str:
    """Return the canonical unified social credit code, or raise InvalidIdentifier.

    Reasons: ``empty``, ``length`` (not 18 characters), ``characters`` (outside the alphabet or
    the layout), ``check`` (the check character does not match: usually a typo).
    """
    code = normalize_identifier(value)
    if not code:
        raise InvalidIdentifier("empty")
    if len(code) != 18:
        raise InvalidIdentifier("length")
    if not CREDIT_CODE_PATTERN.fullmatch(code):
        raise InvalidIdentifier("characters")
    if credit_code_check_character(code[:17]) != code[17]:
        raise InvalidIdentifier("check")
    return code


REGION_CODE_PATTERN = re.compile(r"[1-9]\d{5}")


def validate_region_code(value: str) -> str:
    """A six-digit GB/T 2260 region code. Codes change over time, so only the form is checked."""
    code = normalize_identifier(value)
    if not code:
        raise InvalidIdentifier("empty")
    if not REGION_CODE_PATTERN.fullmatch(code):
        raise InvalidIdentifier("format")
    return code
