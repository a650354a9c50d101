"""Secrets at rest: Fernet encryption of credential JSON, and API key hashing."""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    def __init__(self, key: str):
        self._fernet = Fernet(key.encode() if isinstance(key, str) else key)

    def seal(self, data: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(data).encode())

    def open(self, token: bytes | None) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise ValueError("credentials cannot be decrypted with the current ENCRYPTION_KEY") from exc


def new_api_key() -> str:
    return "rc_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_key_matches(key: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of a presented key with the stored hash."""
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_api_key(key), stored_hash)
