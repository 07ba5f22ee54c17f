"""Signed health passes: keys, thumbprints, reading tokens (honest and hostile), QR photos."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import random
import struct
import zlib
from datetime import UTC, datetime

import pytest
import segno
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import ECKey, OKPKey, RSAKey
from PIL import Image

from app.health.passes import (
    MAX_HEADER_BYTES,
    MAX_TOKEN_LENGTH,
    KeyProblem,
    PassFacts,
    QrProblem,
    decode_qr,
    generate_key,
    key_id,
    public_jwk_from_text,
    read_pass,
    sign_pass,
)

ISSUED = datetime(2020, 2, 20, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
EXPIRES = datetime(2020, 2, 23, 0, 0, tzinfo=UTC)
CLAIMS = {
    "iss": "500235",
    "sub": "11010519491231002X",
    "name": "阿卜杜·热合曼",
    "status": "green",
    "iat": int(ISSUED.timestamp()),
    "exp": int(EXPIRES.timestamp()),
    "jti": "500235-20200220-000173",
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def json_b64(value: object) -> str:
    return b64(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


@pytest.fixture(scope="module")
def issuer() -> tuple[str, dict, str]:
    private_pem, public_jwk = generate_key()
    return private_pem, public_jwk, key_id(public_jwk)


@pytest.fixture(scope="module")
def trust(issuer: tuple[str, dict, str]) -> dict[str, dict]:
    _, public_jwk, kid = issuer
    return {kid: public_jwk}


@pytest.fixture(scope="module")
def token(issuer: tuple[str, dict, str]) -> str:
    return sign_pass(issuer[0], CLAIMS)


def forged(header: dict, claims: object, signature: bytes = b"\x00" * 64) -> str:
    return f"{json_b64(header)}.{json_b64(claims)}.{b64(signature)}"


def assert_nothing_read(facts: PassFacts, problem: str) -> None:
    assert facts.read_problem == problem
    assert facts.signature_valid is False
    assert facts.subject is None
    assert facts.status is None


# --- keys ------------------------------------------------------------------------------------


def test_generate_key_gives_a_private_pem_and_a_public_jwk() -> None:
    private_pem, public_jwk = generate_key()
    assert private_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert set(public_jwk) == {"kty", "crv", "x", "y"}
    assert public_jwk["kty"] == "EC"
    assert public_jwk["crv"] == "P-256"
    assert public_jwk_from_text(private_pem) == public_jwk


def test_public_key_from_jwk_json_object_and_single_key_set() -> None:
    key = ECKey.generate_key("P-256")
    public = key.as_dict(private=False)
    expected = {"kty": "EC", "crv": "P-256", "x": public["x"], "y": public["y"]}
    with_extras = {**public, "kid": "whatever", "use": "sig", "alg": "ES256"}
    assert public_jwk_from_text(json.dumps(with_extras)) == expected
    assert public_jwk_from_text(json.dumps({"keys": [public]})) == expected
    assert public_jwk_from_text("\n  " + json.dumps(public) + "\n") == expected


def test_private_jwk_is_reduced_to_its_public_half() -> None:
    key = ECKey.generate_key("P-256")
    private = key.as_dict(private=True)
    assert "d" in private
    result = public_jwk_from_text(json.dumps(private))
    assert "d" not in result
    assert set(result) == {"kty", "crv", "x", "y"}
    assert result["x"] == private["x"]


def test_public_key_from_pem_public_and_private() -> None:
    key = ECKey.generate_key("P-256")
    public = public_jwk_from_text(key.as_pem(private=False).decode())
    from_private = public_jwk_from_text(key.as_pem(private=True).decode())
    assert public == from_private
    assert "d" not in from_private
    assert set(from_private) == {"kty", "crv", "x", "y"}
    assert public["x"] == key.as_dict()["x"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: RSAKey.generate_key(2048).as_pem(private=False).decode(),
        lambda: RSAKey.generate_key(2048).as_pem(private=True).decode(),
        lambda: json.dumps(RSAKey.generate_key(2048).as_dict(private=False)),
        lambda: ECKey.generate_key("P-384").as_pem(private=False).decode(),
        lambda: json.dumps(ECKey.generate_key("P-384").as_dict(private=False)),
        lambda: ECKey.generate_key("P-521").as_pem(private=True).decode(),
        lambda: OKPKey.generate_key("Ed25519").as_pem(private=False).decode(),
        lambda: json.dumps({"kty": "oct", "k": "c2VjcmV0"}),
    ],
    ids=["rsa-pem", "rsa-private-pem", "rsa-jwk", "p384-pem", "p384-jwk", "p521", "ed25519", "oct"],
)
def test_other_key_types_and_curves_are_refused(make) -> None:
    with pytest.raises(KeyProblem) as caught:
        public_jwk_from_text(make())
    assert caught.value.reason == "not_ec_p256"


@pytest.mark.parametrize(
    "curve", [ec.SECP256K1(), ec.BrainpoolP256R1(), ec.SECP224R1()], ids=lambda c: c.name
)
def test_other_ec_curves_in_pem_are_refused(curve: ec.EllipticCurve) -> None:
    public = ec.generate_private_key(curve).public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(KeyProblem) as caught:
        public_jwk_from_text(pem)
    assert caught.value.reason == "not_ec_p256"


def test_mismatched_private_jwk_is_unreadable() -> None:
    one = ECKey.generate_key("P-256").as_dict(private=True)
    other = ECKey.generate_key("P-256").as_dict(private=True)
    with pytest.raises(KeyProblem) as caught:
        public_jwk_from_text(json.dumps({**one, "d": other["d"]}))
    assert caught.value.reason == "unreadable"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hello",
        "{",
        "[1, 2]",
        '{"crv": "P-256", "x": "AA", "y": "AA"}',  # no kty
        '{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}',  # not a point on the curve
        '{"keys": []}',
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    ],
)
def test_unreadable_key_text(text: str) -> None:
    with pytest.raises(KeyProblem) as caught:
        public_jwk_from_text(text)
    assert caught.value.reason == "unreadable"


def test_key_set_with_two_keys_is_refused() -> None:
    keys = [ECKey.generate_key("P-256").as_dict(private=False) for _ in range(2)]
    with pytest.raises(KeyProblem) as caught:
        public_jwk_from_text(json.dumps({"keys": keys}))
    assert caught.value.reason == "unreadable"


def test_encrypted_private_pem_is_unreadable() -> None:
    pem = ECKey.generate_key("P-256").as_pem(private=True, password="secret").decode()
    with pytest.raises(KeyProblem) as caught:
        public_jwk_from_text(pem)
    assert caught.value.reason == "unreadable"


def test_key_id_is_the_rfc7638_thumbprint() -> None:
    _, public_jwk = generate_key()
    canonical = json.dumps(
        {
            "crv": public_jwk["crv"],
            "kty": public_jwk["kty"],
            "x": public_jwk["x"],
            "y": public_jwk["y"],
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    expected = b64(hashlib.sha256(canonical.encode("ascii")).digest())
    assert key_id(public_jwk) == expected
    assert "=" not in expected
    # members outside the required set (d, kid, use…) do not change the thumbprint
    assert key_id({**public_jwk, "kid": "x", "use": "sig"}) == expected


def test_key_id_rfc7638_example_shape() -> None:
    # RFC 7638 §3.1 hashes the exact string below for an RSA key; the same rule for EC keys:
    # members crv, kty, x, y in lexicographic order, no whitespace.
    public_jwk = {
        "kty": "EC",
        "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    }
    text = (
        '{"crv":"P-256","kty":"EC",'
        '"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",'
        '"y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}'
    )
    assert key_id(public_jwk) == b64(hashlib.sha256(text.encode()).digest())


# --- signing and reading ---------------------------------------------------------------------


def test_sign_and_read_round_trip(issuer, trust, token: str) -> None:
    header = json.loads(unb64(token.split(".")[0]))
    assert header == {"alg": "ES256", "kid": issuer[2], "typ": "JWT"}
    facts = read_pass(token, trust)
    assert facts == PassFacts(
        read_problem=None,
        signature_valid=True,
        kid=issuer[2],
        issuer="500235",
        subject="11010519491231002X",
        name="阿卜杜·热合曼",
        status="green",
        issued_at=ISSUED,
        expires_at=EXPIRES,
        jti="500235-20200220-000173",
    )
    assert facts.issued_at.tzinfo is not None


def test_sign_pass_refuses_datetimes_in_claims(issuer) -> None:
    with pytest.raises(TypeError):
        sign_pass(issuer[0], {**CLAIMS, "iat": ISSUED})


def test_sign_pass_refuses_a_public_key(issuer) -> None:
    public_pem = ECKey.import_key(issuer[1]).as_pem(private=False).decode()
    with pytest.raises(KeyProblem):
        sign_pass(public_pem, CLAIMS)


@pytest.mark.parametrize("wrapping", ["{}\n", "{}\r\n", "  {}  ", "\n\t{} \n"])
def test_whitespace_around_the_token_is_ignored(token: str, trust, wrapping: str) -> None:
    facts = read_pass(wrapping.format(token), trust)
    assert facts.read_problem is None
    assert facts.signature_valid is True


def test_unknown_kid_reads_claims_without_trusting_them(token: str) -> None:
    facts = read_pass(token, {})
    assert facts.read_problem is None
    assert facts.signature_valid is False
    assert facts.kid is not None
    assert facts.subject == "11010519491231002X"


def test_one_character_flipped_in_the_payload_breaks_the_signature(token: str, trust) -> None:
    header, payload, signature = token.split(".")
    for index in (0, len(payload) // 2, len(payload) - 2):
        flipped = "A" if payload[index] != "A" else "B"
        tampered = ".".join([header, payload[:index] + flipped + payload[index + 1 :], signature])
        facts = read_pass(tampered, trust)
        assert facts.signature_valid is False


def test_claims_re_encoded_with_another_sub_and_the_old_signature(token: str, trust) -> None:
    header, _, signature = token.split(".")
    facts = read_pass(
        f"{header}.{json_b64({**CLAIMS, 'sub': '110105194912310021'})}.{signature}", trust
    )
    assert facts.read_problem is None
    assert facts.signature_valid is False
    assert facts.subject == "110105194912310021"  # read, but never trusted


def test_tampered_signature(token: str, trust) -> None:
    header, payload, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[10] ^= 0x01
    assert read_pass(f"{header}.{payload}.{b64(bytes(raw))}", trust).signature_valid is False
    # a signature of the wrong length
    assert read_pass(f"{header}.{payload}.{b64(bytes(raw[:40]))}", trust).signature_valid is False


def test_signature_by_another_key_with_the_same_kid(issuer, trust) -> None:
    other_private, _ = generate_key()
    honest = sign_pass(other_private, CLAIMS)
    _, payload, signature = honest.split(".")
    header = json_b64({"alg": "ES256", "kid": issuer[2], "typ": "JWT"})
    facts = read_pass(f"{header}.{payload}.{signature}", trust)
    assert facts.read_problem is None
    assert facts.kid == issuer[2]
    assert facts.signature_valid is False


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "", None, 256, "ES256 ", "es256"])
def test_alg_none_and_lookalikes_are_refused(token: str, trust, alg) -> None:
    kid = read_pass(token, trust).kid
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    for signature in ("", b64(b"\x00" * 64)):
        tampered = f"{json_b64(header)}.{json_b64(CLAIMS)}.{signature}"
        assert_nothing_read(read_pass(tampered, trust), "algorithm" if signature else "not_jws")


def test_alg_none_without_signature_part_is_refused(token: str, trust) -> None:
    kid = read_pass(token, trust).kid
    tampered = f"{json_b64({'alg': 'none', 'kid': kid})}.{json_b64(CLAIMS)}."
    assert read_pass(tampered, trust).signature_valid is False


def test_missing_alg(token: str, trust) -> None:
    kid = read_pass(token, trust).kid
    assert_nothing_read(read_pass(forged({"kid": kid}, CLAIMS), trust), "algorithm")


@pytest.mark.parametrize("secret_form", ["pem", "jwk-json", "der"])
def test_hs256_signed_with_the_public_key_as_secret(issuer, trust, secret_form: str) -> None:
    _, public_jwk, kid = issuer
    public = ECKey.import_key(public_jwk)
    secret = {
        "pem": public.as_pem(private=False),
        "jwk-json": json.dumps(public_jwk).encode(),
        "der": public.as_der(private=False),
    }[secret_form]
    signing_input = f"{json_b64({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'})}.{json_b64(CLAIMS)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    facts = read_pass(f"{signing_input}.{b64(mac)}", trust)
    assert_nothing_read(facts, "algorithm")


def test_rs256_header(issuer, trust) -> None:
    facts = read_pass(forged({"alg": "RS256", "kid": issuer[2]}, CLAIMS, b"\x01" * 256), trust)
    assert_nothing_read(facts, "algorithm")


@pytest.mark.parametrize("kid", [None, "", 42, ["a"]])
def test_missing_or_unusable_kid(trust, kid) -> None:
    header = {"alg": "ES256", "typ": "JWT"} if kid is None else {"alg": "ES256", "kid": kid}
    assert_nothing_read(read_pass(forged(header, CLAIMS), trust), "no_kid")


def test_oversized_header(issuer, trust) -> None:
    header = {"alg": "ES256", "kid": issuer[2], "x-pad": "a" * MAX_HEADER_BYTES}
    assert_nothing_read(read_pass(forged(header, CLAIMS), trust), "header_too_large")


def test_header_size_is_checked_before_json(trust) -> None:
    # not JSON at all, but too large: reported as too large without being parsed
    segment = b64(b"\xff" * (MAX_HEADER_BYTES + 1))
    assert read_pass(f"{segment}.{json_b64(CLAIMS)}.{b64(b'x')}", trust).read_problem == (
        "header_too_large"
    )


@pytest.mark.parametrize("header_extra", [{"crit": ["exp"]}, {"b64": False}, {"typ": 7}])
def test_headers_that_change_processing_are_refused(issuer, trust, header_extra) -> None:
    header = {"alg": "ES256", "kid": issuer[2], **header_extra}
    assert read_pass(forged(header, CLAIMS), trust).read_problem == "not_jws"


def test_unregistered_header_parameters_are_tolerated(issuer, trust) -> None:
    facts = read_pass(forged({"alg": "ES256", "kid": issuer[2], "ver": "2"}, CLAIMS), trust)
    assert facts.read_problem is None
    assert facts.signature_valid is False  # the zero signature does not verify, but no crash


def test_truncated_tokens_never_verify(token: str, trust) -> None:
    for cut in range(1, len(token)):
        facts = read_pass(token[:cut], trust)
        assert facts.signature_valid is False
        if token[:cut].count(".") < 2:
            assert facts.read_problem == "not_jws"


@pytest.mark.parametrize(
    "text",
    [
        "a.b",
        "eyJhbGciOiJFUzI1NiJ9.e30",
        "a.b.c.d",
        "eyJhbGciOiJFUzI1NiJ9.e30.AAAA.AAAA",
        "...",
        "..",
        "not a token",
        "hello.world.!!!",
        "eyJhbGciOiJFUzI1NiJ9.e30.A",  # base64url of impossible length
        "W10.e30.AAAA",  # header is a JSON array
        "bm90IGpzb24.e30.AAAA",  # header is not JSON
        "eyJhbGciOiJFUzI1NiJ9.e30.AA==",  # padding is not base64url
        "eyJhbGciOiJFUzI1NiJ9.e31.AAAA",  # "e31" is not the canonical spelling of "{}"
        "https://example.com/?t=eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
        "eyJhbGciOiJFUzI1NiJ9。e30。AAAA",  # ideographic full stops
        "ｅｙＪｈ.e30.AAAA",  # full-width letters
    ],
)
def test_not_a_jws(trust, text: str) -> None:
    assert_nothing_read(read_pass(text, trust), "not_jws")


@pytest.mark.parametrize("text", ["", " ", "\n", "\u3000"])
def test_empty(trust, text: str) -> None:
    assert_nothing_read(read_pass(text, trust), "empty")


def test_non_str_input_never_raises(trust) -> None:
    assert read_pass(None, trust).read_problem == "empty"  # type: ignore[arg-type]
    assert read_pass(b"abc", trust).read_problem == "not_jws"  # type: ignore[arg-type]


def test_ten_kilobyte_token_is_too_long(token: str, trust) -> None:
    assert_nothing_read(read_pass("A" * 10_240, trust), "too_long")
    padded_claims = {**CLAIMS, "pad": "x" * 8_000}
    header = token.split(".")[0]
    assert read_pass(f"{header}.{json_b64(padded_claims)}.AAAA", trust).read_problem == "too_long"
    assert read_pass("A" * MAX_TOKEN_LENGTH, trust).read_problem == "not_jws"  # at the limit


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2, 3]",
        b'"a string"',
        b"null",
        b"[" * 1200 + b"]" * 1200,  # deeper than the JSON parser recurses
    ],
)
def test_payload_that_is_not_a_json_object(issuer, trust, payload: bytes) -> None:
    header = json_b64({"alg": "ES256", "kid": issuer[2]})
    facts = read_pass(f"{header}.{b64(payload)}.AAAA", trust)
    assert_nothing_read(facts, "claims")
    assert facts.kid == issuer[2]


@pytest.mark.parametrize("claim", sorted(CLAIMS))
def test_each_required_claim_missing(issuer, trust, claim: str) -> None:
    claims = {k: v for k, v in CLAIMS.items() if k != claim}
    assert_nothing_read(read_pass(sign_pass(issuer[0], claims), trust), "claims")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("iat", "1582156800"),
        ("iat", 1582156800.5),
        ("iat", True),
        ("exp", None),
        ("exp", 10**30),
        ("exp", -1),
        ("sub", 110105194912310021),
        ("name", ["阿卜杜", "热合曼"]),
        ("status", True),
        ("iss", 500235),
        ("jti", {"id": 1}),
    ],
)
def test_claims_of_the_wrong_type(issuer, trust, claim: str, value) -> None:
    signed = sign_pass(issuer[0], {**CLAIMS, claim: value})
    assert_nothing_read(read_pass(signed, trust), "claims")


def test_other_statuses_are_kept_as_given(issuer, trust) -> None:
    for status in ("yellow", "red", "GREEN", "绿码"):
        facts = read_pass(sign_pass(issuer[0], {**CLAIMS, "status": status}), trust)
        assert facts.signature_valid is True
        assert facts.status == status


def test_a_broken_trust_list_entry_does_not_raise(token: str, issuer) -> None:
    for entry in ({}, {"kty": "EC"}, {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, "pem"):
        facts = read_pass(token, {issuer[2]: entry})  # type: ignore[dict-item]
        assert facts.read_problem is None
        assert facts.signature_valid is False


def test_a_trust_list_key_on_another_curve_never_verifies(token: str, issuer) -> None:
    p384 = ECKey.generate_key("P-384").as_dict(private=False)
    facts = read_pass(token, {issuer[2]: p384})
    assert facts.read_problem is None
    assert facts.signature_valid is False


def test_fuzzed_tokens_never_raise_and_never_verify(token: str, trust) -> None:
    rng = random.Random(20200220)  # noqa: S311 - reproducible fuzzing, not secrets
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n\u3000é码"
    for _ in range(2000):
        chars = list(token)
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            position = rng.randrange(len(chars))
            if action < 0.4:
                chars[position] = rng.choice(alphabet)
            elif action < 0.7:
                del chars[position]
            else:
                chars.insert(position, rng.choice(alphabet))
        mutated = "".join(chars)
        facts = read_pass(mutated, trust)
        if mutated.strip() != token:
            assert facts.signature_valid is False, mutated
    for _ in range(500):
        garbage = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        assert read_pass(garbage, trust).signature_valid is False


# --- QR codes --------------------------------------------------------------------------------


def qr_png(text: str, scale: int = 5) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m", micro=False).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def test_decode_qr_from_png(token: str, trust) -> None:
    text = decode_qr(qr_png(token))
    assert text == token
    assert read_pass(text, trust).signature_valid is True


def test_decode_qr_from_a_jpeg_photo_like_image(token: str) -> None:
    # the QR pasted onto a larger grey "photo", saved as a lossy JPEG
    code = Image.open(io.BytesIO(qr_png(token, scale=6))).convert("RGB")
    photo = Image.new("RGB", (code.width + 400, code.height + 300), (180, 175, 170))
    photo.paste(code, (150, 120))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=80)
    assert decode_qr(out.getvalue()) == token


def test_decode_qr_from_webp(token: str) -> None:
    out = io.BytesIO()
    Image.open(io.BytesIO(qr_png(token))).convert("RGB").save(out, format="WEBP", lossless=True)
    assert decode_qr(out.getvalue()) == token


def test_decode_qr_with_transparent_light_modules(token: str) -> None:
    # light modules stored as transparent black: grey conversion alone would see black on black
    code = Image.open(io.BytesIO(qr_png(token))).convert("L")
    rgba = Image.new("RGBA", code.size, (0, 0, 0, 0))
    rgba.putalpha(code.point(lambda v: 255 - v))
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    assert decode_qr(out.getvalue()) == token


def test_png_without_a_qr_code() -> None:
    out = io.BytesIO()
    Image.new("RGB", (300, 200), (255, 255, 255)).save(out, format="PNG")
    with pytest.raises(QrProblem) as caught:
        decode_qr(out.getvalue())
    assert caught.value.reason == "no_qr"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        random.Random(7).randbytes(4096),  # noqa: S311
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
        b"GIF89a",
    ],
    ids=["empty", "random", "broken-png", "gif-header"],
)
def test_bytes_that_are_not_an_image(data: bytes) -> None:
    with pytest.raises(QrProblem) as caught:
        decode_qr(data)
    assert caught.value.reason == "not_an_image"


def test_other_image_formats_are_refused() -> None:
    out = io.BytesIO()
    Image.new("L", (50, 50), 255).save(out, format="BMP")
    with pytest.raises(QrProblem) as caught:
        decode_qr(out.getvalue())
    assert caught.value.reason == "not_an_image"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (wrong) body: never decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(7000, 7000), (20000, 20000), (1, 50_000_000)])
def test_decompression_bombs_are_refused_before_decoding(size: tuple[int, int]) -> None:
    with pytest.raises(QrProblem) as caught:
        decode_qr(png_header_only(*size))
    assert caught.value.reason == "not_an_image"


def test_a_token_has_one_spelling(token: str, trust) -> None:
    # base64url letters that differ only in the unused low bits decode to the same bytes:
    # such a respelling of the signature (or header, or payload) is not read at all
    header, payload, signature = token.split(".")
    same_bytes = [
        c
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        if c != signature[-1] and unb64(signature[:-1] + c) == unb64(signature)
    ]
    assert same_bytes
    for c in same_bytes:
        facts = read_pass(f"{header}.{payload}.{signature[:-1]}{c}", trust)
        assert facts.read_problem == "not_jws"
