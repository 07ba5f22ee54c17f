"""Signed health passes: compact JWS (ES256) tokens, the issuers' keys, and QR photos of them.

Pure: no Flask, no database, no clock. ``read_pass`` only *reads* a token and checks its signature;
whether the worker may travel is decided by ``app.health.rules``.

A pass is a compact JWS whose protected header is ``{"alg": "ES256", "kid": ..., "typ": "JWT"}``
and whose payload is a JSON object with the claims ``iss`` (issuer region code), ``sub`` (the
worker's ID number), ``name``, ``status`` (green/yellow/red), ``iat`` and ``exp`` (NumericDate,
integer seconds) and ``jti``. The ``kid`` is the RFC 7638 thumbprint of the issuer's public key.

All cryptography is joserfc's. Keys are always EC P-256; the trust list stores public keys only.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import zxingcpp
from joserfc import jws
from joserfc.errors import InvalidKeyTypeError, JoseError
from joserfc.jwk import ECKey
from PIL import Image

MAX_TOKEN_LENGTH = 4096
MAX_HEADER_BYTES = 512
# The longest kid and claims a kept pass may carry (the health_certificates columns): a
# longer one is no pass of ours, and must be refused here, not by the database.
MAX_KID_LENGTH = 64
MAX_CLAIM_LENGTHS = {"status": 8, "jti": 128}
MAX_IMAGE_PIXELS = 40_000_000
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")

ALGORITHM = "ES256"
CURVE = "P-256"

# The claims a pass must carry, with the JSON type each must have (bool is not an int here).
REQUIRED_CLAIMS: dict[str, type] = {
    "iss": str,
    "sub": str,
    "name": str,
    "status": str,
    "iat": int,
    "exp": int,
    "jti": str,
}

# Header parameters that would change how the token is processed (RFC 7797 unencoded payload,
# critical extensions): a pass never needs them, so a token carrying them is not read at all.
REFUSED_HEADER_PARAMETERS = ("crit", "b64")

_BASE64URL = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime holds

# One registry for verification: ES256 only, and header parameters outside the IANA registry
# are tolerated (an issuer may add its own); their types are still checked for registered ones.
_REGISTRY = jws.JWSRegistry(algorithms=[ALGORITHM], strict_check_header=False)
_ES256 = _REGISTRY.get_alg(ALGORITHM)


class KeyProblem(ValueError):
    """A key that cannot go on the trust list. ``reason``: "unreadable" or "not_ec_p256"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QrProblem(ValueError):
    """An upload with no readable QR code. ``reason``: "not_an_image" or "no_qr"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- keys ------------------------------------------------------------------------------------


def _public_jwk(key: ECKey) -> dict:
    """The canonical public JWK of a P-256 key: exactly kty, crv, x, y (full-length x and y)."""
    try:
        curve = key.curve_name
    except KeyError as error:  # a curve joserfc has no JWK name for (brainpool, P-224…)
        raise KeyProblem("not_ec_p256") from error
    if curve != CURVE:
        raise KeyProblem("not_ec_p256")
    public = ECKey.import_key(key.public_key).as_dict(private=False)
    return {"kty": "EC", "crv": CURVE, "x": public["x"], "y": public["y"]}


def _jwk_from_json(text: str) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise KeyProblem("unreadable") from error
    if isinstance(value, dict) and "keys" in value:
        keys = value["keys"]
        if not isinstance(keys, list) or len(keys) != 1:
            raise KeyProblem("unreadable")
        value = keys[0]
    if not isinstance(value, dict) or not isinstance(value.get("kty"), str):
        raise KeyProblem("unreadable")
    if value["kty"] != "EC" or value.get("crv") != CURVE:
        raise KeyProblem("not_ec_p256")
    return value


def public_jwk_from_text(text: str) -> dict:
    """The public EC P-256 JWK (kty, crv, x, y) in a JWK JSON or a PEM text.

    Accepts a JWK object, a JWK set with exactly one key, or a PEM public key, private key or
    certificate. A private key given by mistake is reduced to its public half (``d`` is never
    returned). Raises ``KeyProblem("unreadable")`` for anything that is not a key, and
    ``KeyProblem("not_ec_p256")`` for RSA, Ed25519, other curves…
    """
    if not isinstance(text, str) or not text.strip():
        raise KeyProblem("unreadable")
    text = text.strip()
    source: Any = _jwk_from_json(text) if text.startswith("{") else text.encode()
    try:
        key = ECKey.import_key(source)
    except InvalidKeyTypeError as error:  # a readable key, but RSA, OKP, DSA…
        raise KeyProblem("not_ec_p256") from error
    except Exception as error:  # whatever the parser says, the text is no key
        raise KeyProblem("unreadable") from error
    return _public_jwk(key)


def key_id(public_jwk: dict) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url without padding) of a P-256 public key."""
    try:
        key = ECKey.import_key(public_jwk)
    except Exception as error:
        raise KeyProblem("unreadable") from error
    canonical = ECKey.import_key(_public_jwk(key))
    return canonical.thumbprint()


def generate_key() -> tuple[str, dict]:
    """A new issuer key: (private key PEM text, public JWK)."""
    key = ECKey.generate_key(CURVE)
    return key.as_pem(private=True).decode(), _public_jwk(key)


def _private_key(private_pem: str) -> ECKey:
    try:
        key = ECKey.import_key(private_pem.encode())
    except InvalidKeyTypeError as error:
        raise KeyProblem("not_ec_p256") from error
    except Exception as error:
        raise KeyProblem("unreadable") from error
    _public_jwk(key)  # refuses other curves
    if not key.is_private:
        raise KeyProblem("unreadable")
    return key


def sign_pass(private_pem: str, claims: dict) -> str:
    """A compact JWS over ``claims`` (JSON; times already NumericDate ints), signed ES256."""
    key = _private_key(private_pem)
    header = {"alg": ALGORITHM, "kid": key_id(_public_jwk(key)), "typ": "JWT"}
    payload = json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode()
    return jws.serialize_compact(header, payload, key, algorithms=[ALGORITHM])


@lru_cache(maxsize=256)
def _verification_key(crv: str, x: str, y: str) -> ECKey:
    # Keyed on the key material itself, so a changed trust list can never hit a stale entry.
    return ECKey.import_key({"kty": "EC", "crv": crv, "x": x, "y": y})


# --- reading a pass --------------------------------------------------------------------------


@dataclass(frozen=True)
class PassFacts:
    """What a token says, and whether its signature checked out. Nothing here is trusted yet."""

    read_problem: str | None
    signature_valid: bool
    kid: str | None
    issuer: str | None
    subject: str | None
    name: str | None
    status: str | None
    issued_at: datetime | None
    expires_at: datetime | None
    jti: str | None


def _problem(reason: str, kid: str | None = None) -> PassFacts:
    return PassFacts(
        read_problem=reason,
        signature_valid=False,
        kid=kid,
        issuer=None,
        subject=None,
        name=None,
        status=None,
        issued_at=None,
        expires_at=None,
        jti=None,
    )


def _b64decode(segment: str) -> bytes:
    """Strict base64url without padding → bytes; raises ValueError.

    Canonical only (unused low bits of the last character must be zero, as joserfc also demands),
    so one token has one spelling.
    """
    if not _BASE64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != segment:
        raise ValueError("not canonical base64url")
    return data


def _json_object(data: bytes) -> dict | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def _numeric_date(value: int) -> datetime | None:
    if not 0 <= value <= _LATEST_NUMERIC_DATE:
        return None
    return _EPOCH + timedelta(seconds=value)


def _verify(signing_input: bytes, signature: bytes, public_jwk: Any) -> bool:
    """joserfc's ES256 verification of segments ``read_pass`` has already decoded and checked
    (``jws.deserialize_compact`` would decode and check them all again: a third of the time)."""
    try:
        key = _verification_key(public_jwk["crv"], public_jwk["x"], public_jwk["y"])
        _ES256.check_key(key)
        return _ES256.verify(signing_input, signature, key)
    except (JoseError, ValueError, KeyError, TypeError):  # a trust-list entry that is no key
        return False


def read_pass(token: str, public_keys: Mapping[str, dict]) -> PassFacts:
    """Read a pass token and check its signature with the trusted key of its ``kid``.

    Never raises for bad input: a token that cannot be read gives ``read_problem`` (see
    ``PassFacts``). ``public_keys`` maps kid → public JWK (as from ``public_jwk_from_text``).
    The algorithm must be exactly ES256 and is checked before any key is looked up. A ``kid``
    not in ``public_keys`` gives ``signature_valid=False`` with the claims filled in (the rules
    report "unknown kid"); so does a bad signature (the rules report it). Claims are never to be
    trusted unless ``signature_valid``.
    """
    if not isinstance(token, str):
        return _problem("empty" if token is None else "not_jws")
    token = token.strip()
    if not token:
        return _problem("empty")
    if len(token) > MAX_TOKEN_LENGTH:
        return _problem("too_long")

    parts = token.split(".")
    if len(parts) != 3:
        return _problem("not_jws")
    header_segment, payload_segment, signature_segment = parts
    try:
        header_bytes = _b64decode(header_segment)
        payload_bytes = _b64decode(payload_segment)
        signature = _b64decode(signature_segment)
    except (ValueError, binascii.Error):
        return _problem("not_jws")

    if len(header_bytes) > MAX_HEADER_BYTES:
        return _problem("header_too_large")
    header = _json_object(header_bytes)
    if header is None:
        return _problem("not_jws")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg != ALGORITHM:
        return _problem("algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        return _problem("no_kid")
    if len(kid) > MAX_KID_LENGTH:
        return _problem("not_jws")
    if any(name in header for name in REFUSED_HEADER_PARAMETERS):
        return _problem("not_jws", kid)
    try:
        _REGISTRY.check_header(header)  # types of registered header parameters (typ, cty…)
    except JoseError:
        return _problem("not_jws", kid)

    claims = _json_object(payload_bytes)
    if claims is None:
        return _problem("claims", kid)
    for claim, kind in REQUIRED_CLAIMS.items():
        value = claims.get(claim)
        if not isinstance(value, kind) or isinstance(value, bool):
            return _problem("claims", kid)
    if any(len(claims[claim]) > limit for claim, limit in MAX_CLAIM_LENGTHS.items()):
        return _problem("claims", kid)
    issued_at = _numeric_date(claims["iat"])
    expires_at = _numeric_date(claims["exp"])
    if issued_at is None or expires_at is None:
        return _problem("claims", kid)

    public_jwk = public_keys.get(kid)
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")  # base64url: ASCII
    signature_valid = public_jwk is not None and _verify(signing_input, signature, public_jwk)
    return PassFacts(
        read_problem=None,
        signature_valid=signature_valid,
        kid=kid,
        issuer=claims["iss"],
        subject=claims["sub"],
        name=claims["name"],
        status=claims["status"],
        issued_at=issued_at,
        expires_at=expires_at,
        jti=claims["jti"],
    )


# --- QR codes --------------------------------------------------------------------------------


def _on_white(picture: Image.Image) -> Image.Image:
    """Transparent parts shown on white, as a phone shows them (a transparent light module is
    often stored as transparent black, which a plain grey conversion turns into a dark one)."""
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return picture


def decode_qr(image: bytes) -> str:
    """The text of the first QR code in a PNG, JPEG or WebP photo or screenshot.

    Raises ``QrProblem("not_an_image")`` when Pillow cannot read the bytes (or the picture is over
    40 megapixels: a decompression bomb or no phone photo), ``QrProblem("no_qr")`` when the
    picture holds no readable QR code.
    """
    try:
        with Image.open(io.BytesIO(image), formats=IMAGE_FORMATS) as picture:
            width, height = picture.size
            if width * height > MAX_IMAGE_PIXELS:  # checked on the header, before decoding
                raise QrProblem("not_an_image")
            grey = _on_white(picture).convert("L")  # decodes the pixels
    except QrProblem:
        raise
    except Exception as error:  # any decoder failure means "not a usable image"
        raise QrProblem("not_an_image") from error

    barcodes = zxingcpp.read_barcodes(
        grey, formats=zxingcpp.BarcodeFormat.QRCode, text_mode=zxingcpp.TextMode.Plain
    )
    if not barcodes:
        raise QrProblem("no_qr")
    return barcodes[0].text
