"""Identifiers: credit codes, region codes, resident ID numbers, mobile numbers: pure checks."""

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.identity import (
    InvalidIdentifier,
    age_on,
    birth_date_of,
    check_age,
    mask_id_number,
    mask_mobile,
    normalize_mobile,
    validate_credit_code,
    validate_id_number,
    validate_region_code,
)
from app.core.regions import covering_codes, region_prefix


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


# Codes built from pairs that are often "00", so provinces, cities and counties meet.
REGION_CODES = st.lists(
    st.sampled_from(["00", "00", "01", "37", "50"]), min_size=3, max_size=3
).map("".join)


@given(coordinator=REGION_CODES, place=REGION_CODES)
def test_the_codes_covering_a_place_are_those_whose_prefix_it_starts_with(coordinator, place):
    """covering_codes lets the database find a place's coordinators; it must agree with the
    prefix the coordinator's own pages filter by."""
    assert (coordinator in covering_codes(place)) == place.startswith(region_prefix(coordinator))


def test_a_county_is_covered_by_its_province_its_city_and_itself():
    assert covering_codes("370102") == {"370000", "370100", "370102"}
    assert covering_codes("370100") == {"370000", "370100"}


# --- Resident ID numbers (GB 11643-1999) ---------------------------------------------------------

TODAY = date(2020, 2, 15)  # fixed: never date.today() in these tests


def with_check(first17: str) -> str:
    """An independent ISO 7064 MOD 11-2 implementation, to build valid numbers for the tests."""
    weights = [2 ** (17 - i) % 11 for i in range(17)]  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
    total = sum(int(d) * w for d, w in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def wrong_check(first17: str) -> str:
    right = with_check(first17)[-1]
    return first17 + ("1" if right != "1" else "2")


def test_the_test_helper_agrees_with_the_standard():
    weights = [2 ** (17 - i) % 11 for i in range(17)]
    assert weights == [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    assert with_check("11010519491231002") == "11010519491231002X"


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("11010519491231002X", "11010519491231002X"),  # the well-known sample, ends in X
        ("11010519491231002x", "11010519491231002X"),  # lower-case x
        ("37010219900101108X", "37010219900101108X"),
        ("370102199001011231", "370102199001011231"),  # ends in a digit
        ("370102199001011020", "370102199001011020"),  # check digit 0
        ("３７０１０２１９９００１０１１２３１", "370102199001011231"),  # full-width digits
        ("３７０１０２１９９００１０１１０８ｘ", "37010219900101108X"),  # full-width lower-case x
        (" 370102 19900101 1231 ", "370102199001011231"),  # stray spaces
        ("370102\u300019900101\t1231\n", "370102199001011231"),  # ideographic space, tab
        (with_check("37010220000229123"), with_check("37010220000229123")),  # 2000 is a leap year
        (with_check("37010220200215123"), with_check("37010220200215123")),  # born today
        (with_check("37010219000101123"), with_check("37010219000101123")),  # 1900 is allowed
    ],
)
def test_valid_id_numbers_are_normalised(typed, canonical):
    assert validate_id_number(typed, TODAY) == canonical


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        (None, "empty"),
        ("", "empty"),
        ("  \u3000 ", "empty"),
        (float("nan"), "empty"),  # an empty cell as pandas reads it
        # A numeric spreadsheet cell has kept only 15 significant digits: refuse, never repair.
        (3.70102199001011e17, "excel_number"),
        (370102199001011231, "excel_number"),
        (370102199001011000, "excel_number"),
        (Decimal("370102199001011231"), "excel_number"),
        ("3.70102E+17", "excel_number"),
        ("3.70102199001011E+17", "excel_number"),
        ("3.70102199001011e+17", "excel_number"),
        ("3,70102E+17", "excel_number"),  # decimal comma
        ("3.70102E17", "excel_number"),
        ("３．７０１０２Ｅ＋１７", "excel_number"),  # full-width
        ("370102199001011231.0", "excel_number"),
        ("370102199001011000.0", "excel_number"),
        (" 370102199001011231.0 ", "excel_number"),
        ("370,102,199,001,011,000", "excel_number"),  # thousands separators
        ("370102900101123", "old_15_digit"),
        ("３７０１０２９００１０１１２３", "old_15_digit"),
        ("37010219900101123", "length"),  # 17 characters
        ("3701021990010112311", "length"),  # 19 characters
        ("370102-19900101-1231", "length"),
        ("37010219900101123Y", "characters"),
        ("X70102199001011231", "characters"),  # X only as the last character
        ("3701021990O101123I", "characters"),  # letter O for zero
        (with_check("37010219990229123"), "birth_date"),  # 1999 is not a leap year
        (with_check("37010219001329123"), "birth_date"),  # month 13
        (with_check("37010219900001123"), "birth_date"),  # month 0
        (with_check("37010219900431123"), "birth_date"),  # 31 April
        (with_check("37010219900100123"), "birth_date"),  # day 0
        (with_check("37010218991231123"), "birth_date"),  # before 1900
        (with_check("37010220200216123"), "future_birth_date"),  # tomorrow
        (with_check("37010221000101123"), "future_birth_date"),
        ("110105194912310021", "check"),
        (wrong_check("37010219900101123"), "check"),
        ("370102199001011230", "check"),
        ("370102199001011213", "check"),  # two digits swapped
        ("110105194912310020", "check"),  # X replaced by 0
    ],
)
def test_invalid_id_numbers_name_their_reason(typed, reason):
    with pytest.raises(InvalidIdentifier) as caught:
        validate_id_number(typed, TODAY)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("id_number", "born"),
    [
        ("11010519491231002X", date(1949, 12, 31)),
        ("370102199001011231", date(1990, 1, 1)),
        (with_check("37010220000229123"), date(2000, 2, 29)),
    ],
)
def test_birth_date_of(id_number, born):
    assert birth_date_of(id_number) == born


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(2004, 2, 20), date(2020, 2, 20), 16),  # the birthday itself
        (date(2004, 2, 21), date(2020, 2, 20), 15),  # one day short
        (date(1990, 12, 31), date(2020, 1, 1), 29),
        (date(1990, 1, 1), date(1990, 1, 1), 0),
        # Born on 29 February: the birthday counts as 1 March in common years.
        (date(2000, 2, 29), date(2017, 2, 28), 16),
        (date(2000, 2, 29), date(2017, 3, 1), 17),
        (date(2000, 2, 29), date(2016, 2, 28), 15),
        (date(2000, 2, 29), date(2016, 2, 29), 16),
    ],
)
def test_age_in_completed_years(born, day, age):
    assert age_on(born, day) == age


TRAVEL = date(2020, 2, 20)


@pytest.mark.parametrize(
    "first17",
    [
        "37010220040220123",  # exactly 16 on the travel date
        "37010219500220123",  # exactly 70
        "37010219490221123",  # 70, one day short of 71
        "37010219900101123",
    ],
)
def test_age_bounds_are_inclusive(first17):
    assert check_age(with_check(first17), TRAVEL, 16, 70) is None


@pytest.mark.parametrize(
    ("first17", "reason"),
    [
        ("37010220040221123", "too_young"),  # 16 tomorrow
        ("37010220100101123", "too_young"),
        ("37010219490220123", "too_old"),  # 71 today
        ("37010219400101123", "too_old"),
    ],
)
def test_age_outside_bounds(first17, reason):
    with pytest.raises(InvalidIdentifier) as caught:
        check_age(with_check(first17), TRAVEL, 16, 70)
    assert caught.value.reason == reason


# --- Mobile numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "+8613800138000",
        "+86 138 0013 8000",
        "0086 138-0013-8000",
        "008613800138000",
        "8613800138000",  # 86 without +, 13 digits
        "138-0013-8000",
        "138.0013.8000",
        "(138) 0013 8000",
        " 138 0013 8000\t",
        "１３８００１３８０００",  # full-width digits
        "＋８６　１３８－００１３－８０００",  # full-width plus, space and hyphen
        "138—0013—8000",  # em dashes
        13800138000,  # numeric cell: 11 digits survive
        13800138000.0,  # numeric cell read as float
        Decimal("13800138000"),
        "13800138000.0",  # the float cell as text
    ],
)
def test_mobile_numbers_become_e164(typed):
    assert normalize_mobile(typed) == "+8613800138000"


@pytest.mark.parametrize(
    "typed",
    ["15912345678", "19912345678", "+86 16612345678", 17712345678],
)
def test_other_mobile_prefixes(typed):
    assert normalize_mobile(typed) == "+86" + str(typed).removeprefix("+86 ")


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        (None, "empty"),
        ("", "empty"),
        ("  - ", "empty"),
        (float("nan"), "empty"),
        ("0531-88886666", "landline"),
        ("(0531) 8888 6666", "landline"),
        ("+86 0531 8888 6666", "landline"),
        ("010-66668888", "landline"),
        ("88886666", "landline"),  # local number without area code
        ("8888666", "landline"),
        ("1380013800", "length"),  # 10 digits
        ("138001380000", "length"),  # 12 digits
        ("+86138001380001", "length"),
        ("86138001380000", "length"),  # 14 digits: 86 is not stripped
        (1380013800, "length"),
        ("12345678901", "pattern"),
        ("11800138000", "pattern"),
        ("23800138000", "pattern"),
        ("+85291234567", "pattern"),  # another country code
        ("138OO138OOO", "characters"),  # letter O for zero
        ("138 0013 8000 ext", "characters"),
        ("138/0013/8000", "characters"),
        ("138+00138000", "characters"),
        ("tel:13800138000", "characters"),
        (13800138000.5, "characters"),
        (-13800138000, "characters"),
        (True, "characters"),
    ],
)
def test_invalid_mobile_numbers_name_their_reason(typed, reason):
    with pytest.raises(InvalidIdentifier) as caught:
        normalize_mobile(typed)
    assert caught.value.reason == reason


# --- Masks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("37010219900101123X", "3701**********123X"),
        ("11010519491231002X", "1101**********002X"),
        ("370102900101123", "370*********123"),  # a refused 15-digit number
        ("12345678", "12****78"),
        ("1234567", "1*****7"),
        ("123", "1*3"),
        ("12", "**"),
        ("1", "*"),
        ("", ""),
        (None, ""),
    ],
)
def test_mask_id_number(value, masked):
    assert mask_id_number(value) == masked


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("+8613800138000", "138****8000"),
        ("13800138000", "138****8000"),
        ("0531-88886666", "053*******666"),  # invalid rows are masked too
        ("88886666", "88****66"),
        ("1380013", "1*****3"),
        ("138", "1*8"),
        ("13", "**"),
        ("", ""),
    ],
)
def test_mask_mobile(value, masked):
    assert mask_mobile(value) == masked


@pytest.mark.parametrize(
    "value",
    ["abc", "abcdefg", "abcdefgh", "370102199001011231", "3.70102199001011E+17", "+8613800138000"],
)
def test_masks_never_return_the_whole_value(value):
    assert mask_id_number(value) != value
    assert mask_mobile(value) != value
    assert "*" in mask_id_number(value)
    assert "*" in mask_mobile(value)
