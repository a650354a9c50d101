"""The shopper portal on the storefront, through Shopify's app proxy, inside the shop's theme.

    storefront  https://<shop>/apps/returns/<rest>?<query>          (prefix "apps", subpath "returns";
                                                                     the merchant may change the subpath)
    Shopify  -> BASE_URL/shopify/proxy/<rest>?<query>&shop=&logged_in_customer_id=&path_prefix=
                &timestamp=&signature=
    answer   <- the portal's page for that shop, rendered by Shopify inside the theme

Mechanism, and why this one. The portal already exists as a blueprint at /portal/<handle>/...
with its views, forms, access rules and templates; the proxy must serve exactly those pages, not
a copy. So nothing is registered twice. Instead:

1. A WSGI gate (proxy_gate.ProxyGate) verifies every request under /shopify/proxy (signature with
   the current or previous client secret, 90 s timestamp, a known active Shopify shop; else a
   plain 401) and rewrites it, before Flask routes it, into the portal request
   /portal/<verified shop's handle>/<rest>, with a `ProxyRequest` in the environ. The handle comes
   from the verified shop only; routing, the portal's shop loading, CSRF and error pages are then
   Flask's and the portal's own.
2. Inside Flask, everything proxy-specific keys on that environ entry and is wired here:
   - URLs (proxy_urls): the request's URL adapter is swapped, when the request starts, for one that
     builds portal pages as storefront paths `<path_prefix>/<rest>` (links, form actions,
     redirects) and everything else (CSS, JS) as absolute BASE_URL URLs;
   - the session (proxy_session): the proxy strips cookies, so the portal's session travels as a
     sealed, short-lived token in those URLs and in a hidden field of every form;
   - the page (proxy_page, portal/bare.html): HTML answers become `application/liquid` holding only
     the page's content (no <html>/<head>; Shopify puts it in the theme's layout) with a stylesheet
     scoped to the portal (proxy_assets), and every `{{`/`{%` neutralised so that nothing a shopper
     typed is ever run as Liquid; other answers (label PDF, QR PNG, redirects) keep their type;
   - a customer signed in to the shop (`logged_in_customer_id`) is granted their orders of this
     shop on every request, so they skip the sign-in and see them;
   - CSRF: the portal's forms keep their Flask-WTF token, which lives in the proxied session. Only
     Flask-WTF's extra HTTPS check, that Referer names this host, cannot hold: the form was posted
     from the storefront's domain. `csrf_proof` (registered with the app's CSRF check) accepts a
     proxied request whose CSRF token is valid for its session and skips only that Referer check;
     a missing or wrong token still goes to the usual check and is refused.

The direct portal (/portal/<handle>/..., cookie session) is unaffected: none of the above happens
for a request the gate did not verify.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, g, has_request_context, request, request_started
from flask.globals import request_ctx
from flask_wtf.csrf import validate_csrf
from wtforms import ValidationError

from connector.platforms.shopify.proxy_assets import scoped_stylesheet
from connector.platforms.shopify.proxy_gate import ProxyGate, proxied
from connector.platforms.shopify.proxy_page import add_session_fields, neutralise_liquid
from connector.platforms.shopify.proxy_session import PARAM, ProxySessionInterface
from connector.platforms.shopify.proxy_urls import StorefrontUrls
from connector.portal import access
from connector.returns import services

bp = Blueprint("shopify_proxy", __name__, url_prefix="/shopify")

BARE_LAYOUT = "portal/bare.html"


@bp.record_once
def _install(state) -> None:
    """Put the gate in front of the app and the proxy-aware session interface in place."""
    app = state.app
    app.wsgi_app = ProxyGate(app.wsgi_app, app.config["CONNECTOR"])
    app.session_interface = ProxySessionInterface(app.session_interface)
    request_started.connect(_use_storefront_urls, app)
    app.extensions["csrf"].accept_proof(csrf_proof)


def csrf_proof() -> bool:
    """True for a proxied request whose CSRF token is valid for its (proxied) session."""
    if proxied(request.environ) is None:
        return False
    field = current_app.config["WTF_CSRF_FIELD_NAME"]
    token = request.form.get(field) or next(
        (value for key, value in request.form.items() if key.endswith(field) and value), None)
    try:
        validate_csrf(token)
    except ValidationError:
        return False  # the usual check refuses it, with its own reason
    return True


def _use_storefront_urls(sender, **_extra) -> None:
    """Before anything of the request builds a URL (even an error page), swap the URL adapter."""
    proxy = proxied(request.environ)
    if proxy is not None:
        ctx = request_ctx._get_current_object()
        ctx.url_adapter = StorefrontUrls(ctx.url_adapter, proxy, current_app.config["CONNECTOR"].base_url)


@bp.before_app_request
def _grant_signed_in_customer():
    """A customer signed in to the shop sees their orders of this shop without signing in.

    Their orders are the ones whose platform customer id is this customer's GID; granted on every
    request (new orders appear), added to what the session holds (drafts and returns stay).
    """
    proxy = proxied(request.environ)
    shop = g.get("portal_shop")
    if proxy is None or not proxy.customer_id or shop is None or shop.id != proxy.shop_id:
        return
    orders = services.orders_for_customer(shop, proxy.customer_gid)
    if orders:
        access.grant_orders(shop, orders[0].email, orders)


@bp.after_app_request
def _storefront_response(resp: Response) -> Response:
    proxy = proxied(request.environ)
    if proxy is None:
        return resp
    resp.headers.remove("Set-Cookie")  # nothing may set one here (and Shopify would drop it)
    if resp.mimetype == "text/html" and not resp.direct_passthrough and not 300 <= resp.status_code < 400:
        body = add_session_fields(resp.get_data(as_text=True), PARAM, proxy.marker)
        resp.set_data(neutralise_liquid(body))
        resp.mimetype = "application/liquid"
        # The page becomes part of the storefront's own page: our page-level policy (default-src
        # 'self', frame-ancestors) would describe this app's origin, not that page.
        resp.headers.remove("Content-Security-Policy")
    return resp


@bp.app_context_processor
def _bare_layout() -> dict:
    """Proxied pages extend portal/bare.html instead of base.html (layout.html and error.html
    extend `portal_base|default("base.html")`)."""
    if not has_request_context() or proxied(request.environ) is None:
        return {}
    return {"portal_base": BARE_LAYOUT, "proxy_customer": bool(proxied(request.environ).customer_id),
            "proxy_stylesheet_version": scoped_stylesheet()[1]}


@bp.get("/storefront/portal.css")
def stylesheet():
    """The portal's stylesheet scoped for a theme (proxy_assets); public, cacheable."""
    text, version = scoped_stylesheet()
    resp = Response(text, mimetype="text/css")
    resp.set_etag(version)
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp.make_conditional(request)
