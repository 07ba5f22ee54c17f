"""The health verdict: may this worker board this departure? (pure: no Flask, no database, no clock)

A worker travels only with a certificate that is green, issued by a trusted issuer, bound to the
worker's ID number, valid at the departure time (not just today) and fresh enough (72 hours before
departure unless the trip's policy says otherwise); at boarding the temperature must be below
37.3 °C. Each check gives a reason code from ``REASON_CODES``; the caller turns the codes into
sentences (Chinese and English). An empty ``Verdict.reasons`` means cleared.

Every time comes in as an argument and must be timezone-aware: a naive datetime is a programming
error and raises ``ValueError``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from app.health.passes import PassFacts

REASON_CODES: tuple[str, ...] = (
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
_ORDER = {code: index for index, code in enumerate(REASON_CODES)}

GREEN = "green"


@dataclass(frozen=True)
class IssuerFacts:
    """A trusted issuer key as the trust list holds it."""

    kid: str
    region_code: str
    valid_from: datetime  # aware
    valid_until: datetime | None  # aware; None = open-ended
    revoked: bool


@dataclass(frozen=True)
class PaperFacts:
    """A printed certificate recorded by a coordinator."""

    status: str  # green / yellow / red
    issued_at: datetime  # aware (the caller turns the issue date into a time)
    valid_until: datetime  # aware


@dataclass(frozen=True)
class Subject:
    """The worker the certificate must belong to."""

    id_number: str  # canonical, 18 characters
    name: str


@dataclass(frozen=True)
class Policy:
    freshness: timedelta = timedelta(hours=72)
    fever_celsius: Decimal = Decimal("37.3")


@dataclass(frozen=True)
class Verdict:
    reasons: tuple[str, ...]  # empty == cleared; in REASON_CODES order

    @property
    def cleared(self) -> bool:
        return not self.reasons


def _verdict(reasons: set[str] | list[str] | tuple[str, ...]) -> Verdict:
    return Verdict(tuple(sorted(set(reasons), key=_ORDER.__getitem__)))


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value


# --- names -----------------------------------------------------------------------------------

# Dots people (and input methods) put between the parts of a transliterated name such as
# 阿卜杜·热合曼: all read as the interpunct U+00B7 that ID cards print.
_MIDDLE_DOTS = "\u00b7\u0387\u2022\u2027\u2219\u22c5\u30fb\uff65"
# Invisible characters that ride along when a name is copied from a chat message or a web page.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_NAME_TABLE = str.maketrans({**dict.fromkeys(_MIDDLE_DOTS, "\u00b7"), **dict.fromkeys(_INVISIBLE)})


def name_key(name: str) -> str:
    """A name in the one spelling ``same_name`` compares."""
    folded = unicodedata.normalize("NFC", name)
    joined = "".join(folded.split()).translate(_NAME_TABLE)  # str.split: every Unicode space
    return unicodedata.normalize("NFC", joined)  # a mark that followed a space now composes


def same_name(a: str, b: str) -> bool:
    """Whether two spellings name the same person: NFC, all whitespace (incl. U+3000) and
    zero-width characters removed, the middle-dot variants (· • ・ ‧ …) taken as one."""
    return name_key(a) == name_key(b)


# --- shared time checks ----------------------------------------------------------------------


def _time_reasons(
    issued_at: datetime, valid_until: datetime, departure: datetime, policy: Policy
) -> list[str]:
    reasons = []
    if issued_at > departure:
        reasons.append("not_yet_valid")
    if valid_until <= departure:
        reasons.append("expired_at_departure")
    if departure - issued_at > policy.freshness:
        reasons.append("too_old_at_departure")
    return reasons


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PassClaims:
    """A readable pass as the verdict needs it, with its holder already compared: from a token
    just read (``evaluate_pass``) or from what was stored when the pass was added, so that a
    recheck need not decrypt the token or verify its signature again."""

    kid: str | None
    signature_valid: bool
    issuer_code: str | None  # the ``iss`` claim
    status: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    id_number_matches: bool
    name_matches: bool


def evaluate_pass(
    facts: PassFacts | None,
    issuer: IssuerFacts | None,
    subject: Subject,
    departure: datetime,
    policy: Policy,
    jti_used_by_other: bool,
) -> Verdict:
    """The verdict on a signed pass for ``subject`` travelling at ``departure``.

    ``issuer`` is the trust-list entry for ``facts.kid`` (None when the kid is not on the list);
    ``jti_used_by_other`` says whether this pass's ``jti`` already cleared another worker.
    An unreadable token, an unknown kid or a bad signature gives that one reason alone: nothing
    in an unverified token is worth judging. Otherwise every failing check is reported.
    """
    if facts is None or facts.read_problem is not None:
        _aware(departure, "departure")
        return _verdict(["no_certificate" if facts is None else "unreadable"])
    claims = PassClaims(
        kid=facts.kid,
        signature_valid=facts.signature_valid,
        issuer_code=facts.issuer,
        status=facts.status,
        issued_at=facts.issued_at,
        expires_at=facts.expires_at,
        id_number_matches=(facts.subject or "").strip().upper() == subject.id_number,
        name_matches=same_name(facts.name or "", subject.name),
    )
    return judge_pass(claims, issuer, departure, policy, jti_used_by_other)


def judge_pass(
    claims: PassClaims | None,
    issuer: IssuerFacts | None,
    departure: datetime,
    policy: Policy,
    jti_used_by_other: bool,
) -> Verdict:
    """``evaluate_pass`` on claims whose holder is already compared (None: no certificate)."""
    _aware(departure, "departure")
    if claims is None:
        return _verdict(["no_certificate"])
    if issuer is None:
        return _verdict(["unknown_kid"])
    if issuer.kid != claims.kid:
        raise ValueError("issuer is not the trust-list entry for the pass's kid")
    if not claims.signature_valid:
        return _verdict(["signature_invalid"])

    # read_pass fills every claim when read_problem is None; a hand-built PassFacts that skips
    # one is a programming error, not a traveller's problem.
    if claims.issued_at is None or claims.expires_at is None:
        raise ValueError("a readable pass has issued_at and expires_at")
    issued_at = _aware(claims.issued_at, "issued_at")
    expires_at = _aware(claims.expires_at, "expires_at")
    valid_from = _aware(issuer.valid_from, "issuer.valid_from")
    valid_until = (
        None if issuer.valid_until is None else _aware(issuer.valid_until, "issuer.valid_until")
    )

    reasons = []
    if issuer.revoked:
        reasons.append("issuer_revoked")
    if issued_at < valid_from or (valid_until is not None and issued_at > valid_until):
        reasons.append("issuer_not_valid_at_issue")
    if claims.issuer_code != issuer.region_code:
        reasons.append("issuer_mismatch")
    if not claims.id_number_matches:
        reasons.append("wrong_id_number")
    if not claims.name_matches:
        reasons.append("wrong_name")
    if claims.status != GREEN:
        reasons.append("status_not_green")
    reasons += _time_reasons(issued_at, expires_at, departure, policy)
    if jti_used_by_other:
        reasons.append("jti_reused")
    return _verdict(reasons)


def evaluate_paper(paper: PaperFacts, departure: datetime, policy: Policy) -> Verdict:
    """The verdict on a printed certificate a coordinator recorded (same time rules as a pass)."""
    _aware(departure, "departure")
    issued_at = _aware(paper.issued_at, "paper.issued_at")
    valid_until = _aware(paper.valid_until, "paper.valid_until")
    reasons = []
    if paper.status != GREEN:
        reasons.append("status_not_green")
    reasons += _time_reasons(issued_at, valid_until, departure, policy)
    return _verdict(reasons)


def evaluate_temperature(celsius: Decimal, policy: Policy) -> Verdict:
    """Fever when the reading is at or above the policy's threshold (37.3 °C by default).

    Takes a Decimal (or an int): a float such as 37.3 is really 37.2999… and would slip under the
    threshold, so floats are refused, as is NaN.
    """
    if isinstance(celsius, bool) or not isinstance(celsius, Decimal | int):
        raise TypeError("temperature must be a Decimal (floats are inexact)")
    if isinstance(celsius, Decimal) and not celsius.is_finite():
        raise ValueError("temperature must be a finite number")
    return _verdict(["fever"] if celsius >= policy.fever_celsius else [])
