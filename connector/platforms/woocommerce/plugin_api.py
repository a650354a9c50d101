"""The endpoints the WordPress plugin calls (embedded_ui/woocommerce/returns-connector/).

Shopper, through the browser (a customer token, signing.py):

    GET /woocommerce/plugin/enter?token=<customer token>
        from the store's My Account "Returns" tab or an order's "Return" button. The shop is the one
        the token's `shop` claim names (read unverified only to find the secret to verify it with),
        active and on WooCommerce; the token is checked with that shop's plugin secret, then spent
        once (UsedToken). The portal session is then granted this shop's orders of that WooCommerce
        customer, and the browser goes to the portal's order list, or straight to the named order's
        items page when that order is one of them.
        Invalid, expired, tampered, another shop's or already used token -> 400 page in the portal's
        look (error.html) with a link to the portal's normal sign-in.

Plugin, server to server (a signed request, signing.py; headers X-RC-Shop, X-RC-Timestamp,
X-RC-Signature over timestamp, method, path and the raw body; 401 {"error": ...} when missing,
wrong or stale; bodies up to 64 kB, else 413):

    GET  /woocommerce/plugin/status
         -> {"shop", "connected", "portal_url", "webhooks": {"topics": {topic: id}, "checked_at"},
             "last_sync", "error"}
    GET  /woocommerce/plugin/orders/<WooCommerce order id>/returns
         -> [{"id", "rma", "state", "state_label", "refund": {...} | null, "can_refund",
              "refund_preview": {...} | null}]   (newest first; [] for an order not synced)
    POST /woocommerce/plugin/refund   {"return_id": N, "manual": false}  (manual: record a refund paid
                                      by hand, after the gateway could not refund; "can_record_manual")
         -> {"state", "amount", "currency", "error", "platform_refund_id"}   (404 for another shop's)

Who is the customer. Orders are granted by the WooCommerce customer id only
(Order.customer_platform_id == str(token customer)), never by the token's email: WooCommerce does
not verify the address a customer registers with, so matching guest orders by email would hand
someone else's guest orders to whoever registers their address. Guest orders stay reachable
through the portal's own sign-in (order number + email, or an emailed link).

Tenant isolation: the shop of a signed request is the one whose plugin secret verified it; every
query below is filtered by that shop's id. A replayed signed request (within the 300 s window) can
only repeat a read or a refund request, which is idempotent (services.request_refund).
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from functools import wraps
from urllib.parse import quote

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    request,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from connector import db
from connector.platforms.woocommerce import credentials, signing
from connector.portal import access
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Refund, Return, Shop, UsedToken

log = logging.getLogger(__name__)

bp = Blueprint("woocommerce_plugin_api", __name__, url_prefix="/woocommerce/plugin")

PLATFORM = "woocommerce"
MAX_BODY = 64 * 1024
LIVE_REFUND_STATES = ("pending", "succeeded", "unknown")
REFUND_ACTOR = "merchant:woocommerce-admin"


# ============================================================================ shared

def _woo_shop(handle: object) -> Shop | None:
    """The active WooCommerce shop called `handle`, else None."""
    if not isinstance(handle, str):
        return None
    shop = services.get_shop(handle)
    return shop if shop is not None and shop.platform == PLATFORM else None


def _plugin_secret(shop: Shop | None) -> str | None:
    creds = credentials.load(shop) if shop is not None else None
    return creds.plugin_secret if creds is not None and creds.plugin_secret else None


def _portal_url(shop: Shop) -> str:
    base = current_app.config["CONNECTOR"].base_url.rstrip("/")
    return f"{base}/portal/{quote(shop.handle, safe='')}/"


# ============================================================================ the shopper's entry

def _entry_error(shop: Shop | None):
    """400 in the portal's look; with the shop known, error.html links to its normal sign-in."""
    if shop is not None:
        # What the portal blueprint sets for its own pages: the theme (and its home link) and language.
        g.portal_shop = shop
        g.shop_locale = shop.locale
    abort(400, description=_("This link to the returns portal has expired or was already used. "
                             "Open it again from your account in the shop, or sign in to the returns "
                             "portal with your order number."))


def _unverified_shop_claim(token: str) -> object:
    """The `shop` claim of a token, read WITHOUT checking it: only to know whose secret checks it."""
    try:
        body = token.split(".")[0]
        data = json.loads(signing._unb64(body))
    except (ValueError, json.JSONDecodeError, IndexError):
        return None
    return data.get("shop") if isinstance(data, dict) else None


def _jti(shop: Shop, nonce: str) -> str:
    """The spent-token marker: per shop (one store's nonces cannot burn another's), at most 64
    characters (UsedToken.jti); nonces may be 64 characters long, so long markers are hashed."""
    marker = f"wc:{shop.id}:{nonce}"
    return marker if len(marker) <= 64 else "wc:" + hashlib.sha256(marker.encode("utf-8")).hexdigest()[:61]


def _spend(marker: str) -> bool:
    """Mark the token spent, committed at once; False when it already was (or is, by a racing request)."""
    if db.session.get(UsedToken, marker) is not None:
        return False
    try:
        db.session.add(UsedToken(jti=marker))
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return False
    return True


def _customer_orders(shop: Shop, claims: signing.CustomerToken) -> list[Order]:
    """This shop's orders of the token's WooCommerce customer (newest first), the named one included
    even when it is older than the newest MAX_GRANTS."""
    if claims.customer <= 0:  # 0 is WooCommerce's guest: no account, no orders to show
        return []
    customer = str(claims.customer)
    orders = services.orders_for_customer(shop, customer, limit=access.MAX_GRANTS)
    if claims.order is not None and all(o.platform_id != str(claims.order) for o in orders):
        named = db.session.scalar(select(Order).where(Order.shop_id == shop.id,
                                                      Order.platform_id == str(claims.order),
                                                      Order.customer_platform_id == customer))
        if named is not None:
            orders = [named] + orders[:access.MAX_GRANTS - 1]
    return orders


@bp.get("/enter")
def enter():
    token = request.args.get("token", "")
    if not token or len(token) > signing.MAX_TOKEN_LENGTH:
        return _entry_error(None)
    shop = _woo_shop(_unverified_shop_claim(token))
    if shop is not None:
        g.shop_locale = shop.locale  # messages on the way follow the shop's language (after the browser's)
    secret = _plugin_secret(shop)
    if shop is None or secret is None:
        return _entry_error(shop)
    try:
        claims = signing.verify_customer_token(secret, token, shop=shop.handle)
    except signing.SignatureError as exc:
        log.info("woocommerce portal entry refused for shop %s: %s", shop.handle, exc)
        return _entry_error(shop)
    if not _spend(_jti(shop, claims.nonce)):
        log.info("woocommerce portal entry refused for shop %s: token already used", shop.handle)
        return _entry_error(shop)

    orders = _customer_orders(shop, claims)
    email = claims.email.strip().lower() or (orders[0].email if orders else "")
    if (access.email(shop) or "") == email and email:
        access.grant_orders(shop, email, orders)  # the same shopper again: keep their drafts
    else:
        access.sign_in(shop, email, orders)  # someone else, or nobody, was signed in: start afresh
    target = next((o for o in orders if claims.order is not None and o.platform_id == str(claims.order)), None)
    if target is not None:
        location = url_for("portal.items", shop_handle=shop.handle, order_id=target.id)
    elif orders:
        location = url_for("portal.orders", shop_handle=shop.handle)
    else:
        # Nothing synced for this account (yet), or guest orders only: the portal's own sign-in.
        flash(_("We found no orders of your account yet. Sign in with your order number and email instead."),
              "info")
        location = url_for("portal.start", shop_handle=shop.handle)
    resp = redirect(location)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # the (spent) token stays out of Referer headers
    return resp


# ============================================================================ signed requests

def _json_error(status: int, message: str):
    return jsonify(error=message), status


def _read_body() -> bytes | None:
    """The raw body, or None when it is larger than MAX_BODY."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    data = request.stream.read(MAX_BODY + 1)
    return None if len(data) > MAX_BODY else data


def signed(view):
    """Let the view run only for a request signed with an active WooCommerce shop's plugin secret;
    the view gets that shop (g.plugin_shop) and the raw body (g.plugin_body)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        handle = request.headers.get("X-RC-Shop", "")
        timestamp = request.headers.get("X-RC-Timestamp", "")
        signature = request.headers.get("X-RC-Signature", "")
        if not handle or not timestamp or not signature:
            return _json_error(401, "missing signature headers (X-RC-Shop, X-RC-Timestamp, X-RC-Signature)")
        body = _read_body()
        if body is None:
            return _json_error(413, f"the body may be at most {MAX_BODY} bytes")
        shop = _woo_shop(handle)
        secret = _plugin_secret(shop)
        try:
            # An unknown shop is checked against a throwaway secret: the same work and the same answer
            # as a wrong signature, so the answer does not tell which shops exist.
            signing.verify_request(secret or secrets.token_hex(16), timestamp=timestamp, signature=signature,
                                   method=request.method, path=request.path, body=body)
        except signing.SignatureError as exc:
            if str(exc) == "stale request":
                return _json_error(401, "stale request: the timestamp is more than 300 s away from the "
                                        "connector's clock (check the server's time)")
            return _json_error(401, "bad signature")
        if shop is None or secret is None:
            return _json_error(401, "bad signature")
        g.plugin_shop, g.plugin_body = shop, body
        return view(*args, **kwargs)
    return wrapper


@bp.get("/status")
@signed
def status():
    """The connection as the plugin's settings page shows it, from what connect.py and sync.py keep
    in shop.platform_data: `connection` ("connected" once the keys were checked and the webhooks set
    up; a shop without the key counts as connected when it is active and has keys),
    `connection_error`, `webhooks` ({topic: webhook id}) and `webhooks_checked_at`, `polled_at`
    (the last successful poll), else the backfill's `finished_at`."""
    shop: Shop = g.plugin_shop
    data = shop.platform_data or {}
    creds = credentials.load(shop)
    connected = bool(shop.active and creds is not None and creds.consumer_key and creds.consumer_secret
                     and data.get("connection", "connected") == "connected")
    backfill = data.get("backfill") if isinstance(data.get("backfill"), dict) else {}
    return jsonify(shop=shop.handle, connected=connected, portal_url=_portal_url(shop),
                   webhooks={"topics": data.get("webhooks") or {}, "checked_at": data.get("webhooks_checked_at")},
                   last_sync=data.get("polled_at") or backfill.get("finished_at"),
                   error=None if connected else data.get("connection_error"))


# --------------------------------------------------------------------------- the order's returns

def _state_label(state: str) -> str:
    from connector.admin.views import (
        STATE_LABELS,  # the merchant's words for each state, one source
    )
    return str(STATE_LABELS.get(state, state))


def _deduction_label(code: str, label: str) -> str:
    # The plan carries English labels; the merchant reads them in the shop's language.
    if code == "return_fee":
        return _("Return shipping fee")
    if code == "restocking_fee":
        return _("Restocking fee")
    return label


def _refund_json(refund: Refund | None) -> dict | None:
    if refund is None:
        return None
    return {"amount": str(refund.amount), "currency": refund.currency, "state": refund.state,
            "error": refund.error}


def _preview_json(ret: Return) -> dict | None:
    try:
        plan = services.refund_preview(ret)
    except (services.ServiceError, ValueError) as exc:  # e.g. a plan the policy cannot make
        log.info("no refund preview for return %s: %s", ret.id, exc)
        return None
    titles = {line.order_line_id: line.order_line.title for line in ret.lines}
    return {
        "total": str(plan.total), "currency": plan.currency,
        "lines": [{"title": titles.get(pl.order_line_id, pl.platform_line_id), "quantity": pl.quantity,
                   "amount": str(pl.amount)} for pl in plan.lines],
        "shipping": str(plan.shipping),
        "deductions": [{"label": _deduction_label(d.code, d.label), "amount": str(d.amount)} for d in plan.deductions],
    }


def _return_json(ret: Return) -> dict:
    refunds = list(db.session.scalars(select(Refund).where(Refund.shop_id == ret.shop_id, Refund.return_id == ret.id)
                                      .order_by(Refund.id.desc())))
    live = next((r for r in refunds if r.state in LIVE_REFUND_STATES), None)
    can_refund = ret.state in services.REFUNDABLE_STATES and live is None
    # After a refund the payment method could not make, the merchant may record one paid by hand.
    can_record_manual = can_refund and services.manual_refund_offered(ret, refunds[::-1])
    return {"id": ret.id, "rma": ret.rma, "state": ret.state, "state_label": _state_label(ret.state),
            "refund": _refund_json(live or (refunds[0] if refunds else None)), "can_refund": can_refund,
            "can_record_manual": can_record_manual,
            "refund_preview": _preview_json(ret) if can_refund else None}


@bp.get("/orders/<int:order_id>/returns")
@signed
def order_returns(order_id: int):
    shop: Shop = g.plugin_shop
    order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == str(order_id)))
    if order is None:
        return jsonify([])  # not synced (yet): it has no returns here
    returns = db.session.scalars(select(Return).where(Return.shop_id == shop.id, Return.order_id == order.id,
                                                      Return.state != lc.DRAFT).order_by(Return.id.desc()))
    with force_locale(shop.locale or "en"):
        return jsonify([_return_json(ret) for ret in returns])


# --------------------------------------------------------------------------------------- refund

@bp.post("/refund")
@signed
def refund():
    shop: Shop = g.plugin_shop
    try:
        data = json.loads(g.plugin_body or b"null")
    except (ValueError, UnicodeDecodeError):
        data = None
    return_id = data.get("return_id") if isinstance(data, dict) else None
    manual = data.get("manual", False) if isinstance(data, dict) else False
    if not isinstance(return_id, int) or isinstance(return_id, bool) or not isinstance(manual, bool):
        return _json_error(400, 'expected JSON {"return_id": <integer>, "manual": <true|false, optional>}')
    ret = services.get_return(shop, return_id)
    if ret is None or ret.state == lc.DRAFT:
        return _json_error(404, "no such return in this shop")
    with force_locale(shop.locale or "en"):
        try:
            # Exactly once: a second click, a retry or a race gets the same Refund row back.
            refund_row = services.request_refund(ret, actor=REFUND_ACTOR, manual=manual)
        except services.ServiceError as exc:
            return _json_error(409, exc.message)
    db.session.refresh(refund_row)  # with JOBS_IMMEDIATE the execution already ran and changed it
    return jsonify(state=refund_row.state, amount=str(refund_row.amount), currency=refund_row.currency,
                   error=refund_row.error, platform_refund_id=refund_row.platform_refund_id)
