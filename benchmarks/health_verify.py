"""Benchmark: signing and verifying signed health passes (ES256 compact JWS), as boarding does it.

    .venv/bin/python -m benchmarks.health_verify [--passes 10000] [--repeat 3] [--qr 200]

Five issuer keys (five labour-exporting counties) are generated; N passes are signed for N
workers with valid-looking GB 11643 ID numbers and Chinese names (a few minority names with a
middle dot). Most passes are good; a few percent are yellow, red, expired at departure or carry a
bad signature (signed by a rogue key under a trusted kid). Then, with the five public keys in a
dict as the trust list:

- ``sign_pass`` over all N (the issuer side, for scale: it parses the PEM on every call);
- ``read_pass`` + ``evaluate_pass`` over all N: the boarding check, with the jti re-use lookup a
  dict stands in for;
- ``read_pass`` alone and ``evaluate_pass`` alone (on the facts read), to show where time goes;
- ``decode_qr`` of a phone screenshot (1080x1920 PNG) holding one pass, ``--qr`` times (50).

Each is timed ``--repeat`` times; the table shows the median. The verification cache of public
keys is cleared before every run. Afterwards the verdicts must match how each pass was made
(good ones cleared, the rest refused for the right reason), or the benchmark fails.

Exit status: 0 when every verdict is right, 2 when one is not.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

import segno
from PIL import Image

from app.core.identity import id_number_check_character
from app.health import passes
from app.health.passes import (
    PassFacts,
    decode_qr,
    generate_key,
    key_id,
    read_pass,
    sign_pass,
)
from app.health.rules import IssuerFacts, Policy, Subject, Verdict, evaluate_pass

SHANGHAI = timezone(timedelta(hours=8))
DEPARTURE = datetime(2020, 2, 22, 8, 0, tzinfo=SHANGHAI)
POLICY = Policy()
ISSUER_REGIONS = ("500235", "500236", "511602", "411525", "341221")  # 云阳 奉节 广安 固始 临泉

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁冉向谭"
GIVEN = "伟强军勇磊涛斌超明刚平辉鹏华飞波林峰建国文海俊杰兵成芳娟敏静丽艳霞燕玲梅琴英兰萍红秀"
MINORITY_NAMES = ("阿卜杜·热合曼", "买买提·吐尔逊", "古丽·艾力", "阿依努尔·买买提")

# How the passes are made: kind -> share of N, and the reason the verdict must give.
MIX: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("yellow", 0.03, ("status_not_green",)),
    ("red", 0.005, ("status_not_green",)),
    ("expired", 0.02, ("expired_at_departure",)),
    ("bad_signature", 0.02, ("signature_invalid",)),
)


@dataclass(frozen=True)
class Case:
    kind: str
    private_pem: str
    subject: Subject
    claims: dict


def id_number(rng: random.Random, region: str) -> str:
    birth = date(1966, 1, 1) + timedelta(days=rng.randrange(365 * 38))
    first17 = f"{region}{birth:%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + id_number_check_character(first17)


def chinese_name(rng: random.Random) -> str:
    if rng.random() < 0.01:
        return rng.choice(MINORITY_NAMES)
    return rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2, 2))))


def make_cases(count: int, issuers: list[tuple[str, str]], seed: int) -> list[Case]:
    """``count`` workers with their pass claims; ``issuers`` are (private PEM, region code)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    rogue_pem, _ = generate_key()
    kinds = [kind for kind, share, _ in MIX for _ in range(round(count * share))]
    kinds += ["good"] * (count - len(kinds))
    rng.shuffle(kinds)
    cases = []
    for n, kind in enumerate(kinds):
        private_pem, region = rng.choice(issuers)
        subject = Subject(id_number(rng, region), chinese_name(rng))
        issued = DEPARTURE - timedelta(hours=rng.uniform(2, 70))
        expires = issued + timedelta(days=7)
        if kind == "expired":
            issued = DEPARTURE - timedelta(hours=rng.uniform(30, 70))
            expires = DEPARTURE - timedelta(hours=rng.uniform(1, 24))
        claims = {
            "iss": region,
            "sub": subject.id_number,
            "name": subject.name,
            "status": {"yellow": "yellow", "red": "red"}.get(kind, "green"),
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": f"{region}-{issued:%Y%m%d}-{n:06d}",
        }
        cases.append(
            Case(kind, rogue_pem if kind == "bad_signature" else private_pem, subject, claims)
        )
    return cases


def sign_all(cases: list[Case], kids: dict[str, str]) -> list[str]:
    tokens = []
    for case in cases:
        token = sign_pass(case.private_pem, case.claims)
        if case.kind == "bad_signature":  # a rogue key's signature under a trusted issuer's kid
            _, payload, signature = token.split(".")
            honest_header = sign_pass_header(kids[case.claims["iss"]])
            token = f"{honest_header}.{payload}.{signature}"
        tokens.append(token)
    return tokens


def sign_pass_header(kid: str) -> str:
    header = json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode()


def verify_all(
    tokens: list[str],
    subjects: list[Subject],
    keys: dict[str, dict],
    issuers: dict[str, IssuerFacts],
) -> list[Verdict]:
    """The boarding check for every pass: read, look up the issuer and the jti, judge."""
    jti_owner: dict[str, str] = {}
    verdicts = []
    for token, subject in zip(tokens, subjects, strict=True):
        facts = read_pass(token, keys)
        issuer = issuers.get(facts.kid) if facts.kid is not None else None
        used_by_other = False
        if facts.signature_valid and facts.jti is not None:
            owner = jti_owner.setdefault(facts.jti, subject.id_number)
            used_by_other = owner != subject.id_number
        verdicts.append(evaluate_pass(facts, issuer, subject, DEPARTURE, POLICY, used_by_other))
    return verdicts


def read_all(tokens: list[str], keys: dict[str, dict]) -> list[PassFacts]:
    return [read_pass(token, keys) for token in tokens]


def evaluate_all(
    facts_list: list[PassFacts], subjects: list[Subject], issuers: dict[str, IssuerFacts]
) -> list[Verdict]:
    return [
        evaluate_pass(
            facts,
            issuers.get(facts.kid) if facts.kid is not None else None,
            subject,
            DEPARTURE,
            POLICY,
            False,
        )
        for facts, subject in zip(facts_list, subjects, strict=True)
    ]


def screenshot_with_qr(token: str) -> bytes:
    """A 1080x1920 phone screenshot (PNG) with the pass's QR code in the middle."""
    code = io.BytesIO()
    segno.make(token, error="m").save(code, kind="png", scale=8, border=4)
    qr = Image.open(io.BytesIO(code.getvalue())).convert("RGB")
    screen = Image.new("RGB", (1080, 1920), (246, 246, 246))
    screen.paste(Image.new("RGB", (1080, 220), (7, 193, 96)), (0, 0))  # a green title bar
    screen.paste(qr, ((1080 - qr.width) // 2, 500))
    out = io.BytesIO()
    screen.save(out, format="PNG")
    return out.getvalue()


def timed(function: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median seconds over ``repeat`` runs, and the last run's result."""
    seconds = []
    result: object = None
    for _ in range(repeat):
        passes._verification_key.cache_clear()
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def check_verdicts(cases: list[Case], verdicts: list[Verdict]) -> list[str]:
    expected = {kind: reasons for kind, _, reasons in MIX} | {"good": ()}
    failures = []
    for n, (case, verdict) in enumerate(zip(cases, verdicts, strict=True)):
        if verdict.reasons != expected[case.kind]:
            failures.append(f"pass {n} ({case.kind}): {verdict.reasons}")
    return failures


def print_table(rows: list[tuple[str, int, float]]) -> None:
    header = ("step", "items", "total s", "items/s", "µs/item")
    lines = [
        (
            name,
            f"{items:,}",
            f"{seconds:.3f}",
            f"{items / seconds:,.0f}",
            f"{seconds / items * 1e6:,.1f}",
        )
        for name, items, seconds in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]
    for index, cells in enumerate([header, *lines]):
        print(
            " | ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
        )
        if index == 0:
            print("-+-".join("-" * width for width in widths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=10_000, help="passes to sign and verify")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the median is shown")
    parser.add_argument("--qr", type=int, default=50, help="QR screenshots to decode (0: skip)")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args(argv)
    count = args.passes

    print(f"health pass benchmark: {count:,} passes, 5 issuer keys, median of {args.repeat} runs")
    keys: dict[str, dict] = {}
    issuers: dict[str, IssuerFacts] = {}
    kids_by_region: dict[str, str] = {}
    signers: list[tuple[str, str]] = []
    for region in ISSUER_REGIONS:
        private_pem, public_jwk = generate_key()
        kid = key_id(public_jwk)
        keys[kid] = public_jwk
        issuers[kid] = IssuerFacts(kid, region, datetime(2020, 1, 1, tzinfo=UTC), None, False)
        kids_by_region[region] = kid
        signers.append((private_pem, region))
    cases = make_cases(count, signers, args.seed)
    subjects = [case.subject for case in cases]
    print(
        "mix: " + ", ".join(f"{k} {v:,}" for k, v in sorted(Counter(c.kind for c in cases).items()))
    )

    sign_seconds, tokens = timed(lambda: sign_all(cases, kids_by_region), args.repeat)
    assert isinstance(tokens, list)
    verify_seconds, verdicts = timed(
        lambda: verify_all(tokens, subjects, keys, issuers), args.repeat
    )
    assert isinstance(verdicts, list)
    read_seconds, facts_list = timed(lambda: read_all(tokens, keys), args.repeat)
    assert isinstance(facts_list, list)
    evaluate_seconds, _ = timed(lambda: evaluate_all(facts_list, subjects, issuers), args.repeat)

    rows = [
        ("sign_pass (issuer side)", count, sign_seconds),
        ("read_pass + evaluate_pass", count, verify_seconds),
        ("  read_pass alone", count, read_seconds),
        ("  evaluate_pass alone", count, evaluate_seconds),
    ]
    if args.qr > 0:
        screenshot = screenshot_with_qr(tokens[0])
        qr_seconds, text = timed(
            lambda: [decode_qr(screenshot) for _ in range(args.qr)], args.repeat
        )
        assert isinstance(text, list)
        if text[0] != tokens[0]:
            print("FAILED: the QR code did not decode to the pass", file=sys.stderr)
            return 2
        rows.append(
            (f"decode_qr 1080x1920 PNG ({len(screenshot) // 1024} KB)", args.qr, qr_seconds)
        )

    print()
    print_table(rows)
    cleared = sum(verdict.cleared for verdict in verdicts)
    reasons = Counter(reason for verdict in verdicts for reason in verdict.reasons)
    print(
        f"\ncleared {cleared:,} of {count:,}; refused: "
        + ", ".join(f"{reason} {n:,}" for reason, n in sorted(reasons.items()))
    )
    failures = check_verdicts(cases, verdicts)
    if failures:
        print(f"\nFAILED: {len(failures)} wrong verdicts, e.g. {failures[:3]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
