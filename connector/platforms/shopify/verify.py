"""Verification of what Shopify sends: OAuth query HMACs, app proxy signatures, webhook HMACs,
session tokens (JWT), and shop domains. Pure functions: no Flask, no database, no network.

Every function takes the app's client secrets as a list (the current one first, then the one
before the last rotation, `Config.shopify_api_secret_previous`), so requests signed just before a
rotation still verify; a plain string is accepted as a list of one. MACs are compared with
`hmac.compare_digest` (constant time). A failed check raises `VerificationError` (its message says
which check failed, never a secret or a token) or, for webhooks, returns False.

Algorithms and the reference vectors: tests/fixtures/shopify/vectors.json.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

import jwt
from jwt.warnings import InsecureKeyLengthWarning

# Anchored: the whole string, one label of [a-z0-9-] (not starting with '-') and nothing else: no
# port, path, query, user info or trailing dot. `fullmatch` also refuses a trailing newline,
# which a `$` alone would let through.
SHOP_DOMAIN_RE = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
MAX_SHOP_DOMAIN = 255

# OAuth (install request, authorization-code callback): the redirect is followed at once, so the
# timestamp is seconds old. Shopify's JS library allows 90 s, its older Python library 24 h. We
# allow 10 minutes into the past (a slow network, a server clock a few minutes behind, a merchant
# reloading the callback) and 90 s into the future (clock skew), and no more: a leaked install or
# callback URL must not stay usable for a day. The `state` nonce bound to the browser and the
# single-use `code` carry the rest of the replay protection.
OAUTH_MAX_AGE = 600
# App proxy requests are signed per request by Shopify's edge: 90 s either way, as Shopify's own
# libraries do.
PROXY_MAX_AGE = 90
MAX_FUTURE_SKEW = 90
# Session tokens live one minute; Shopify's libraries allow 10 s of clock skew on exp/nbf.
SESSION_TOKEN_LEEWAY = 10

# Keys whose repetition in an app proxy query would make the signed message ambiguous
# (Shopify's libraries refuse them too).
PROXY_UNIQUE_KEYS = ("hmac", "shop", "signature", "timestamp")


class VerificationError(ValueError):
    """A request failed verification; the message names the check (safe to log)."""


Secrets = str | Sequence[str | None]
QueryInput = str | bytes | Mapping[str, str] | Iterable[tuple[str, str]]


def valid_shop_domain(value: object) -> str | None:
    """The lower-cased `<name>.myshopify.com` domain, or None for anything else.

    Refuses ports, paths, queries, schemes, user info, other hosts (`evil.com?x.myshopify.com`,
    `x.myshopify.com.evil.com`), empty labels and surrounding whitespace.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_SHOP_DOMAIN:
        return None
    domain = value.lower()
    return domain if SHOP_DOMAIN_RE.fullmatch(domain) else None


def _secret_list(secrets: Secrets) -> list[bytes]:
    items = [secrets] if isinstance(secrets, str) else list(secrets or [])
    keys = [s.encode("utf-8") for s in items if s]
    if not keys:
        raise VerificationError("no client secret is configured")
    return keys


def _pairs(query: QueryInput) -> list[tuple[str, str]]:
    """Decoded (key, value) pairs in order, repeated keys kept."""
    if isinstance(query, bytes):
        query = query.decode("utf-8", "replace")
    if isinstance(query, str):
        return parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if isinstance(query, Mapping):
        return [(str(k), str(v)) for k, v in query.items()]
    return [(str(k), str(v)) for k, v in query]


def _check_timestamp(value: str | None, now: datetime | float, max_age: float, what: str) -> None:
    if value is None:
        raise VerificationError(f"{what}: the timestamp is missing")
    try:
        stamp = int(value)
    except ValueError:
        raise VerificationError(f"{what}: the timestamp is not a number") from None
    current = now.timestamp() if isinstance(now, datetime) else float(now)
    if stamp < current - max_age:
        raise VerificationError(f"{what}: the timestamp is too old")
    if stamp > current + MAX_FUTURE_SKEW:
        raise VerificationError(f"{what}: the timestamp is in the future")


def _hex_mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def _matches_any(keys: list[bytes], message: str, given: str) -> bool:
    given = given.strip().lower()
    ok = False
    for key in keys:  # every key is tried, so the time taken does not say which one matched
        ok |= hmac.compare_digest(_hex_mac(key, message), given)
    return ok


# ================================================================ OAuth query (install, callback)

def oauth_message(pairs: Iterable[tuple[str, str]]) -> str:
    """The signed message of an OAuth query: every parameter but `hmac` (and the legacy
    `signature`), sorted by key, as `key=value` joined with '&'.

    Values are the decoded ones with the delimiters escaped ('%' -> %25, '&' -> %26, and '=' in
    keys -> %3D), as Shopify's Python library does, so a value cannot smuggle in a second pair.
    For the characters Shopify actually sends (code, shop, state, timestamp, base64 host) every
    library signs the same text (see the encoding caveat in vectors.json).
    """
    def encode(key: str, value: str) -> str:
        key = key.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
        value = value.replace("%", "%25").replace("&", "%26")
        return f"{key}={value}"
    kept = sorted((k, v) for k, v in pairs if k not in ("hmac", "signature"))
    return "&".join(encode(k, v) for k, v in kept)


def verify_oauth_query(query: QueryInput, secrets: Secrets, now: datetime | float,
                       max_age: float = OAUTH_MAX_AGE) -> dict[str, str]:
    """Verify a query Shopify signed with `hmac` (the install request to the app URL, the
    authorization-code callback). Returns the parameters as a dict; raises VerificationError.

    Checks: exactly one `hmac`, no repeated key (a repeated key makes the message ambiguous), the
    hex HMAC-SHA256 of `oauth_message` with one of `secrets`, a well-formed `shop` when present,
    and a `timestamp` no older than `max_age` seconds and at most 90 s ahead of `now`.
    """
    pairs = _pairs(query)
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise VerificationError("oauth: a parameter is repeated")
    params = dict(pairs)
    given = params.get("hmac")
    if not given:
        raise VerificationError("oauth: the hmac is missing")
    if not _matches_any(_secret_list(secrets), oauth_message(pairs), given):
        raise VerificationError("oauth: the hmac does not match")
    if "shop" in params and valid_shop_domain(params["shop"]) is None:
        raise VerificationError("oauth: the shop is not a myshopify.com domain")
    _check_timestamp(params.get("timestamp"), now, max_age, "oauth")
    return params


# ================================================================ app proxy

def proxy_message(pairs: Iterable[tuple[str, str]]) -> str:
    """The signed message of an app proxy query: every parameter but `signature`, repeated keys
    joined with ',', sorted by key, `key=value` concatenated with no separator (decoded values)."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        if key != "signature":
            grouped.setdefault(key, []).append(value)
    return "".join(f"{key}={','.join(values)}" for key, values in sorted(grouped.items()))


def verify_proxy_signature(query: QueryInput, secrets: Secrets, now: datetime | float,
                           max_age: float = PROXY_MAX_AGE) -> dict[str, str]:
    """Verify an app proxy request (`/apps/<prefix>/...` forwarded by Shopify with `signature`).

    Returns the parameters with repeated keys joined by ',' (as signed), e.g. `shop`,
    `logged_in_customer_id` ('' for an anonymous shopper), `path_prefix`, `timestamp`.
    Raises VerificationError when `signature` is missing or wrong, when hmac/shop/signature/
    timestamp is repeated, when `shop` is not a myshopify.com domain, or when the timestamp is
    more than `max_age` seconds old or 90 s ahead of `now`.
    """
    pairs = _pairs(query)
    for key in PROXY_UNIQUE_KEYS:
        if sum(1 for k, _ in pairs if k == key) > 1:
            raise VerificationError(f"proxy: {key} is repeated")
    given = next((v for k, v in pairs if k == "signature"), None)
    if not given:
        raise VerificationError("proxy: the signature is missing")
    if not _matches_any(_secret_list(secrets), proxy_message(pairs), given):
        raise VerificationError("proxy: the signature does not match")
    params: dict[str, str] = {}
    for key, value in pairs:
        if key != "signature":
            params[key] = f"{params[key]},{value}" if key in params else value
    if valid_shop_domain(params.get("shop")) is None:
        raise VerificationError("proxy: the shop is not a myshopify.com domain")
    _check_timestamp(params.get("timestamp"), now, max_age, "proxy")
    return params


# ================================================================ webhooks

def webhook_hmac(raw_body: bytes, secret: str) -> str:
    """The base64 HMAC-SHA256 of the raw body, as Shopify sends it in X-Shopify-Hmac-Sha256."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).digest()).decode("ascii")


def verify_webhook(raw_body: bytes, header: str | None, secrets: Secrets) -> bool:
    """True when `header` (X-Shopify-Hmac-Sha256) is the base64 HMAC-SHA256 of the exact raw
    body bytes with one of `secrets`. Verify before parsing: any re-encoding breaks the MAC."""
    if not header or not isinstance(raw_body, (bytes, bytearray)):
        return False
    try:
        keys = _secret_list(secrets)
    except VerificationError:
        return False
    given = header.strip().encode("ascii", "replace")
    ok = False
    for key in keys:
        expected = base64.b64encode(hmac.new(key, bytes(raw_body), hashlib.sha256).digest())
        ok |= hmac.compare_digest(expected, given)
    return ok


# ================================================================ session tokens (App Bridge)

@dataclass(frozen=True)
class SessionToken:
    """A verified App Bridge session token: who (staff user `user_id`) in which shop."""

    shop: str  # the myshopify.com domain (host of `dest`)
    user_id: str | None  # `sub`: the staff member's user id
    session_id: str | None  # `sid`
    jti: str | None
    exp: datetime

    def __repr__(self) -> str:
        return f"SessionToken(shop={self.shop!r}, user_id={self.user_id!r}, exp={self.exp.isoformat()})"


class InvalidSessionToken(VerificationError):
    """The session token is missing, malformed, wrongly signed, expired or for another app/shop."""


def _https_host(url: object, claim: str) -> str:
    if not isinstance(url, str):
        raise InvalidSessionToken(f"session token: {claim} is missing")
    parts = urlsplit(url)
    # No port, no user info: the netloc must be exactly the host name.
    if parts.scheme != "https" or not parts.hostname or parts.netloc.lower() != parts.hostname:
        raise InvalidSessionToken(f"session token: {claim} is not an https URL of a host")
    return parts.hostname


def decode_session_token(token: str | None, api_key: str | None, secrets: Secrets,
                         now: datetime | float | None = None,
                         leeway: float = SESSION_TOKEN_LEEWAY) -> SessionToken:
    """Verify an App Bridge session token and return who it speaks for.

    HS256 only (`alg: none` and every other algorithm are refused), signed with the current or
    the previous client secret; `aud` must be the app's API key; `dest` an https URL whose host is
    a valid myshopify.com domain and `iss` an https URL on that same host (`https://<shop>/admin`);
    `exp` and `nbf` hold at `now` within `leeway` seconds. Raises InvalidSessionToken.
    """
    if not token or not isinstance(token, str) or len(token) > 8192:
        raise InvalidSessionToken("session token: missing")
    if not api_key:
        raise InvalidSessionToken("session token: no API key is configured")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidSessionToken("session token: malformed") from None
    if header.get("alg") != "HS256":
        raise InvalidSessionToken("session token: the algorithm is not HS256")
    payload = None
    for key in _secret_list(secrets):
        try:
            with warnings.catch_warnings():
                # The key is the client secret Shopify issued; its length is not ours to choose.
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                payload = jwt.decode(
                    token, key, algorithms=["HS256"], audience=api_key,
                    # exp/nbf are checked below against `now` (testable, one clock for all checks).
                    options={"require": ["exp", "nbf", "iss", "dest", "aud"], "verify_exp": False,
                             "verify_nbf": False, "verify_iat": False})
            break
        except jwt.InvalidSignatureError:
            continue  # try the previous secret
        except jwt.InvalidAudienceError:
            raise InvalidSessionToken("session token: issued for another app") from None
        except jwt.PyJWTError as exc:
            raise InvalidSessionToken(f"session token: {type(exc).__name__}") from None
    if payload is None:
        raise InvalidSessionToken("session token: the signature does not match")

    current = (now.timestamp() if isinstance(now, datetime) else float(now)) if now is not None \
        else datetime.now(timezone.utc).timestamp()
    try:
        exp, nbf = float(payload["exp"]), float(payload["nbf"])
    except (TypeError, ValueError):
        raise InvalidSessionToken("session token: exp/nbf are not numbers") from None
    if current > exp + leeway:
        raise InvalidSessionToken("session token: expired")
    if current + leeway < nbf:
        raise InvalidSessionToken("session token: not valid yet")

    dest_host = _https_host(payload.get("dest"), "dest")
    iss_host = _https_host(payload.get("iss"), "iss")
    shop = valid_shop_domain(dest_host)
    if shop is None:
        raise InvalidSessionToken("session token: dest is not a myshopify.com shop")
    if iss_host != dest_host:
        raise InvalidSessionToken("session token: iss and dest are different shops")

    def text(name: str) -> str | None:
        value = payload.get(name)
        return str(value) if value not in (None, "") else None

    return SessionToken(shop=shop, user_id=text("sub"), session_id=text("sid"), jti=text("jti"),
                        exp=datetime.fromtimestamp(exp, tz=timezone.utc))
