"""What the WordPress plugin and the connector sign for each other, with the store's plugin secret.

The same two functions exist in PHP in the plugin (embedded_ui/woocommerce/returns-connector/
includes/class-rc-signing.php); tests/fixtures/woocommerce/plugin_vectors.json holds vectors both
test suites check, so the two can never drift apart.

Customer token (plugin -> portal, through the shopper's browser; short-lived, single-use):
    token = b64url(payload_json) + "." + b64url(HMAC-SHA256(secret, b64url(payload_json)))
    payload = {"shop": handle, "customer": WP user id (int), "email": str,
               "order": WooCommerce order id (int) or null, "exp": unix seconds, "nonce": str}
    b64url without padding; payload_json compact (no spaces), keys in the order above.

Signed request (plugin -> connector, server to server):
    X-RC-Shop: handle   X-RC-Timestamp: unix seconds   X-RC-Signature: hex(HMAC-SHA256(secret, message))
    message = timestamp + "\\n" + METHOD + "\\n" + path (no query) + "\\n" + hex(SHA-256(raw body))
Accepted within REQUEST_WINDOW seconds either way. Comparisons are constant-time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

TOKEN_LIFETIME = 300
REQUEST_WINDOW = 300
MAX_TOKEN_LENGTH = 2048


class SignatureError(ValueError):
    """A token or request that does not verify (the message says why, for logs, never to users)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, message: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True)
class CustomerToken:
    shop: str
    customer: int
    email: str
    order: int | None
    exp: int
    nonce: str


def sign_customer_token(secret: str, *, shop: str, customer: int, email: str, order: int | None,
                        exp: int, nonce: str) -> str:
    payload = json.dumps({"shop": shop, "customer": customer, "email": email, "order": order, "exp": exp,
                          "nonce": nonce}, separators=(",", ":"), ensure_ascii=False)
    body = _b64(payload.encode("utf-8"))
    return f"{body}.{_b64(_mac(secret, body))}"


def verify_customer_token(secret: str, token: str, *, shop: str, now: float | None = None) -> CustomerToken:
    """The token's claims when it is signed with `secret`, names `shop` and has not expired."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise SignatureError("malformed token")
    body, mac = token.split(".")
    try:
        given = _unb64(mac)
        data = json.loads(_unb64(body))
    except (ValueError, json.JSONDecodeError) as exc:
        raise SignatureError("malformed token") from exc
    if not hmac.compare_digest(given, _mac(secret, body)):
        raise SignatureError("bad signature")
    if not isinstance(data, dict) or data.get("shop") != shop:
        raise SignatureError("token of another shop")
    now = time.time() if now is None else now
    try:
        claims = CustomerToken(shop=data["shop"], customer=int(data["customer"]), email=str(data["email"]),
                               order=int(data["order"]) if data.get("order") is not None else None,
                               exp=int(data["exp"]), nonce=str(data["nonce"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SignatureError("incomplete token") from exc
    if claims.exp < now or claims.exp > now + TOKEN_LIFETIME + 60:
        raise SignatureError("expired token")
    if not 8 <= len(claims.nonce) <= 64:
        raise SignatureError("bad nonce")
    return claims


def request_message(timestamp: str, method: str, path: str, body: bytes) -> str:
    return f"{timestamp}\n{method.upper()}\n{path}\n{hashlib.sha256(body).hexdigest()}"


def sign_request(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    return _mac(secret, request_message(timestamp, method, path, body)).hex()


def verify_request(secret: str, *, timestamp: str, signature: str, method: str, path: str, body: bytes,
                   now: float | None = None) -> None:
    """Raise SignatureError unless the request is signed with `secret` and fresh."""
    now = time.time() if now is None else now
    try:
        moment = int(timestamp)
    except (TypeError, ValueError) as exc:
        raise SignatureError("bad timestamp") from exc
    if abs(now - moment) > REQUEST_WINDOW:
        raise SignatureError("stale request")
    expected = sign_request(secret, timestamp, method, path, body)
    if not hmac.compare_digest(expected, (signature or "").lower()):
        raise SignatureError("bad signature")
