"""Personal data at rest: ID and phone numbers are stored encrypted, and found by a keyed hash.

AES-256-GCM (``cryptography``'s AEAD primitive) rather than Fernet: the campaign writes about
240,000 workers, and Fernet's CBC+HMAC costs ten times as much per value. Each token names its
key, so keys can be rotated: the first key encrypts, all of them decrypt. The lookup hash
(HMAC-SHA256) makes "is this ID number already on a request?" an exact index lookup; its key
cannot be rotated without re-hashing every row.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, current_app

KEY_ID_BYTES = 4
NONCE_BYTES = 12


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


class PiiVault:
    def __init__(self, encryption_keys: list[bytes], hash_key: bytes) -> None:
        if not encryption_keys or any(len(key) != 32 for key in encryption_keys):
            raise ValueError("PII encryption keys must be 32 bytes each")
        if len(hash_key) < 32:
            raise ValueError("the PII hash key must have at least 32 bytes")
        self._current_id = _key_id(encryption_keys[0])
        self._ciphers = {_key_id(key): AESGCM(key) for key in encryption_keys}
        self._hash_key = hash_key

    def encrypt(self, text: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current_id].encrypt(nonce, text.encode(), None)
        return base64.urlsafe_b64encode(self._current_id + nonce + sealed).decode().rstrip("=")

    def decrypt(self, token: str) -> str:
        raw = _b64decode(token)
        key_id, nonce, sealed = raw[:KEY_ID_BYTES], raw[KEY_ID_BYTES:16], raw[16:]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise ValueError("PII token encrypted with an unknown key")
        try:
            return cipher.decrypt(nonce, sealed, None).decode()
        except InvalidTag:
            raise ValueError("PII token does not decrypt") from None

    def lookup_hash(self, text: str) -> str:
        return hmac.new(self._hash_key, text.encode(), hashlib.sha256).hexdigest()


def generate_keys() -> dict[str, str]:
    return {
        "PII_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "PII_HASH_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def init_app(app: Flask) -> None:
    keys, hash_key = app.config.get("PII_KEYS"), app.config.get("PII_HASH_KEY")
    if not keys or not hash_key:
        if app.config["ENV_NAME"] == "production":
            raise SystemExit(
                "fangang: PII_KEYS and PII_HASH_KEY are not set; production needs both "
                "(python -c 'from app.core.pii import generate_keys; print(generate_keys())')."
            )
        # Development: keys kept in instance/, like the secret key.
        key_file = Path(app.instance_path) / "pii_keys.json"
        if not key_file.exists():
            key_file.write_text(json.dumps(generate_keys()))
            key_file.chmod(0o600)
        stored = json.loads(key_file.read_text())
        keys, hash_key = stored["PII_KEYS"], stored["PII_HASH_KEY"]
    try:
        vault = PiiVault([_b64decode(key.strip()) for key in keys.split(",")], _b64decode(hash_key))
    except (ValueError, TypeError) as error:
        raise SystemExit(f"fangang: PII_KEYS / PII_HASH_KEY are not valid keys: {error}") from None
    app.extensions["pii"] = vault


def vault() -> PiiVault:
    return current_app.extensions["pii"]
