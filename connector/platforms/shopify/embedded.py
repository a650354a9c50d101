"""The Shopify app's own pages under /shopify/ (blueprint "shopify_embedded").

    GET /shopify/                 the app home in the Shopify admin (application_url): verifies the
                                  session token, installs the shop by token exchange when it has no
                                  working tokens, then opens the embedded returns list
    GET /shopify/session-token    the bounce page: App Bridge reloads `shopify-reload` with a token
    GET /shopify/order-returns    the order page's "View returns" admin link (app://order-returns)
    GET /shopify/auth             the authorization-code grant for installs outside the admin ...
    GET /shopify/auth/callback    ... and its callback (HMAC, state, shop, timestamp checked)

The returns pages themselves are the admin blueprint's, served in embedded mode
(connector.platforms.shopify.embedded_mode).
"""
from __future__ import annotations

import hmac
import logging
import secrets
import time

from flask import Blueprint, Response, current_app, redirect, render_template, request, session, url_for
from flask_babel import get_locale, gettext as _
from sqlalchemy import select

from connector import db
from connector.i18n import LANGUAGES
from connector.platforms.shopify import auth, embedded_mode
from connector.platforms.shopify.errors import ShopifyError
from connector.platforms.shopify.verify import SessionToken, VerificationError, valid_shop_domain, verify_oauth_query
from connector.returns import lifecycle as lc
from connector.returns.models import Order, Return, Shop

log = logging.getLogger("connector.shopify.embedded")

bp = Blueprint("shopify_embedded", __name__, url_prefix="/shopify", template_folder="templates")

OAUTH_STATE_KEY = "shopify_oauth"
OAUTH_STATE_MAX_AGE = 600  # seconds between /shopify/auth and its callback
FRAMED_ENDPOINTS = frozenset({"shopify_embedded.app_home", "shopify_embedded.session_token",
                              "shopify_embedded.order_returns"})


def _config():
    return current_app.config["CONNECTOR"]


@bp.after_request
def _frame_policy(resp: Response) -> Response:
    """Pages shown in the Shopify admin may be framed by that shop's admin only. The OAuth pages
    are top-level and keep the app's default policy (no framing)."""
    if request.endpoint in FRAMED_ENDPOINTS and "Content-Security-Policy" not in resp.headers:
        embedded = embedded_mode.current()
        shop = embedded.shop if embedded else valid_shop_domain(request.args.get("shop"))
        resp.headers["Content-Security-Policy"] = embedded_mode.frame_policy(shop)
    return resp


def _message(status: int, title: str, message: str, detail: str = "") -> tuple[str, int]:
    framed = request.endpoint in FRAMED_ENDPOINTS
    return render_template("shopify/message.html", title=title, message=message, detail=detail,
                           api_key=_config().shopify_api_key if framed else None,
                           app_bridge_src=embedded_mode.APP_BRIDGE_SRC,
                           page_lang=str(get_locale() or "en")), status


def _lang() -> str | None:
    """The admin's language from the `locale` Shopify adds to app URLs (de, de-DE, pt-BR...)."""
    asked = request.args.get("lang") or (request.args.get("locale") or "")[:2].lower()
    return asked if asked in LANGUAGES else None


def _admin_url(endpoint: str, shop: Shop, **values) -> str:
    """An embedded admin URL that opens without a bounce: it carries this request's token."""
    return url_for(endpoint, handle=shop.handle, shop=shop.domain, host=request.args.get("host"), lang=_lang(),
                   id_token=embedded_mode.raw_token(), **values)


def _session_or_response() -> SessionToken | Response | tuple:
    """The verified session token of this request, or what to answer instead (the bounce page for
    a document, 401 for a fetch, a message when the request names no shop)."""
    token = embedded_mode.verified_session()
    domain = valid_shop_domain(request.args.get("shop"))
    if token is None:
        if embedded_mode.is_fetch():
            return embedded_mode.retry_response()
        if domain is None:
            return _message(400, _("Open Returns Connector from Shopify"),
                            _("Open Returns Connector from the Apps section of your Shopify admin."))
        return embedded_mode.bounce(domain)
    if request.args.get("shop") is not None and domain != token.shop:
        return _message(400, _("This link belongs to another shop"),
                        _("Open Returns Connector from the Apps section of your Shopify admin."))
    embedded_mode.enter(token.shop, token)
    return token


def _installed_shop(token: SessionToken) -> Shop | tuple:
    """The shop the token speaks for, installed (token exchange) when it has no working tokens."""
    shop = auth.find_shop(token.shop)
    if auth.is_installed(shop):
        return shop
    try:
        creds = auth.exchange_token(token.shop, embedded_mode.raw_token())
        return auth.install(token.shop, creds)
    except auth.TokenRequestRefused as exc:
        db.session.rollback()
        log.warning("shopify %s: token exchange refused (%s)", token.shop, exc.status)
        return _message(401, _("Shopify did not connect your shop"),
                        _("Please reload the page. If this keeps happening, reinstall Returns Connector from the "
                          "Shopify App Store."), detail=str(exc))
    except ShopifyError as exc:
        db.session.rollback()
        log.warning("shopify %s: install failed: %s", token.shop, exc)
        return _message(502, _("Shopify could not be reached"),
                        _("Returns Connector could not finish connecting your shop. Nothing was lost; please "
                          "reload the page in a moment."), detail=str(exc))


# ============================================================================ the app home

@bp.get("/")
def app_home():
    token = _session_or_response()
    if not isinstance(token, SessionToken):
        return token
    shop = _installed_shop(token)
    if not isinstance(shop, Shop):
        return shop
    return redirect(_admin_url("admin.returns", shop))


@bp.get("/session-token")
def session_token():
    """The bounce page. `shopify-reload` must be a path of this app (App Bridge navigates to it)."""
    target = request.args.get("shopify-reload", "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return _message(400, _("Open Returns Connector from Shopify"),
                        _("Open Returns Connector from the Apps section of your Shopify admin."))
    return render_template("shopify/bounce.html", api_key=_config().shopify_api_key,
                           app_bridge_src=embedded_mode.APP_BRIDGE_SRC, page_lang=str(get_locale() or "en"))


# ============================================================================ the order page's link

def _order_gid(value: str) -> str | None:
    if value.startswith("gid://shopify/Order/") and value.rsplit("/", 1)[1].isdigit():
        return value
    return f"gid://shopify/Order/{value}" if value.isdigit() else None


@bp.get("/order-returns")
def order_returns():
    """`?id=<order id>` from the admin link on an order's page: that order's returns (its page
    when there is exactly one)."""
    token = _session_or_response()
    if not isinstance(token, SessionToken):
        return token
    shop = _installed_shop(token)
    if not isinstance(shop, Shop):
        return shop
    gid = _order_gid(request.args.get("id", "").strip()[:80])
    order = None
    if gid is not None:
        order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == gid))
    if order is None:
        notice = embedded_mode.sign_notices([("info", _(
            "This order has no returns in Returns Connector yet (or has not been synced yet)."))])
        return redirect(_admin_url("admin.returns", shop, notice=notice))
    ids = db.session.scalars(select(Return.id).where(Return.shop_id == shop.id, Return.order_id == order.id,
                                                     Return.state != lc.DRAFT).limit(2)).all()
    if len(ids) == 1:
        return redirect(_admin_url("admin.return_page", shop, return_id=ids[0]))
    return redirect(_admin_url("admin.returns", shop, order=order.id))


# ============================================================================ authorization-code grant

def _now() -> float:
    return time.time()


@bp.get("/auth")
def oauth_start():
    """Start the authorization-code grant for `?shop=` (an install outside the Shopify admin).

    When Shopify sent the request (it carries `hmac`), the HMAC and timestamp must verify. The
    `state` nonce is kept in the session cookie (signed; this is a top-level page, so the cookie
    works) and must come back with the callback."""
    if request.args.get("embedded") == "1" and request.args.get("id_token"):
        # Inside the admin: token exchange is the way (no redirect out of the iframe needed).
        return redirect(url_for("shopify_embedded.app_home", **request.args.to_dict()))
    domain = valid_shop_domain(request.args.get("shop"))
    if domain is None:
        return _message(400, _("Which shop?"), _("Open this page with your shop's myshopify.com address, "
                                                  "for example ?shop=your-shop.myshopify.com."))
    if "hmac" in request.args:
        try:
            verify_oauth_query(request.args.items(multi=True), embedded_mode.client_secrets(), now=_now())
        except VerificationError as exc:
            log.warning("shopify install request refused: %s", exc)
            return _message(400, _("This link is not valid"), _("Please start the installation again from Shopify."))
    state = secrets.token_urlsafe(32)
    session[OAUTH_STATE_KEY] = {"state": state, "shop": domain, "at": int(_now())}
    redirect_uri = _config().base_url + url_for("shopify_embedded.oauth_callback")
    try:
        return redirect(auth.authorize_url(domain, state, redirect_uri))
    except ShopifyError as exc:
        return _message(503, _("The app is not configured"), str(exc))


@bp.get("/auth/callback")
def oauth_callback():
    """Shopify's redirect after the merchant approved: verify everything, then install."""
    try:
        params = verify_oauth_query(request.args.items(multi=True), embedded_mode.client_secrets(), now=_now())
    except VerificationError as exc:
        log.warning("shopify oauth callback refused: %s", exc)
        return _message(400, _("This link is not valid"), _("Please start the installation again from Shopify."))
    domain = valid_shop_domain(params.get("shop"))
    pending = session.pop(OAUTH_STATE_KEY, None)
    if (domain is None or not isinstance(pending, dict) or not params.get("code")
            or not hmac.compare_digest(str(pending.get("state", "")), params.get("state", ""))
            or pending.get("shop") != domain or _now() - float(pending.get("at", 0)) > OAUTH_STATE_MAX_AGE):
        log.warning("shopify oauth callback refused: state or shop does not match this browser's request")
        return _message(403, _("This link is not valid"), _("Please start the installation again from Shopify."))
    try:
        creds = auth.exchange_code(domain, params["code"])
        shop = auth.install(domain, creds)
    except ShopifyError as exc:
        db.session.rollback()
        log.warning("shopify %s: install by authorization code failed: %s", domain, exc)
        return _message(502, _("Shopify did not connect your shop"),
                        _("Please start the installation again from Shopify."), detail=str(exc))
    api_key = _config().shopify_api_key
    return redirect(f"https://admin.shopify.com/store/{shop.domain.split('.', 1)[0]}/apps/{api_key}")
