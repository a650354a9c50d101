"""App Bridge session tokens for tests, in the documented payload shape
(shopify_python_api test/session_token_test.py; shopify-app-js decode-session-token tests)."""
from __future__ import annotations

import time
import uuid
import warnings

import jwt

from tests.shopify.conftest import API_KEY, API_SECRET, SHOP_DOMAIN


def session_token(shop: str = SHOP_DOMAIN, *, secret: str = API_SECRET, user_id: str = "42",
                  lifetime: int = 60, issued: float | None = None, **claims) -> str:
    """An HS256 session token for `shop` signed with `secret` (the app's by default).
    `issued` moves the clock (time.time() - 3600: long expired); claims override the payload."""
    now = int(time.time() if issued is None else issued)
    payload = {"iss": f"https://{shop}/admin", "dest": f"https://{shop}", "aud": API_KEY, "sub": user_id,
               "exp": now + lifetime, "nbf": now - 1, "iat": now - 1, "jti": str(uuid.uuid4()),
               "sid": f"session-{user_id}"}
    payload.update(claims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the test secret is short
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm="HS256")
