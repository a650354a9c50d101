"""The merchant admin of a standalone shop: /admin/<shop-handle>/...

Sign-in is the shop's admin password (Shop.admin_password_hash); the session then holds that one
shop's id. Every page loads the shop from the URL and every query filters by its id: a merchant
signed in to one shop gets 404 for any other shop's pages and return ids. Actions are POST forms
(CSRF-checked by the app) that call the returns services, then redirect back (POST/redirect/GET).

Embedded mode: a Shopify shop's admin is also served inside the Shopify admin's iframe, where
no cookie works. There an App Bridge session token for the URL's shop authenticates each request
instead of the password session (connector.platforms.shopify.embedded_mode: token checks, the
bounce page, frame policy, links that keep shop/host, notices across redirects).
"""
from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import format_datetime, get_locale, gettext as _, lazy_gettext as _l, refresh
from flask_wtf.csrf import CSRFError
from werkzeug.security import check_password_hash, generate_password_hash

from connector.admin.forms import LoginForm, method_label, shipment_status_label, tracking_status_label
from connector.i18n import LANGUAGE_NAMES
from connector.platforms.shopify import embedded_mode
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Return, Shop
from connector.returns.money import quantize

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates",
               static_folder="static", static_url_path="/static")

# Sign-in attempts: per shop and address, and per shop over all addresses (a spread-out guesser).
LOGIN_LIMITS = ((10, timedelta(minutes=15), True), (100, timedelta(minutes=15), False))
PUBLIC_ENDPOINTS = {"admin.login", "admin.static"}

# Compared against when the shop has no password, so a missing password costs the same time.
_NO_PASSWORD_HASH = generate_password_hash("no password is set for this shop")

STATE_LABELS = {
    lc.DRAFT: _l("Draft"), lc.REQUESTED: _l("Requested"), lc.APPROVED: _l("Approved"),
    lc.REJECTED: _l("Rejected"), lc.LABEL_READY: _l("Label ready"), lc.AWAITING_PICKUP: _l("Awaiting pickup"),
    lc.AWAITING_SHIPMENT: _l("Awaiting shipment"), lc.IN_TRANSIT: _l("In transit"), lc.RECEIVED: _l("Received"),
    lc.INSPECTED: _l("Inspected"), lc.REFUNDED: _l("Refunded"), lc.CLOSED: _l("Closed"),
    lc.CANCELLED: _l("Cancelled"),
}
# Polaris badge tones: what needs the merchant's attention stands out.
STATE_TONES = {
    lc.REQUESTED: "attention", lc.APPROVED: "info", lc.LABEL_READY: "info", lc.AWAITING_PICKUP: "info",
    lc.AWAITING_SHIPMENT: "info", lc.IN_TRANSIT: "info", lc.RECEIVED: "warning", lc.INSPECTED: "warning",
    lc.REFUNDED: "success", lc.CLOSED: "neutral", lc.REJECTED: "critical", lc.CANCELLED: "neutral",
}
GRADE_LABELS = {"A": _l("A – as new, back to stock"), "B": _l("B – can be refurbished"),
                "C": _l("C – cannot be resold")}
DISPOSITION_LABELS = {"restock": _l("Restock"), "refurbish": _l("Refurbish"), "dispose": _l("Dispose"),
                      "missing": _l("Missing")}
REFUND_STATE_LABELS = {"pending": _l("Pending"), "succeeded": _l("Succeeded"), "failed": _l("Failed"),
                       "unknown": _l("Checking")}


# ============================================================================ shop, session, helpers

@bp.url_value_preprocessor
def _pull_handle(endpoint, values):
    g.admin_handle = (values or {}).pop("handle", None)


@bp.url_defaults
def _add_handle(endpoint, values):
    shop = getattr(g, "admin_shop", None)
    if shop is not None and "handle" not in values and endpoint != "admin.static":
        values["handle"] = shop.handle
    embedded_mode.url_defaults(endpoint, values)


@bp.before_request
def _load_shop():
    g.admin_shop = None
    if request.endpoint == "admin.static":
        return None
    shop = services.get_shop(g.admin_handle or "")
    if shop is None:
        abort(404)
    g.admin_shop = shop
    g.shop_locale = shop.locale
    g.shop_timezone = _valid_zone(shop.timezone)
    refresh()  # Flask-Babel caches locale and time zone per context; this shop's apply from here on
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if embedded_mode.wants_embedded():
        # Inside the Shopify admin: the session token, not the password session, says who this is.
        return embedded_mode.authenticate_admin(shop)
    signed_in = session.get("admin_shop_id")
    if signed_in is None:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    if signed_in != shop.id or not hmac.compare_digest(session.get("admin_pw", ""), _password_stamp(shop)):
        # Signed in to another shop (or the password has changed since): nothing here exists for you.
        if signed_in == shop.id:
            _fresh_session()
            return redirect(url_for("admin.login"))
        abort(404)
    return None


def _valid_zone(name: str | None) -> str | None:
    """The shop's zone when it exists (a bad value shows UTC instead of failing every page)."""
    try:
        return name if name and ZoneInfo(name) else None
    except (ValueError, KeyError, OSError):
        return None


def _password_stamp(shop: Shop) -> str:
    """Changes whenever the password changes, ending the sessions signed in with the old one."""
    return hashlib.sha256((shop.admin_password_hash or "").encode()).hexdigest()[:16]


def _fresh_session() -> None:
    """Empty the session, and forget the CSRF token Flask-WTF cached for it on `g` (whose secret
    lived in the old session), so the next form gets a token that matches the new one."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


@bp.after_request
def _embedded_response(resp):
    return embedded_mode.after_request(resp)


@bp.errorhandler(CSRFError)
def _csrf_refused(error):
    """A POST without a CSRF token. Inside the Shopify admin the cause is a missing or expired
    session token (there is no cookie there): say so, in a page the admin may frame."""
    shop = services.get_shop(g.get("admin_handle") or "")
    if shop is not None and shop.platform == "shopify" and shop.domain and embedded_mode.wants_embedded():
        if embedded_mode.verified_session() is not None:  # a valid token, of another shop
            return render_template("error.html", code=404, message=_("This page does not exist.")), 404
        return embedded_mode.unauthenticated(shop.domain)
    return render_template("error.html", code=400, message=_(
        "This form has expired or was sent from elsewhere. Please go back, reload and try again.")), 400


def actor() -> str:
    """Who the timeline names for what the signed-in merchant does (in the Shopify admin: the
    staff member the session token names)."""
    embedded = embedded_mode.current()
    if embedded is not None:
        return embedded.actor
    return f"merchant:{session.get('admin_name') or 'admin'}"


def current_shop() -> Shop:
    """The shop of this admin URL (loaded, and access checked, before every view)."""
    return g.admin_shop


def return_or_404(return_id: int) -> Return:
    """This shop's submitted return `return_id`; any other shop's (or a draft) is a 404."""
    ret = services.get_return(current_shop(), return_id)
    if ret is None or ret.state == lc.DRAFT:
        abort(404)
    return ret


def money(amount, currency: str) -> str:
    """An amount the way the refund wording shows it: 123.45 EUR."""
    return f"{quantize(Decimal(amount), currency)} {currency}"


def _safe_next(target: str | None) -> str | None:
    """Only a path inside this shop's admin is followed after sign-in (no open redirect)."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(f"/admin/{current_shop().handle}/"):
        return None
    return target


@bp.app_template_filter("admin_time")
def _admin_time(value, fmt: str = "medium"):
    """A UTC datetime (or ISO-8601 text, as tracking events store it) in the shop's time zone."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
    return format_datetime(value, fmt) if value else ""


@bp.context_processor
def _context():
    return {"shop": getattr(g, "admin_shop", None), "state_labels": STATE_LABELS, "state_tones": STATE_TONES,
            "method_label": method_label, "shipment_status_label": shipment_status_label,
            "tracking_status_label": tracking_status_label, "money": money, "grade_labels": GRADE_LABELS,
            "disposition_labels": DISPOSITION_LABELS, "refund_state_labels": REFUND_STATE_LABELS,
            "admin_name": session.get("admin_name"), "page_lang": str(get_locale() or "en"),
            "language_names": LANGUAGE_NAMES, "embedded": embedded_mode.current(),
            "app_bridge_src": embedded_mode.APP_BRIDGE_SRC}


# ============================================================================ sign-in

def _login_allowed(shop: Shop) -> bool:
    from connector.ratelimit import hit
    address = request.remote_addr or "unknown"
    # Every key is counted, even when one is already over, so one cannot hide behind the other.
    results = [hit(f"admin-login:{shop.id}" + (f":{address}" if per_address else ""), limit=limit, window=window)
               for limit, window, per_address in LOGIN_LIMITS]
    return all(results)


@bp.route("/<handle>/login", methods=["GET", "POST"])
def login():
    shop = current_shop()
    form = LoginForm()
    status = 200
    if request.method == "POST":
        if not _login_allowed(shop):
            form.password.errors = [_("Too many attempts. Please wait 15 minutes and try again.")]
            return render_template("admin/login.html", form=form), 429
        if form.validate_on_submit():
            stored = shop.admin_password_hash
            matches = check_password_hash(stored or _NO_PASSWORD_HASH, form.password.data)
            if matches and stored:
                _fresh_session()  # nothing from before the sign-in carries over
                session["admin_shop_id"] = shop.id
                session["admin_pw"] = _password_stamp(shop)
                session["admin_name"] = (form.name.data or "").strip()[:80] or None
                return redirect(_safe_next(request.args.get("next")) or url_for("admin.returns"))
            form.password.errors = [_("This password is not right.")]
            status = 401
        else:
            status = 422
    return render_template("admin/login.html", form=form), status


@bp.post("/<handle>/logout")
def logout():
    _fresh_session()
    flash(_("You are signed out."), "info")
    return redirect(url_for("admin.login"))


# Route modules register on `bp`; imported last because they use the helpers above.
from connector.admin import carrier_pages, returns_pages, settings_pages  # noqa: E402,F401
