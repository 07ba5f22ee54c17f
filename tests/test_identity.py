"""Unified social credit codes (GB 32100-2015) and region codes: pure checks."""

import pytest

from app.core.identity import InvalidIdentifier, validate_credit_code, validate_region_code


@pytest.mark.parametrize(
    "typed",
    [
        "91350100M000100Y43",  # the standard's own example
        "91370100MA3C12340R",
        " 9137 0100 MA3C 1234 0R ",  # stray spaces
        "91370100ma3c12340r",  # lower case
        "９１３７０１００ＭＡ３Ｃ１２３４０Ｒ",  # full-width, as some input methods type it
    ],
)
def test_valid_codes_are_normalised(typed):
    assert validate_credit_code(typed) in {"91350100M000100Y43", "91370100MA3C12340R"}


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("", "empty"),
        ("91370100MA3C1234", "length"),
        ("91370100MA3C12340RX", "length"),
        ("91370100MA3C1234OR", "characters"),  # letter O is not in the alphabet
        ("9137010AMA3C12340R", "characters"),  # the region part must be digits
        ("91370100MA3C12340A", "check"),
        ("91370100MA3C12430R", "check"),  # two characters swapped
    ],
)
def test_invalid_codes_name_their_reason(typed, reason):
    with pytest.raises(InvalidIdentifier) as caught:
        validate_credit_code(typed)
    assert caught.value.reason == reason


def test_region_codes():
    assert validate_region_code(" 500106 ") == "500106"
    for bad, reason in [
        ("50010", "format"),
        ("050106", "format"),
        ("abcdef", "format"),
        ("", "empty"),
    ]:
        with pytest.raises(InvalidIdentifier) as caught:
            validate_region_code(bad)
        assert caught.value.reason == reason
