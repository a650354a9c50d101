"""The embedded mode of the merchant admin: pages served inside the Shopify admin's iframe.

Inside the iframe there are no cookies (browsers block third-party cookies), so every request is
authenticated by an App Bridge session token instead of the password session:
- a document request carries it as `id_token` (query, or form field on a POST; static/embedded.js
  puts a fresh one into every same-origin link and form), a `fetch` as `Authorization: Bearer`;
- a document request without a valid token gets the "patch id token" bounce: a redirect to
  /shopify/session-token?shopify-reload=<this URL>, where App Bridge reloads the URL with a fresh
  token; a `fetch` gets 401 with `X-Shopify-Retry-Invalid-Session-Request: 1` (App Bridge retries);
- the token's shop must be the shop of the URL (404 otherwise, as for the password admin);
- a verified token is also the proof that a POST is not forged (only App Bridge inside the
  merchant's admin can obtain one; no cookie carries it), which replaces Flask-WTF's cookie-bound
  CSRF token for exactly those requests (`forgery_proof`);
- flash messages cannot ride in the session cookie, so a redirect carries them signed in `notice`,
  together with the token the POST was made with (still valid for the page that follows);
- responses may be framed by that shop's admin only (CSP frame-ancestors) and may load App Bridge
  from cdn.shopify.com.

Everything here reads the request; nothing touches the database except through the shop passed in.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Response, abort, current_app, jsonify, redirect, request, session, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from connector.platforms.shopify.verify import (InvalidSessionToken, SessionToken, VerificationError,
                                                decode_session_token, valid_shop_domain)

APP_BRIDGE_SRC = "https://cdn.shopify.com/shopifycloud/app-bridge.js"
RETRY_HEADER = "X-Shopify-Retry-Invalid-Session-Request"
ADMIN_ORIGIN = "https://admin.shopify.com"
# Query parameters every embedded link keeps (App Bridge needs shop and host on each page).
KEPT_PARAMS = ("shop", "host", "lang")
# Endpoints loaded by <img>, which no script can give a header: their URLs carry the page's token.
TOKEN_IN_URL_ENDPOINTS = frozenset({"admin.photo", "admin.qr"})
NOTICE_MAX_AGE = 300  # seconds a signed notice stays readable after the redirect that carries it


@dataclass(frozen=True)
class Embedded:
    """This request is the embedded admin of `shop` (a myshopify.com domain) for staff `user_id`."""

    api_key: str
    shop: str
    host: str | None
    user_id: str | None
    token: str  # the raw session token of this request; a secret, never logged

    @property
    def actor(self) -> str:
        return f"merchant:shopify-user-{self.user_id or 'unknown'}"

    @property
    def store_name(self) -> str:
        return self.shop.split(".", 1)[0]

    def __repr__(self) -> str:
        return f"Embedded(shop={self.shop!r}, user_id={self.user_id!r})"


def _config():
    return current_app.config["CONNECTOR"]


def client_secrets() -> list[str]:
    """The current client secret, then the one before the last rotation (when set)."""
    config = _config()
    return [s for s in (config.shopify_api_secret, config.shopify_api_secret_previous) if s]


# ============================================================================ the request's token

def _bearer() -> str | None:
    value = request.headers.get("Authorization", "")
    if value[:7].lower() == "bearer ":
        return value[7:].strip() or None
    return None


def raw_token() -> str | None:
    """The session token this request carries: the Authorization header, else the `id_token`
    form field (a fresh one put in by embedded.js), else the `id_token` query parameter."""
    token = _bearer()
    if token:
        return token
    if request.method == "POST":
        token = request.form.get("id_token")
        if token:
            return token
    return request.args.get("id_token") or None


def is_fetch() -> bool:
    """A fetch/XHR sends its token in the Authorization header; a document request cannot."""
    return "Authorization" in request.headers


def wants_embedded() -> bool:
    """The request comes from (or asks for) the embedded admin: it carries a session token, or the
    `host`/`embedded` parameters the Shopify admin adds to every app URL."""
    return bool(raw_token() or "Authorization" in request.headers or request.args.get("host")
                or request.args.get("embedded") == "1")


def _state() -> dict:
    """Per-request state (kept in the WSGI environ: `g` lives as long as the app context, which
    a test client shares between requests)."""
    return request.environ.setdefault("connector.shopify_embedded", {})


def verified_session() -> SessionToken | None:
    """The verified session token of this request (checked once per request), or None."""
    state = _state()
    if "session" not in state:
        state["session"] = None
        token = raw_token()
        if token:
            config = _config()
            try:
                state["session"] = decode_session_token(token, config.shopify_api_key, client_secrets())
            except (InvalidSessionToken, VerificationError) as exc:
                state["error"] = str(exc)  # why, for debugging; never the token
    return state["session"]


def forgery_proof() -> bool:
    """For the app's CSRF check: a POST to a Shopify shop's admin that carries a verified session
    token for that same shop was made by App Bridge inside the merchant's Shopify admin, not forged
    by another site (no cookie or ambient credential carries the token). Anything else (another
    shop's token, a standalone shop, no token) gets the usual CSRF check."""
    if request.blueprint != "admin" or not raw_token():
        return False
    token = verified_session()
    if token is None:
        return False
    from connector.returns import services
    shop = services.get_shop((request.view_args or {}).get("handle") or _admin_handle())
    return shop is not None and shop.platform == "shopify" and shop.domain == token.shop


def _admin_handle() -> str:
    """The admin URL's shop handle (the admin blueprint moves it from view_args to g)."""
    from flask import g
    return g.get("admin_handle") or ""


# ============================================================================ responses

def frame_policy(shop_domain: str | None) -> str:
    """The CSP of an embedded response: framed by this shop's admin only; App Bridge allowed."""
    ancestors = f"https://{shop_domain} {ADMIN_ORIGIN}" if shop_domain else "'none'"
    return ("default-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline' https://cdn.shopify.com; "
            "script-src 'self' https://cdn.shopify.com; connect-src 'self' https://*.shopify.com; "
            f"frame-ancestors {ancestors}; form-action 'self'")


def _without(url: str, *names: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in names]
    return urlunsplit(("", "", parts.path, urlencode(query), ""))


def bounce(shop_domain: str) -> Response:
    """Send a document request without a valid token to the bounce page, which reloads this URL
    (without the stale token) once App Bridge has a fresh one."""
    target = _without(request.full_path, "id_token")
    return redirect(url_for("shopify_embedded.session_token", shop=shop_domain, host=request.args.get("host"),
                            **{"shopify-reload": target}))


def retry_response() -> Response:
    """401 for a fetch with a missing or expired token: App Bridge fetches a new one and retries."""
    resp = jsonify(error="invalid session token")
    resp.status_code = 401
    resp.headers[RETRY_HEADER] = "1"
    return resp


def unauthenticated(shop_domain: str) -> Response:
    """What a request without a valid session token gets (see the module docstring)."""
    if is_fetch():
        return retry_response()
    if request.method in ("GET", "HEAD"):
        return bounce(shop_domain)
    from flask import render_template
    from flask_babel import gettext as _
    resp = Response(render_template("error.html", code=401, message=_(
        "Your Shopify session has expired. Please reload the page and try again; nothing was changed.")), 401)
    resp.headers["Content-Security-Policy"] = frame_policy(shop_domain)
    return resp


# ============================================================================ notices across redirects

def _notices() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt="shopify-embedded-notice")


def sign_notices(messages: list[tuple[str, str]]) -> str:
    return _notices().dumps([[str(c), str(m)] for c, m in messages])


def read_notices(value: str | None) -> list[tuple[str, str]]:
    if not value:
        return []
    try:
        data = _notices().loads(value, max_age=NOTICE_MAX_AGE)
    except (BadSignature, ValueError):
        return []
    return [(str(c), str(m)) for c, m in data if isinstance(c, str) and isinstance(m, str)][:10]


# ============================================================================ the admin's hooks

def authenticate_admin(shop) -> Response | None:
    """Called by the admin before every page of `shop` when `wants_embedded()`.

    Returns a response to send instead of the page (bounce, 401), aborts with 404 when the token
    speaks for another shop, or marks the request embedded (`current()`) and returns None (the request may proceed).
    """
    if shop.platform != "shopify" or not shop.domain:
        abort(404)  # embedded markers on a shop that is not a Shopify shop: nothing here
    url_shop = request.args.get("shop")
    if url_shop is not None and valid_shop_domain(url_shop) != shop.domain:
        abort(404)
    token = verified_session()
    if token is None:
        return unauthenticated(shop.domain)
    if token.shop != shop.domain:
        abort(404)  # a token of shop A never opens shop B's pages
    _state()["embedded"] = Embedded(api_key=_config().shopify_api_key, shop=shop.domain,
                                    host=request.args.get("host"), user_id=token.user_id, token=raw_token())
    if request.method == "GET" and request.args.get("notice"):
        # The messages of the action that redirected here (the session cookie cannot carry them).
        session["_flashes"] = list(session.get("_flashes", [])) + read_notices(request.args["notice"])
    return None


def current() -> Embedded | None:
    """The embedded context of this request (set by `authenticate_admin` or `enter`), or None."""
    from flask import has_request_context
    return _state().get("embedded") if has_request_context() else None


def enter(shop_domain: str, token: SessionToken) -> Embedded:
    """Mark this request as embedded for `shop_domain` (the Shopify pages' own routes)."""
    embedded = Embedded(api_key=_config().shopify_api_key, shop=shop_domain, host=request.args.get("host"),
                        user_id=token.user_id, token=raw_token())
    _state()["embedded"] = embedded
    return embedded


def url_defaults(endpoint: str, values: dict) -> None:
    """Every admin link of an embedded page keeps shop, host and lang; image URLs carry the token."""
    embedded = current()
    if embedded is None or endpoint == "admin.static":
        return
    values.setdefault("shop", embedded.shop)
    if embedded.host:
        values.setdefault("host", embedded.host)
    lang = request.args.get("lang")
    if lang:
        values.setdefault("lang", lang)
    if endpoint in TOKEN_IN_URL_ENDPOINTS:
        values.setdefault("id_token", embedded.token)


def after_request(resp: Response) -> Response:
    """Frame policy for embedded responses; redirects carry the token and the flashed notices."""
    embedded = current()
    if embedded is None:
        return resp
    resp.headers["Content-Security-Policy"] = frame_policy(embedded.shop)
    if resp.status_code in (301, 302, 303, 307, 308) and resp.location:
        parts = urlsplit(resp.location)
        if not parts.netloc or parts.netloc == request.host:
            query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                     if k not in ("id_token", "notice")]
            flashes = session.pop("_flashes", None)
            if flashes:
                query.append(("notice", sign_notices(flashes)))
            query.append(("id_token", embedded.token))
            resp.location = urlunsplit(("", "", parts.path, urlencode(query), ""))
    return resp
