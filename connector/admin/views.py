"""The merchant admin of a standalone shop: /admin/<shop-handle>/...

Sign-in is the shop's admin password (Shop.admin_password_hash); the session then holds that one
shop's id. Every page loads the shop from the URL and every query filters by its id: a merchant
signed in to one shop gets 404 for any other shop's pages and return ids. Actions are POST forms
(CSRF-checked by the app) that call the returns services, then redirect back (POST/redirect/GET).
"""
from __future__ import annotations

import hashlib
import hmac
import mimetypes
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, current_app, flash, g, redirect, render_template, request,
                   session, url_for)
from flask_babel import format_datetime, get_locale, gettext as _, lazy_gettext as _l, refresh
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload
from werkzeug.security import check_password_hash, generate_password_hash

from connector import db
from connector.admin.forms import (BrandingForm, LoginForm, PolicyForm, ReasonForm, RejectForm, method_label,
                                   parse_inspection, parse_methods, parse_received)
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Refund, Return, ReturnLine, ReturnReason, Shop
from connector.returns.money import quantize
from connector.returns.policy import ReturnPolicy, validate_policy_dict
from connector.returns.ports import METHODS

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates",
               static_folder="static", static_url_path="/static")

PER_PAGE = 25
# Sign-in attempts: per shop and address, and per shop over all addresses (a spread-out guesser).
LOGIN_LIMITS = ((10, timedelta(minutes=15), True), (100, timedelta(minutes=15), False))
PUBLIC_ENDPOINTS = {"admin.login", "admin.static"}
LIVE_REFUND_STATES = ("pending", "succeeded", "unknown")
RECEIVABLE = lc.WAITING_FOR_PARCEL | {lc.IN_TRANSIT}
GRADABLE = (lc.RECEIVED, lc.INSPECTED, lc.REFUNDED)

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
    g.admin_timezone = shop.timezone
    refresh()  # Flask-Babel caches locale and time zone per context; this shop's apply from here on
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
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


def _password_stamp(shop: Shop) -> str:
    """Changes whenever the password changes, ending the sessions signed in with the old one."""
    return hashlib.sha256((shop.admin_password_hash or "").encode()).hexdigest()[:16]


def _fresh_session() -> None:
    """Empty the session, and forget the CSRF token Flask-WTF cached for it on `g` (whose secret
    lived in the old session), so the next form gets a token that matches the new one."""
    session.clear()
    g.pop(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)


def _actor() -> str:
    return f"merchant:{session.get('admin_name') or 'admin'}"


def _shop() -> Shop:
    return g.admin_shop


def _return_or_404(return_id: int) -> Return:
    ret = services.get_return(_shop(), return_id)
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
    if parts.scheme or parts.netloc or not parts.path.startswith(f"/admin/{_shop().handle}/"):
        return None
    return target


def _manual_refunds(shop: Shop) -> bool:
    from connector.platforms.registry import adapter_for
    try:
        return adapter_for(shop).capabilities.manual_refunds_only
    except NotImplementedError:
        return False


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
            "method_label": method_label, "money": money, "grade_labels": GRADE_LABELS,
            "disposition_labels": DISPOSITION_LABELS, "refund_state_labels": REFUND_STATE_LABELS,
            "admin_name": session.get("admin_name"), "page_lang": str(get_locale() or "en")}


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
    shop = _shop()
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


# ============================================================================ returns list

FILTER_TABS = (("", _l("All")), (lc.REQUESTED, _l("To review")), (lc.IN_TRANSIT, _l("In transit")),
               (lc.RECEIVED, _l("To grade")), (lc.INSPECTED, _l("To refund")), (lc.REFUNDED, _l("Refunded")))


def _search(query, text: str):
    text = text.strip()[:255]
    if not text:
        return query
    rma = text.upper().removeprefix("R-").removeprefix("R").strip()
    if text.upper().startswith("R") and rma.isdigit():
        return query.where(Return.number == int(rma))
    folded = text.lower()
    terms = [Order.number == text.lstrip("#").strip(), Return.email.contains(folded, autoescape=True),
             Order.customer_name.ilike(f"%{_escape_like(text)}%", escape="\\")]
    if text.isdigit():
        terms.append(Return.number == int(text))
    return query.where(or_(*terms))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@bp.get("/<handle>/")
def returns():
    shop = _shop()
    state = request.args.get("state", "")
    if state not in lc.STATES or state == lc.DRAFT:
        state = ""
    q = request.args.get("q", "")
    try:
        page = max(1, min(int(request.args.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    query = (select(Return).join(Order, Order.id == Return.order_id)
             .where(Return.shop_id == shop.id, Order.shop_id == shop.id, Return.state != lc.DRAFT))
    if state:
        query = query.where(Return.state == state)
    query = _search(query, q)
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    rows = db.session.scalars(query.options(selectinload(Return.order), selectinload(Return.lines),
                                            selectinload(Return.refunds))
                              .order_by(Return.created_at.desc(), Return.id.desc())
                              .limit(PER_PAGE).offset((page - 1) * PER_PAGE)).all()
    counts = dict(db.session.execute(select(Return.state, func.count()).where(
        Return.shop_id == shop.id, Return.state != lc.DRAFT).group_by(Return.state)).all())
    pages = max(1, -(-total // PER_PAGE))
    return render_template("admin/returns.html", rows=rows, state=state, q=q, page=page, pages=pages,
                           total=total, counts=counts, tabs=FILTER_TABS, states=[s for s in lc.STATES if s != lc.DRAFT])


# ============================================================================ one return

def _describe(event) -> tuple[str, str]:
    """A timeline entry as (what happened, detail) in the admin's language."""
    data = event.data or {}
    amount = money(data["amount"], data.get("currency", "")) if data.get("amount") else ""
    if event.kind == "state":
        title = _("Status: %(state)s", state=STATE_LABELS.get(data.get("to"), data.get("to")))
        detail = [data.get("note") or ""]
        if data.get("tracking_number"):
            detail.append(_("Tracking number %(n)s", n=data["tracking_number"]))
        if data.get("method"):
            detail.append(method_label(data["method"]))
        return title, " · ".join(d for d in detail if d)
    if event.kind == "refund_requested":
        return _("Refund requested: %(amount)s", amount=amount), ""
    if event.kind == "refund":
        if data.get("manual"):
            return _("Refund recorded for manual payout: %(amount)s", amount=amount), ""
        return _("Refunded %(amount)s", amount=amount), data.get("platform_refund_id") or ""
    if event.kind == "refund_failed":
        return _("Refund failed"), data.get("error") or ""
    if event.kind == "inspection":
        parts = [f"{GRADE_LABELS.get(v.get('grade'), v.get('grade'))} · "
                 f"{DISPOSITION_LABELS.get(v.get('disposition'), v.get('disposition'))}"
                 for v in data.values() if isinstance(v, dict)]
        return _("Items graded"), "; ".join(parts)
    if event.kind == "withdrawal":
        return _("EU withdrawal declared by %(name)s", name=data.get("name", "")), data.get("statement", "")
    if event.kind == "shipment_failed":
        return _("The carrier refused the shipment"), data.get("error") or ""
    if event.kind == "shipment_retry":
        return _("Shipment requested again"), ""
    if event.kind == "label_voided":
        return _("Label voided"), ""
    if event.kind == "label_not_voided":
        return _("The label could not be voided"), data.get("error") or ""
    return event.kind.replace("_", " ").capitalize(), ", ".join(f"{k}: {v}" for k, v in data.items()
                                                               if isinstance(v, (str, int, float)))


def _actor_label(actor: str) -> str:
    if actor.startswith("merchant:"):
        return actor.split(":", 1)[1]
    return {"shopper": _("Shopper"), "system": _("System"), "carrier": _("Carrier")}.get(actor, actor)


def _render_return(ret: Return, *, errors: dict[str, str] | None = None, status: int = 200,
                   reject_form: RejectForm | None = None):
    shop = _shop()
    locale = str(get_locale() or "en")[:2]
    events = [(e, *_describe(e), _actor_label(e.actor)) for e in services.timeline(ret, public_only=False)]
    refunds = list(db.session.scalars(select(Refund).where(Refund.shop_id == shop.id, Refund.return_id == ret.id)
                                      .order_by(Refund.id)))
    live_refund = next((r for r in reversed(refunds) if r.state in LIVE_REFUND_STATES), None)
    plan, plan_error = None, None
    if ret.state in services.REFUNDABLE_STATES and live_refund is None:
        try:
            plan = services.refund_preview(ret)
        except (services.ServiceError, ValueError) as exc:
            plan_error = getattr(exc, "message", None) or str(exc)
    titles = {line.order_line_id: line.order_line.title for line in ret.lines}
    return render_template(
        "admin/return.html", ret=ret, order=ret.order, events=events, refunds=refunds, live_refund=live_refund,
        plan=plan, plan_error=plan_error, titles=titles, errors=errors or {}, locale=locale,
        manual=_manual_refunds(shop), shipment=ret.shipment, reject_form=reject_form or RejectForm(),
        can_approve=ret.state == lc.REQUESTED, can_receive=ret.state in RECEIVABLE,
        can_grade=ret.state in GRADABLE, can_cancel=ret.state in lc.CANCELLABLE,
        form=request.form if errors else {}), status


@bp.get("/<handle>/returns/<int:return_id>")
def return_page(return_id: int):
    return _render_return(_return_or_404(return_id))


def _back(ret: Return):
    return redirect(url_for("admin.return_page", return_id=ret.id))


def _refused(ret: Return, exc: Exception):
    """A service said no: say why on the page instead of failing."""
    db.session.rollback()
    if isinstance(exc, lc.IllegalTransition):
        flash(_("This is not possible while the return is %(state)s.",
                state=STATE_LABELS.get(exc.current, exc.current)), "critical")
    else:
        flash(getattr(exc, "message", str(exc)), "critical")
    return _back(ret)


@bp.post("/<handle>/returns/<int:return_id>/approve")
def approve(return_id: int):
    ret = _return_or_404(return_id)
    try:
        services.approve(ret, _actor())
    except (services.ServiceError, lc.IllegalTransition) as exc:
        return _refused(ret, exc)
    flash(_("Return %(rma)s approved.", rma=ret.rma), "success")
    return _back(ret)


@bp.post("/<handle>/returns/<int:return_id>/reject")
def reject(return_id: int):
    ret = _return_or_404(return_id)
    form = RejectForm()
    if not form.validate():
        return _render_return(ret, errors={"reject": _("Please keep the note under 2000 characters.")},
                              status=422, reject_form=form)
    try:
        services.reject(ret, _actor(), note=(form.note.data or "").strip())
    except (services.ServiceError, lc.IllegalTransition) as exc:
        return _refused(ret, exc)
    flash(_("Return %(rma)s rejected.", rma=ret.rma), "success")
    return _back(ret)


@bp.post("/<handle>/returns/<int:return_id>/cancel")
def cancel(return_id: int):
    ret = _return_or_404(return_id)
    try:
        services.cancel(ret, _actor())
    except (services.ServiceError, lc.IllegalTransition) as exc:
        return _refused(ret, exc)
    flash(_("Return %(rma)s cancelled.", rma=ret.rma), "success")
    return _back(ret)


@bp.post("/<handle>/returns/<int:return_id>/retry-shipment")
def retry_shipment(return_id: int):
    ret = _return_or_404(return_id)
    try:
        services.retry_shipment(ret, _actor())
    except (services.ServiceError, lc.IllegalTransition) as exc:
        return _refused(ret, exc)
    flash(_("The shipment was requested again."), "success")
    return _back(ret)


@bp.post("/<handle>/returns/<int:return_id>/receive")
def receive(return_id: int):
    ret = _return_or_404(return_id)
    quantities, errors = parse_received(request.form, ret.lines)
    if errors:
        return _render_return(ret, errors=errors, status=422)
    try:
        services.mark_received(ret, _actor(), quantities)
    except services.ValidationError as exc:
        db.session.rollback()
        return _render_return(_return_or_404(return_id), errors=exc.errors, status=422)
    except (services.ServiceError, lc.IllegalTransition) as exc:
        return _refused(ret, exc)
    flash(_("Return %(rma)s marked as received.", rma=ret.rma), "success")
    return _back(ret)


@bp.post("/<handle>/returns/<int:return_id>/inspect")
def inspect(return_id: int):
    ret = _return_or_404(return_id)
    results, errors = parse_inspection(request.form, ret.lines)
    if errors:
        return _render_return(ret, errors=errors, status=422)
    try:
        services.inspect(ret, _actor(), results)
    except services.ValidationError as exc:
        db.session.rollback()
        return _render_return(_return_or_404(return_id), errors=exc.errors, status=422)
    except (services.ServiceError, lc.IllegalTransition) as exc:
        return _refused(ret, exc)
    flash(_("Grading saved."), "success")
    return _back(ret)


@bp.post("/<handle>/returns/<int:return_id>/refund")
def refund(return_id: int):
    ret = _return_or_404(return_id)
    already = db.session.scalar(select(Refund).where(Refund.shop_id == ret.shop_id, Refund.return_id == ret.id,
                                                     Refund.state.in_(LIVE_REFUND_STATES)))
    if already is not None:
        # A second click, a second tab: the one refund stands; nothing new is made.
        flash(_("The refund for %(rma)s was already made; nothing more was done.", rma=ret.rma), "info")
        return _back(ret)
    expected = (request.form.get("expected_total") or "").strip()
    try:
        if expected and services.refund_preview(ret).total != Decimal(expected):
            flash(_("The refund amount has changed since the page was loaded. Please check it and click again."),
                  "warning")
            return _back(ret)
        made = services.request_refund(ret, _actor())
    except (services.ServiceError, lc.IllegalTransition, ArithmeticError, ValueError) as exc:
        return _refused(ret, exc)
    db.session.refresh(made)
    if made.state == "succeeded" and made.manual:
        flash(_("Recorded: pay out %(amount)s to the shopper yourself; no payment was sent.",
                amount=money(made.amount, made.currency)), "success")
    elif made.state == "succeeded":
        flash(_("Refunded %(amount)s to the shopper.", amount=money(made.amount, made.currency)), "success")
    elif made.state == "failed":
        flash(_("The refund failed: %(error)s", error=made.error or ""), "critical")
    else:
        flash(_("The refund of %(amount)s is on its way; this page shows when it is done.",
                amount=money(made.amount, made.currency)), "info")
    return _back(ret)


def _file(data: bytes, key: str, download_name: str, *, attachment: bool) -> Response:
    mimetype = mimetypes.guess_type(key)[0] or "application/octet-stream"
    if not mimetype.startswith("image/") and mimetype != "application/pdf":
        mimetype, attachment = "application/octet-stream", True  # never render unexpected content inline
    disposition = "attachment" if attachment else "inline"
    return Response(data, mimetype=mimetype, headers={
        "Content-Disposition": f'{disposition}; filename="{download_name}"',
        "Cache-Control": "private, no-store"})


@bp.get("/<handle>/returns/<int:return_id>/label")
def label(return_id: int):
    ret = _return_or_404(return_id)
    data = services.label_bytes(ret)
    if data is None:
        abort(404)
    return _file(data, ret.shipment.label_key, f"{ret.rma}-label.pdf", attachment=True)


@bp.get("/<handle>/returns/<int:return_id>/qr")
def qr(return_id: int):
    ret = _return_or_404(return_id)
    data = services.qr_bytes(ret)
    if data is None:
        abort(404)
    return _file(data, ret.shipment.qr_key, f"{ret.rma}-qr.png", attachment=False)


@bp.get("/<handle>/returns/<int:return_id>/photos/<int:line_id>/<kind>/<int:index>")
def photo(return_id: int, line_id: int, kind: str, index: int):
    """A shopper's (kind "shopper") or the warehouse's (kind "inspection") photo of a return line.

    The storage key comes from the line itself, never from the URL.
    """
    ret = _return_or_404(return_id)
    line = db.session.scalar(select(ReturnLine).where(ReturnLine.shop_id == ret.shop_id,
                                                      ReturnLine.return_id == ret.id, ReturnLine.id == line_id))
    if line is None or kind not in ("shopper", "inspection"):
        abort(404)
    keys = line.photos if kind == "shopper" else line.inspection_photos
    if not 0 <= index < len(keys or []):
        abort(404)
    storage = current_app.extensions["connector.storage"]
    key = keys[index]
    if not storage.exists(key):
        abort(404)
    return _file(storage.get(key), key, f"{ret.rma}-{line.id}-{index + 1}{_suffix(key)}", attachment=False)


def _suffix(key: str) -> str:
    dot = key.rfind(".")
    return key[dot:] if dot > key.rfind("/") else ""


# ============================================================================ settings

def _save_policy(values: dict) -> dict[str, str]:
    """Merge `values` into the stored policy and save it; return errors by field when it cannot be."""
    shop = _shop()
    merged = {**ReturnPolicy.from_dict(shop.policy or {}).to_dict(), **values}
    problems = validate_policy_dict(merged)
    if problems:
        errors: dict[str, str] = {}
        for problem in problems:
            name, _sep, message = problem.partition(": ")
            key = name.replace("fees.", "fee-").split(".")[0]
            errors[key] = f"{errors[key]} {message}" if key in errors else message
        return errors
    shop.policy = ReturnPolicy.from_dict(merged).to_dict()
    db.session.commit()
    return {}


def _reason_choices() -> list[tuple[str, str]]:
    locale = str(get_locale() or "en")[:2]
    reasons = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == _shop().id)
                                 .order_by(ReturnReason.position, ReturnReason.id)).all()
    return [(r.code, r.label(locale)) for r in reasons]


@bp.get("/<handle>/settings")
def settings():
    return redirect(url_for("admin.settings_policy"))


@bp.route("/<handle>/settings/policy", methods=["GET", "POST"])
def settings_policy():
    shop = _shop()
    form = PolicyForm()
    form.auto_approve_reason_codes.choices = _reason_choices()
    errors: dict[str, str] = {}
    if request.method == "GET":
        form.fill(ReturnPolicy.from_dict(shop.policy or {}).to_dict())
    elif form.validate_on_submit():
        errors = _save_policy(form.policy_values())
        if not errors:
            flash(_("Return policy saved."), "success")
            return redirect(url_for("admin.settings_policy"))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/settings_policy.html", form=form, errors=errors, tab="policy"), status


def _carrier_choices() -> dict[str, list[str]]:
    """For each method, the registered carrier backends that can perform it."""
    from connector.carriers.registry import available
    backends = available()
    return {method: [key for key, cls in backends.items() if cls.capabilities.serves(method)] for method in METHODS}


def _carrier_names() -> dict[str, str]:
    from connector.carriers.registry import available
    return {key: getattr(cls, "name", key) for key, cls in available().items()}


@bp.route("/<handle>/settings/methods", methods=["GET", "POST"])
def settings_methods():
    shop = _shop()
    policy = ReturnPolicy.from_dict(shop.policy or {})
    choices = _carrier_choices()
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        values, errors = parse_methods(request.form, choices)
        if not errors:
            errors = _save_policy(values)
        if not errors:
            flash(_("Methods and carriers saved."), "success")
            return redirect(url_for("admin.settings_methods"))
        status = 422
        rows = _posted_method_rows(request.form)
        fees = {m: request.form.get(f"fee-{m}", "") for m in METHODS}
        carriers = {m: request.form.get(f"carrier-{m}", "") for m in METHODS}
    else:
        ordered = sorted(policy.methods.items(), key=lambda item: (item[0] != "*", item[0]))
        rows = [(country, set(methods)) for country, methods in ordered]
        fees = {m: str(policy.fees.get(m, "0")) for m in METHODS}
        carriers = {m: policy.carriers.get(m, "") for m in METHODS}
    rows += [("", set())] * 2  # blank rows to add countries without JavaScript
    return render_template("admin/settings_methods.html", rows=rows, fees=fees, carriers=carriers,
                           choices=choices, carrier_names=_carrier_names(), methods=METHODS, errors=errors,
                           tab="methods"), status


def _posted_method_rows(form) -> list[tuple[str, set[str]]]:
    try:
        count = min(int(form.get("rows", "0")), 300)
    except ValueError:
        count = 0
    rows = []
    for i in range(count):
        country = (form.get(f"methods-{i}-country") or "").strip()
        if country:
            rows.append((country, {m for m in METHODS if form.get(f"methods-{i}-{m}")}))
    return rows


@bp.get("/<handle>/settings/reasons")
def settings_reasons():
    tree = _reason_tree(include_inactive=True)
    return render_template("admin/settings_reasons.html", tree=tree, tab="reasons",
                           locale=str(get_locale() or "en")[:2])


def _reason_tree(include_inactive: bool) -> list[tuple[ReturnReason, list[ReturnReason]]]:
    query = select(ReturnReason).where(ReturnReason.shop_id == _shop().id)
    if not include_inactive:
        query = query.where(ReturnReason.active.is_(True))
    reasons = db.session.scalars(query.order_by(ReturnReason.position, ReturnReason.id)).all()
    children: dict[int, list[ReturnReason]] = {}
    for reason in reasons:
        if reason.parent_id:
            children.setdefault(reason.parent_id, []).append(reason)
    return [(r, children.get(r.id, [])) for r in reasons if r.parent_id is None]


def _reason_or_404(reason_id: int) -> ReturnReason:
    reason = db.session.scalar(select(ReturnReason).where(ReturnReason.shop_id == _shop().id,
                                                          ReturnReason.id == reason_id))
    if reason is None:
        abort(404)
    return reason


def _parent_choices(exclude: ReturnReason | None) -> list[tuple[int, str]]:
    locale = str(get_locale() or "en")[:2]
    # One level of nesting: a reason can only go under a top-level reason, and one that has
    # children of its own stays top-level.
    if exclude is not None and db.session.scalar(select(func.count()).select_from(ReturnReason).where(
            ReturnReason.shop_id == _shop().id, ReturnReason.parent_id == exclude.id)):
        return [(0, _("— none (top level) —"))]
    tops = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == _shop().id,
                                                         ReturnReason.parent_id.is_(None))
                              .order_by(ReturnReason.position, ReturnReason.id)).all()
    return [(0, _("— none (top level) —"))] + [(r.id, r.label(locale)) for r in tops
                                               if exclude is None or r.id != exclude.id]


@bp.route("/<handle>/settings/reasons/new", methods=["GET", "POST"])
@bp.route("/<handle>/settings/reasons/<int:reason_id>", methods=["GET", "POST"])
def settings_reason(reason_id: int | None = None):
    shop = _shop()
    reason = _reason_or_404(reason_id) if reason_id is not None else None
    form = ReasonForm(obj=None)
    form.parent_id.choices = _parent_choices(reason)
    if request.method == "GET" and reason is not None:
        form.code.data = reason.code
        form.parent_id.data = reason.parent_id or 0
        for lang in ("en", "de", "es", "fr"):
            getattr(form, f"label_{lang}").data = (reason.labels or {}).get(lang, "")
        for name in ("comment_required", "photo_required", "shop_fault", "position", "active"):
            getattr(form, name).data = getattr(reason, name)
    if reason is not None:
        form.code.data = reason.code  # the code is fixed once made: reports and auto-approve rules use it
    if request.method == "POST" and form.validate_on_submit():
        duplicate = db.session.scalar(select(ReturnReason.id).where(
            ReturnReason.shop_id == shop.id, ReturnReason.code == form.code.data,
            ReturnReason.id != (reason.id if reason else -1)))
        if duplicate is not None:
            form.code.errors = [_("Another reason has this code.")]
        else:
            if reason is None:
                reason = ReturnReason(shop_id=shop.id, code=form.code.data)
                db.session.add(reason)
            reason.parent_id = form.parent_id.data or None
            reason.labels = form.labels()
            for name in ("comment_required", "photo_required", "shop_fault", "position", "active"):
                setattr(reason, name, getattr(form, name).data)
            db.session.commit()
            flash(_("Reason saved."), "success")
            return redirect(url_for("admin.settings_reasons"))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/settings_reason.html", form=form, reason=reason, tab="reasons"), status


@bp.post("/<handle>/settings/reasons/<int:reason_id>/toggle")
def toggle_reason(reason_id: int):
    reason = _reason_or_404(reason_id)
    reason.active = not reason.active
    db.session.commit()
    flash(_("Reason turned on.") if reason.active else _("Reason turned off: shoppers no longer see it."), "success")
    return redirect(url_for("admin.settings_reasons"))


@bp.route("/<handle>/settings/branding", methods=["GET", "POST"])
def settings_branding():
    shop = _shop()
    form = BrandingForm()
    if request.method == "GET":
        form.fill(shop)
    elif form.validate_on_submit():
        shop.branding = {**(shop.branding or {}), "logo_url": (form.logo_url.data or "").strip() or None,
                         "primary_color": form.primary_color.data.lower()}
        shop.support_email = (form.support_email.data or "").strip() or None
        shop.return_address = form.address()
        db.session.commit()
        flash(_("Branding and return address saved."), "success")
        return redirect(url_for("admin.settings_branding"))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/settings_branding.html", form=form, tab="branding"), status
