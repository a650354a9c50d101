"""The portal's session in proxy mode: a sealed token carried in the URLs and forms the portal
builds, instead of a cookie.

Shopify's app proxy strips Cookie and Set-Cookie, so the portal's Flask session (sign-in grants,
draft ids, the CSRF token, the chosen language, flashed messages: see connector/portal/access.py)
cannot live in a cookie there. `ProxySessionInterface` replaces Flask's session interface: for a
proxied request (proxy_gate.proxied) it opens the session from the `ps` parameter (the form field
first for a POST, then the query) and, when the response is done, writes the session back as a new
token into every place the portal put the request's placeholder (proxy_gate.ProxyRequest.marker):
links, form actions, the hidden `ps` field of every form, redirect Locations. Every other request
goes to Flask's own cookie session, untouched.

The token: Fernet (AES-CBC + HMAC-SHA256, with its own issue time) over a zlib-compressed JSON of
{shop id, signed-in customer id or "", session start, the session dict in Flask's own tagged JSON},
under a key derived from SECRET_KEY with HKDF and its own label, so it can be read by nothing but
this module and nothing else's key can forge it.

Why it is built like this (it is a bearer token in a URL):
- Short-lived: a token is accepted for 2 hours after it was issued (each response issues a fresh
  one) and a session ends 12 hours after it started, whatever happens.
- Sealed, not only signed: the URL lands in the storefront's history and in whatever analytics the
  theme runs; encryption keeps the shopper's email and order ids out of them.
- Useless elsewhere: it names its shop and its customer. A token from shop A opened on shop B, a
  signed-in customer's token opened anonymously or by another customer, is ignored (a fresh,
  empty session). The portal's grants are keyed by shop id as well.
- Fresh state per response, no server-side row: a link someone was lured into cannot fix the
  victim's session (signing in issues a new token that only the victim's pages carry).
- Never in mails: the sign-in and status links in mails are built by connector/portal/tokens.py
  from BASE_URL, never through the proxy's URL building, and carry no session.
- CSRF still holds: Flask-WTF's token lives in this session and the form's copy must match it; a
  forged post from elsewhere has neither the shopper's session token nor its CSRF token.
"""
from __future__ import annotations

import base64
import json
import logging
import time
import zlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import request
from flask.sessions import SecureCookieSession, SessionInterface, session_json_serializer
from werkzeug.exceptions import HTTPException

from connector.platforms.shopify.proxy_gate import ProxyRequest, proxied

log = logging.getLogger("connector.shopify.proxy")

PARAM = "ps"  # the query parameter and form field
KEY_LABEL = b"connector.shopify.proxy-session.v1"
MAX_AGE = 2 * 3600  # seconds a token is accepted after it was issued
MAX_LIFETIME = 12 * 3600  # seconds a session lives at most, however often it is renewed
MAX_TOKEN = 8192  # characters; a token is ~300 for a typical session
_TEXT_TYPES = ("text/html", "application/liquid")


class ProxySession(SecureCookieSession):
    """The session of a proxied request; `started` is when the shopper's session began (epoch s)."""

    def __init__(self, initial=None, started: int | None = None):
        super().__init__(initial)
        self.started = started if started is not None else int(time.time())


@lru_cache(maxsize=4)
def _fernet(secret_key: str | bytes) -> Fernet:
    secret = secret_key.encode("utf-8") if isinstance(secret_key, str) else bytes(secret_key)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=KEY_LABEL).derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key, proxy: ProxyRequest, data: dict, started: int, now: float | None = None) -> str:
    """The token for `data` (a session dict), bound to the proxy request's shop and customer."""
    payload = json.dumps({"s": proxy.shop_id, "c": proxy.customer_id or "", "t": started,
                          "d": session_json_serializer.dumps(dict(data))}, separators=(",", ":"))
    now = int(time.time() if now is None else now)
    token = _fernet(secret_key).encrypt_at_time(zlib.compress(payload.encode("utf-8")), now)
    return token.decode("ascii").rstrip("=")  # URL-safe base64; the padding is restored on reading


def unseal(secret_key, proxy: ProxyRequest, token: str | None, now: float | None = None) -> ProxySession | None:
    """The session a token carries, or None when it is missing, malformed, tampered with, expired,
    past the session's lifetime, or bound to another shop or another customer."""
    if not token or len(token) > MAX_TOKEN:
        return None
    now = int(time.time() if now is None else now)
    try:
        raw = _fernet(secret_key).decrypt_at_time((token + "=" * (-len(token) % 4)).encode("ascii"),
                                                  ttl=MAX_AGE, current_time=now)
        payload = json.loads(zlib.decompress(raw))  # authenticated above: our own bytes
        data = session_json_serializer.loads(payload["d"])
        shop_id, customer, started = payload["s"], payload["c"], int(payload["t"])
    except (InvalidToken, ValueError, TypeError, KeyError, UnicodeError, zlib.error):
        return None
    if shop_id != proxy.shop_id or customer != (proxy.customer_id or "") or not isinstance(data, dict):
        return None
    if now - started > MAX_LIFETIME:
        return None
    return ProxySession(data, started=started)


def _token_from(req) -> str | None:
    if req.method == "POST":
        try:
            value = req.form.get(PARAM)
        except HTTPException:  # e.g. too large: the view's own form access answers that (413)
            value = None
        if value:
            return value
    return req.args.get(PARAM)


class ProxySessionInterface(SessionInterface):
    """Flask's session interface for the app: proxied requests get the token session above,
    every other request the interface it wraps (Flask's signed cookie)."""

    def __init__(self, fallback: SessionInterface):
        self.fallback = fallback

    def open_session(self, app, req):
        proxy = proxied(req.environ)
        if proxy is None:
            return self.fallback.open_session(app, req)
        if not app.secret_key:
            return None
        return unseal(app.secret_key, proxy, _token_from(req)) or ProxySession()

    def save_session(self, app, session, response):
        proxy = proxied(request.environ)
        if proxy is None:
            return self.fallback.save_session(app, session, response)
        # Never a cookie here: the session goes into the URLs the response carries.
        token = seal(app.secret_key, proxy, dict(session), getattr(session, "started", int(time.time())))
        if "Location" in response.headers:
            response.headers["Location"] = response.headers["Location"].replace(proxy.marker, token)
        if response.mimetype in _TEXT_TYPES and not response.direct_passthrough and not response.is_streamed:
            body = response.get_data()
            marker = proxy.marker.encode("ascii")
            if marker in body:
                response.set_data(body.replace(marker, token.encode("ascii")))
