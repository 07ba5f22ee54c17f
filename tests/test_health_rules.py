"""The health verdict: every reason alone, boundaries, key rotation, names, temperature, paper."""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.health.passes import PassFacts
from app.health.rules import (
    REASON_CODES,
    IssuerFacts,
    PaperFacts,
    Policy,
    Subject,
    Verdict,
    evaluate_paper,
    evaluate_pass,
    evaluate_temperature,
    same_name,
)

SHANGHAI = timezone(timedelta(hours=8))
DEPARTURE = datetime(2020, 2, 22, 8, 0, tzinfo=SHANGHAI)  # K4016 leaves Chongqing West
ISSUED = DEPARTURE - timedelta(hours=30)
POLICY = Policy()
SUBJECT = Subject(id_number="11010519491231002X", name="阿卜杜·热合曼")
KID = "mVfYJTDkB6BPsAXO4rKj3xoUktyPeradQsWeDb90hdY"

ISSUER = IssuerFacts(
    kid=KID,
    region_code="500235",
    valid_from=datetime(2020, 1, 1, tzinfo=UTC),
    valid_until=None,
    revoked=False,
)

GOOD = PassFacts(
    read_problem=None,
    signature_valid=True,
    kid=KID,
    issuer="500235",
    subject="11010519491231002X",
    name="阿卜杜·热合曼",
    status="green",
    issued_at=ISSUED.astimezone(UTC),
    expires_at=(ISSUED + timedelta(days=7)).astimezone(UTC),
    jti="500235-20200221-000173",
)


def judge(
    facts: PassFacts | None = GOOD,
    issuer: IssuerFacts | None = ISSUER,
    *,
    departure: datetime = DEPARTURE,
    policy: Policy = POLICY,
    jti_used_by_other: bool = False,
) -> tuple[str, ...]:
    return evaluate_pass(facts, issuer, SUBJECT, departure, policy, jti_used_by_other).reasons


def test_reason_codes_are_the_documented_ones_in_order() -> None:
    assert REASON_CODES == (
        "no_certificate",
        "unreadable",
        "unknown_kid",
        "signature_invalid",
        "issuer_revoked",
        "issuer_not_valid_at_issue",
        "issuer_mismatch",
        "wrong_id_number",
        "wrong_name",
        "status_not_green",
        "not_yet_valid",
        "expired_at_departure",
        "too_old_at_departure",
        "jti_reused",
        "fever",
    )


def test_a_good_pass_clears() -> None:
    verdict = evaluate_pass(GOOD, ISSUER, SUBJECT, DEPARTURE, POLICY, False)
    assert verdict == Verdict(())
    assert verdict.cleared is True


def test_verdict_cleared_only_without_reasons() -> None:
    assert Verdict(()).cleared
    assert not Verdict(("fever",)).cleared


# --- each reason alone -----------------------------------------------------------------------


def test_no_certificate() -> None:
    assert judge(None) == ("no_certificate",)
    assert judge(None, None) == ("no_certificate",)


@pytest.mark.parametrize(
    "problem",
    ["empty", "too_long", "not_jws", "header_too_large", "algorithm", "no_kid", "claims"],
)
def test_unreadable(problem: str) -> None:
    facts = PassFacts(problem, False, None, None, None, None, None, None, None, None)
    assert judge(facts) == ("unreadable",)
    assert judge(facts, None) == ("unreadable",)


def test_unknown_kid() -> None:
    assert judge(replace(GOOD, signature_valid=False), None) == ("unknown_kid",)


def test_signature_invalid() -> None:
    assert judge(replace(GOOD, signature_valid=False)) == ("signature_invalid",)


def test_issuer_revoked() -> None:
    assert judge(GOOD, replace(ISSUER, revoked=True)) == ("issuer_revoked",)


def test_issuer_not_valid_at_issue_before_valid_from() -> None:
    issuer = replace(ISSUER, valid_from=GOOD.issued_at + timedelta(seconds=1))
    assert judge(GOOD, issuer) == ("issuer_not_valid_at_issue",)


def test_issuer_not_valid_at_issue_after_valid_until() -> None:
    issuer = replace(ISSUER, valid_until=GOOD.issued_at - timedelta(seconds=1))
    assert judge(GOOD, issuer) == ("issuer_not_valid_at_issue",)


def test_issuer_mismatch() -> None:
    assert judge(replace(GOOD, issuer="510100")) == ("issuer_mismatch",)


def test_wrong_id_number() -> None:
    assert judge(replace(GOOD, subject="110105194912310021")) == ("wrong_id_number",)
    assert judge(replace(GOOD, subject="")) == ("wrong_id_number",)


def test_id_number_is_normalised_before_comparing() -> None:
    assert judge(replace(GOOD, subject=" 11010519491231002x\n")) == ()


def test_wrong_name() -> None:
    assert judge(replace(GOOD, name="阿卜杜·热合")) == ("wrong_name",)
    assert judge(replace(GOOD, name="张三")) == ("wrong_name",)


@pytest.mark.parametrize("status", ["yellow", "red", "Green", "GREEN", "green ", "", "绿码"])
def test_status_not_green(status: str) -> None:
    assert judge(replace(GOOD, status=status)) == ("status_not_green",)


def test_not_yet_valid() -> None:
    issued = DEPARTURE + timedelta(hours=1)
    facts = replace(GOOD, issued_at=issued, expires_at=issued + timedelta(days=7))
    assert judge(facts) == ("not_yet_valid",)


def test_expired_at_departure() -> None:
    assert judge(replace(GOOD, expires_at=DEPARTURE - timedelta(hours=1))) == (
        "expired_at_departure",
    )


def test_expired_at_departure_even_if_valid_today() -> None:
    # valid this morning, not when the coach leaves in the evening
    departure = datetime(2020, 2, 22, 20, 0, tzinfo=SHANGHAI)
    facts = replace(GOOD, expires_at=datetime(2020, 2, 22, 12, 0, tzinfo=SHANGHAI))
    assert judge(facts, departure=departure) == ("expired_at_departure",)


def test_too_old_at_departure() -> None:
    assert judge(replace(GOOD, issued_at=DEPARTURE - timedelta(hours=73))) == (
        "too_old_at_departure",
    )


def test_jti_reused() -> None:
    assert judge(jti_used_by_other=True) == ("jti_reused",)


def test_fever() -> None:
    assert evaluate_temperature(Decimal("37.3"), POLICY).reasons == ("fever",)


# --- an unverified token is judged on nothing else ----------------------------------------------


BAD_EVERYWHERE = replace(
    GOOD,
    issuer="999999",
    subject="110105194912310021",
    name="张三",
    status="red",
    issued_at=DEPARTURE - timedelta(days=30),
    expires_at=DEPARTURE - timedelta(days=20),
)


def test_unknown_kid_is_the_only_reason() -> None:
    facts = replace(BAD_EVERYWHERE, signature_valid=False)
    assert judge(facts, None, jti_used_by_other=True) == ("unknown_kid",)


def test_signature_invalid_is_the_only_reason() -> None:
    facts = replace(BAD_EVERYWHERE, signature_valid=False)
    issuer = replace(ISSUER, revoked=True)
    assert judge(facts, issuer, jti_used_by_other=True) == ("signature_invalid",)


def test_all_reasons_are_collected_at_once_in_a_stable_order() -> None:
    issuer = replace(
        ISSUER,
        revoked=True,
        valid_from=datetime(2020, 2, 1, tzinfo=UTC),
    )
    assert judge(BAD_EVERYWHERE, issuer, jti_used_by_other=True) == (
        "issuer_revoked",
        "issuer_not_valid_at_issue",
        "issuer_mismatch",
        "wrong_id_number",
        "wrong_name",
        "status_not_green",
        "expired_at_departure",
        "too_old_at_departure",
        "jti_reused",
    )


def test_not_yet_valid_and_expired_together() -> None:
    # nonsense dates (exp before iat) are both reported
    facts = replace(
        GOOD,
        issued_at=DEPARTURE + timedelta(hours=2),
        expires_at=DEPARTURE - timedelta(hours=2),
        status="yellow",
    )
    assert judge(facts) == ("status_not_green", "not_yet_valid", "expired_at_departure")


# --- boundaries ------------------------------------------------------------------------------


def test_exactly_72_hours_old_passes() -> None:
    assert judge(replace(GOOD, issued_at=DEPARTURE - timedelta(hours=72))) == ()


def test_72_hours_and_one_second_old_fails() -> None:
    facts = replace(GOOD, issued_at=DEPARTURE - timedelta(hours=72, seconds=1))
    assert judge(facts) == ("too_old_at_departure",)


def test_issued_exactly_at_departure_passes() -> None:
    assert judge(replace(GOOD, issued_at=DEPARTURE)) == ()


def test_expiry_equal_to_departure_fails() -> None:
    assert judge(replace(GOOD, expires_at=DEPARTURE)) == ("expired_at_departure",)
    assert judge(replace(GOOD, expires_at=DEPARTURE + timedelta(seconds=1))) == ()


def test_issued_exactly_at_issuer_valid_from_passes() -> None:
    assert judge(GOOD, replace(ISSUER, valid_from=GOOD.issued_at)) == ()


def test_issued_exactly_at_issuer_valid_until_passes() -> None:
    assert judge(GOOD, replace(ISSUER, valid_until=GOOD.issued_at)) == ()


def test_times_in_different_zones_compare_as_instants() -> None:
    # 72 h measured across the UTC / Shanghai offset
    facts = replace(GOOD, issued_at=(DEPARTURE - timedelta(hours=72)).astimezone(UTC))
    assert judge(facts) == ()


def test_configurable_freshness() -> None:
    facts = replace(GOOD, issued_at=DEPARTURE - timedelta(hours=30))
    assert judge(facts, policy=Policy(freshness=timedelta(hours=24))) == ("too_old_at_departure",)
    assert judge(facts, policy=Policy(freshness=timedelta(hours=48))) == ()


# --- key rotation ----------------------------------------------------------------------------

OLD_KID = "old-key-thumbprint"
NEW_KID = "new-key-thumbprint"
ROTATED_AT = datetime(2020, 2, 21, 0, 0, tzinfo=SHANGHAI)
OLD_ISSUER = IssuerFacts(OLD_KID, "500235", datetime(2019, 6, 1, tzinfo=UTC), ROTATED_AT, False)
NEW_ISSUER = IssuerFacts(NEW_KID, "500235", ROTATED_AT, None, False)


def test_rotation_a_pass_issued_while_the_old_key_was_valid_still_passes() -> None:
    issued = ROTATED_AT - timedelta(hours=2)  # departure is 58 h later
    facts = replace(GOOD, kid=OLD_KID, issued_at=issued, expires_at=issued + timedelta(days=7))
    assert OLD_ISSUER.valid_until is not None
    assert OLD_ISSUER.valid_until < DEPARTURE
    assert judge(facts, OLD_ISSUER) == ()


def test_rotation_a_pass_from_the_old_key_after_its_valid_until_fails() -> None:
    issued = ROTATED_AT + timedelta(hours=2)
    facts = replace(GOOD, kid=OLD_KID, issued_at=issued, expires_at=issued + timedelta(days=7))
    assert judge(facts, OLD_ISSUER) == ("issuer_not_valid_at_issue",)


def test_rotation_the_new_key_passes_and_cannot_backdate() -> None:
    issued = ROTATED_AT + timedelta(hours=2)
    facts = replace(GOOD, kid=NEW_KID, issued_at=issued, expires_at=issued + timedelta(days=7))
    assert judge(facts, NEW_ISSUER) == ()
    backdated = replace(facts, issued_at=ROTATED_AT - timedelta(hours=1))
    assert judge(backdated, NEW_ISSUER) == ("issuer_not_valid_at_issue",)


def test_revoked_issuer_refuses_even_old_passes() -> None:
    issued = ROTATED_AT - timedelta(hours=2)
    facts = replace(GOOD, kid=OLD_KID, issued_at=issued, expires_at=issued + timedelta(days=7))
    assert judge(facts, replace(OLD_ISSUER, revoked=True)) == ("issuer_revoked",)


# --- programming errors ----------------------------------------------------------------------


def test_naive_departure_raises() -> None:
    naive = datetime(2020, 2, 22, 8, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="aware"):
        evaluate_pass(GOOD, ISSUER, SUBJECT, naive, POLICY, False)
    with pytest.raises(ValueError, match="aware"):
        evaluate_pass(None, None, SUBJECT, naive, POLICY, False)
    paper = PaperFacts("green", ISSUED, ISSUED + timedelta(days=7))
    with pytest.raises(ValueError, match="aware"):
        evaluate_paper(paper, naive, POLICY)


def test_naive_issuer_times_raise() -> None:
    naive = datetime(2020, 1, 1)  # noqa: DTZ001
    with pytest.raises(ValueError, match="aware"):
        judge(GOOD, replace(ISSUER, valid_from=naive))


def test_issuer_for_another_kid_raises() -> None:
    with pytest.raises(ValueError, match="kid"):
        judge(GOOD, replace(ISSUER, kid="someone-else"))


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("张三", "张三"),
        ("张 三", "张三"),
        ("张\u3000三", "张三"),
        (" 张三\n", "张三"),
        ("张\t三", "张 三"),
        ("阿卜杜·热合曼", "阿卜杜•热合曼"),
        ("阿卜杜·热合曼", "阿卜杜・热合曼"),
        ("阿卜杜·热合曼", "阿卜杜 · 热合曼"),
        ("阿卜杜·热合曼", "阿卜杜\u200b·热合曼"),
        ("José", unicodedata.normalize("NFD", "José")),
        ("Zoë Lǚ", unicodedata.normalize("NFD", "Zoë Lǚ")),
        ("Zoé", "Zoe \u0301"),  # a space between a letter and its accent
    ],
)
def test_same_name(a: str, b: str) -> None:
    assert same_name(a, b)
    assert same_name(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("张三", "张叁"),
        ("张三", "张三丰"),
        ("阿卜杜·热合曼", "阿卜杜热合曼"),  # the dot is part of the name; only its shape may vary
        ("阿卜杜·热合曼", "阿卜杜.热合曼"),
        ("José", "Jose"),
    ],
)
def test_different_names(a: str, b: str) -> None:
    assert not same_name(a, b)


def test_name_on_the_pass_in_nfd_with_spaces_clears() -> None:
    subject = Subject(id_number=SUBJECT.id_number, name="Zoë")
    facts = replace(GOOD, name=" " + unicodedata.normalize("NFD", "Zo ë") + "\u3000")
    assert evaluate_pass(facts, ISSUER, subject, DEPARTURE, POLICY, False).cleared


# --- temperature -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "reasons"),
    [
        ("36.5", ()),
        ("37.2", ()),
        ("37.29", ()),
        ("37.3", ("fever",)),
        ("37.30", ("fever",)),
        ("38.5", ("fever",)),
    ],
)
def test_temperature(reading: str, reasons: tuple[str, ...]) -> None:
    assert evaluate_temperature(Decimal(reading), POLICY).reasons == reasons


def test_temperature_threshold_is_configurable() -> None:
    policy = Policy(fever_celsius=Decimal("37.5"))
    assert evaluate_temperature(Decimal("37.3"), policy).cleared
    assert evaluate_temperature(Decimal("37.5"), policy).reasons == ("fever",)
    assert evaluate_temperature(38, policy).reasons == ("fever",)


def test_temperature_refuses_floats_and_nan() -> None:
    with pytest.raises(TypeError):
        evaluate_temperature(37.3, POLICY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        evaluate_temperature(Decimal("NaN"), POLICY)


# --- paper certificates ----------------------------------------------------------------------


def paper(
    status: str = "green",
    issued_at: datetime = ISSUED,
    valid_until: datetime = ISSUED + timedelta(days=7),
) -> tuple[str, ...]:
    return evaluate_paper(PaperFacts(status, issued_at, valid_until), DEPARTURE, POLICY).reasons


def test_paper_green_and_fresh_clears() -> None:
    assert paper() == ()


def test_paper_status_not_green() -> None:
    assert paper(status="yellow") == ("status_not_green",)


def test_paper_not_yet_valid() -> None:
    issued = DEPARTURE + timedelta(days=1)
    assert paper(issued_at=issued, valid_until=issued + timedelta(days=7)) == ("not_yet_valid",)


def test_paper_expired_at_departure() -> None:
    assert paper(valid_until=DEPARTURE) == ("expired_at_departure",)
    assert paper(valid_until=DEPARTURE + timedelta(seconds=1)) == ()


def test_paper_too_old_at_departure() -> None:
    assert paper(issued_at=DEPARTURE - timedelta(hours=72)) == ()
    assert paper(issued_at=DEPARTURE - timedelta(hours=72, seconds=1)) == ("too_old_at_departure",)


def test_paper_issue_date_at_midnight_counts_from_midnight() -> None:
    # a clinic certificate dated 2020-02-19 (the caller makes it 00:00 Shanghai) is 80 h old
    issued = datetime(2020, 2, 19, tzinfo=SHANGHAI)
    assert paper(issued_at=issued) == ("too_old_at_departure",)


def test_paper_all_reasons() -> None:
    assert paper(
        status="red",
        issued_at=DEPARTURE - timedelta(days=10),
        valid_until=DEPARTURE - timedelta(days=3),
    ) == ("status_not_green", "expired_at_departure", "too_old_at_departure")
