"""Identifier validation for the domain (pure: no Flask, no database).

Each check normalises what people really type (full-width characters, stray spaces, lower case)
and either returns the canonical value or raises ``InvalidIdentifier`` with a reason code; the
caller turns the code into a sentence in the user's language.
"""

from __future__ import annotations

import numbers
import re
import unicodedata
from datetime import date, datetime


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


# GB 11643-1999 resident ID number: 6-digit region, 8-digit birth date (YYYYMMDD), 3-digit
# sequence, and an ISO 7064 MOD 11-2 check character (a digit or X).
ID_NUMBER_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_NUMBER_CHECK_CHARACTERS = "10X98765432"
ID_NUMBER_PATTERN = re.compile(r"\d{17}[\dX]", re.ASCII)
OLD_ID_NUMBER_PATTERN = re.compile(r"\d{15}", re.ASCII)

# What a numeric spreadsheet cell looks like once it has been turned into text (after
# normalisation, so upper case): scientific notation, a trailing ".0", thousands separators.
EXCEL_NUMBER_PATTERNS = (
    re.compile(r"[+-]?\d+(?:[.,]\d*)?E[+-]?\d+"),  # 3.70102E+17, 3,70102E+17
    re.compile(r"[+-]?\d+[.,]0+"),  # 370102199001011234.0
    re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?"),  # 370,102,199,001,011,000
)


def id_number_check_character(first17: str) -> str:
    total = sum(
        int(digit) * weight for digit, weight in zip(first17, ID_NUMBER_WEIGHTS, strict=True)
    )
    return ID_NUMBER_CHECK_CHARACTERS[total % 11]


def _is_number(value: object) -> bool:
    """A numeric cell (int, float, Decimal, numpy scalars); bool is not a number here."""
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _is_nan(value: object) -> bool:
    """NaN is how pandas reads an empty cell; it is the only value not equal to itself."""
    return _is_number(value) and value != value


def _parse_birth_date(code: str) -> date:
    try:
        birth = date(int(code[6:10]), int(code[10:12]), int(code[12:14]))
    except ValueError:
        raise InvalidIdentifier("birth_date") from None
    if birth.year < 1900:
        raise InvalidIdentifier("birth_date")
    return birth


def validate_id_number(value: object, today: date) -> str:
    """Return the canonical 18-character resident ID number, or raise InvalidIdentifier.

    Reasons, in the order they are checked: ``empty``; ``excel_number`` (a numeric spreadsheet
    cell, or text showing one: it has already lost digits and is never repaired);
    ``old_15_digit``; ``length``; ``characters`` (not 17 digits and a digit or X);
    ``birth_date`` (not a real date, or before 1900); ``future_birth_date`` (after ``today``);
    ``check`` (the check character does not match).
    """
    if value is None or _is_nan(value):
        raise InvalidIdentifier("empty")
    if _is_number(value):
        raise InvalidIdentifier("excel_number")
    if not isinstance(value, str):
        raise InvalidIdentifier("characters")
    code = normalize_identifier(value)
    if not code:
        raise InvalidIdentifier("empty")
    if any(pattern.fullmatch(code) for pattern in EXCEL_NUMBER_PATTERNS):
        raise InvalidIdentifier("excel_number")
    if OLD_ID_NUMBER_PATTERN.fullmatch(code):
        raise InvalidIdentifier("old_15_digit")
    if len(code) != 18:
        raise InvalidIdentifier("length")
    if not ID_NUMBER_PATTERN.fullmatch(code):
        raise InvalidIdentifier("characters")
    birth = _parse_birth_date(code)
    if isinstance(today, datetime):
        today = today.date()
    if birth > today:
        raise InvalidIdentifier("future_birth_date")
    if id_number_check_character(code[:17]) != code[17]:
        raise InvalidIdentifier("check")
    return code


def birth_date_of(id_number: str) -> date:
    """The birth date in a canonical ID number (raises InvalidIdentifier("birth_date") if none)."""
    return _parse_birth_date(normalize_identifier(id_number))


def age_on(birth: date, day: date) -> int:
    """Completed years on ``day``. Comparing (month, day) pairs makes a 29 February birthday
    fall on 1 March in common years."""
    before_birthday = (day.month, day.day) < (birth.month, birth.day)
    return day.year - birth.year - before_birthday


def check_age(id_number: str, travel_date: date, min_age: int, max_age: int) -> None:
    """Raise ``too_young`` / ``too_old`` unless min_age <= age on travel_date <= max_age."""
    age = age_on(birth_date_of(id_number), travel_date)
    if age < min_age:
        raise InvalidIdentifier("too_young")
    if age > max_age:
        raise InvalidIdentifier("too_old")


# Mainland mobile numbers: 11 digits, 1 then 3-9; stored in E.164 as +86 and the 11 digits.
MOBILE_PATTERN = re.compile(r"1[3-9]\d{9}", re.ASCII)
# Separators people type inside phone numbers: spaces, hyphen and dash variants, dots, brackets.
MOBILE_SEPARATORS = re.compile(r"[\s\-.()\u2010-\u2015\u2212\u30fc]+")


def normalize_mobile(value: object) -> str:
    """Return a mainland mobile number in E.164 (``+8613800138000``), or raise InvalidIdentifier.

    Reasons: ``empty``; ``characters`` (letters or other junk); ``landline`` (starts with 0
    once the country code is gone, or 7-8 digits: a local number); ``length`` (not 11 digits);
    ``pattern`` (11 digits that are not a mainland mobile number, or another country code).
    """
    if value is None or _is_nan(value):
        raise InvalidIdentifier("empty")
    if _is_number(value):
        # A numeric cell: 11 digits survive Excel's 15 significant digits, so an integral
        # value (int, 13800138000.0, Decimal) is fine; anything else is junk.
        try:
            whole = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError):
            raise InvalidIdentifier("characters") from None
        if whole != value or whole < 0:
            raise InvalidIdentifier("characters")
        text = str(whole)
    elif isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        text = re.sub(r"^(\+?\d+)\.0+$", r"\1", text)  # "13800138000.0": a float cell as text
    else:
        raise InvalidIdentifier("characters")
    digits = MOBILE_SEPARATORS.sub("", text)
    if not digits:
        raise InvalidIdentifier("empty")
    if digits.startswith("+"):
        if not digits[1:].isdecimal() or not digits[1:].isascii():
            raise InvalidIdentifier("characters")
        if not digits.startswith("+86"):
            raise InvalidIdentifier("pattern")
        digits = digits[3:]
    elif not (digits.isdecimal() and digits.isascii()):
        raise InvalidIdentifier("characters")
    elif digits.startswith("0086"):
        digits = digits[4:]
    elif len(digits) == 13 and digits.startswith("861"):
        digits = digits[2:]
    if not digits:
        raise InvalidIdentifier("length")
    if digits.startswith("0") or len(digits) in (7, 8):
        raise InvalidIdentifier("landline")
    if len(digits) != 11:
        raise InvalidIdentifier("length")
    if not MOBILE_PATTERN.fullmatch(digits):
        raise InvalidIdentifier("pattern")
    return "+86" + digits


def _mask(text: str, head: int, tail: int) -> str:
    """Keep at most ``head`` and ``tail`` characters; short or odd values show even less."""
    length = len(text)
    if length <= 2:
        return "*" * length
    if length < 8:
        head = tail = 1
    else:
        head, tail = min(head, length // 4), min(tail, length // 4)
    return text[:head] + "*" * (length - head - tail) + text[length - tail :]


def _as_text(value: object) -> str:
    return "" if value is None else normalize_identifier(str(value))


def mask_id_number(id_number: str) -> str:
    """``3701**********123X`` for a canonical number; safe for anything (invalid rows too)."""
    return _mask(_as_text(id_number), 4, 4)


def mask_mobile(e164: str) -> str:
    """``138****8000`` (national form) for a mobile number; safe for anything else too."""
    try:
        national = normalize_mobile(e164)[3:]
    except InvalidIdentifier:
        return _mask(_as_text(e164), 3, 4)
    return national[:3] + "****" + national[7:]


_NUMBER_RUN = re.compile(r"\d{7,}[\dXx]?")


def mask_numbers_in(text: str) -> str:
    """Any run of seven or more digits masked, whatever field it stands in: an ID or phone
    number typed into the wrong column must not be shown whole either."""
    return _NUMBER_RUN.sub(lambda found: _mask(found.group(), 3, 4), text)
