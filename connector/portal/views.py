"""The shopper's returns portal: sign in, pick items, method, instructions, confirm, follow.

    /portal/<shop>/                         sign in (order number + email or postcode; or a link)
    /portal/<shop>/link                     POST: email me a link ; GET ?t=: open the link
    /portal/<shop>/orders                   the orders this shopper may return from
    /portal/<shop>/orders/<id>/items        step 2: items, quantities, reasons, comments, photos
    /portal/<shop>/orders/<id>/method       step 3: pickup, drop-off, ... and where the money goes
    /portal/<shop>/orders/<id>/instructions step 4: address and packing checklist
    /portal/<shop>/orders/<id>/summary      step 5: review and "Confirm return"
    /portal/<shop>/orders/<id>/discard      POST: the X (discard the draft)
    /portal/<shop>/returns/<rma>            status page (also opened by a signed status link)
    /portal/<shop>/returns/<rma>/label.pdf  the label (session or ?t= status link); /qr.png the QR code
    /portal/<shop>/withdraw                 EU withdrawal function (no sign-in needed)

Views stay thin: forms.py reads the input, services do the work, access.py says who may see
what (every order and return is looked up by shop id and checked against the session's grants).
"""
from __future__ import annotations

import io
import secrets
from datetime import timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel import Locale
from flask import (Blueprint, abort, current_app, flash, g, has_request_context, redirect, render_template,
                   request, send_file, url_for)
from flask_babel import format_currency, format_date, format_datetime, format_time, get_locale
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from connector import db, ratelimit
from connector.i18n import LANGUAGE_NAMES, LANGUAGES
from connector.portal import access, forms, photos, status, tokens
from connector.portal.branding import theme_for
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.context import runtime
from connector.returns.models import UsedToken

bp = Blueprint("portal", __name__, url_prefix="/portal", template_folder="templates",
               static_folder="static", static_url_path="/static")

# Rate limits (count, window): sign-in links per email and every sign-in or withdrawal lookup
# per client address and per order number. Module constants so that tests can lower them.
LINK_PER_EMAIL = (5, timedelta(minutes=15))
LOOKUPS_PER_ADDRESS = (30, timedelta(minutes=15))
LOOKUPS_PER_ORDER_NUMBER = (10, timedelta(minutes=15))


# =========================================================================== shop, locale, layout

@bp.url_value_preprocessor
def _pull_shop(endpoint, values):
    """Every portal URL starts with the shop's handle: load the shop, its language and zone."""
    g.portal_shop = None
    if not values or "shop_handle" not in values:
        return
    shop = services.get_shop(values.pop("shop_handle"))
    if shop is None:
        abort(404)
    g.portal_shop = shop
    g.shop_locale = shop.locale
    g.shop_timezone = _valid_zone(shop.timezone)


def _valid_zone(name: str | None) -> str | None:
    try:
        return name if name and ZoneInfo(name) else None
    except (ValueError, KeyError, OSError):
        return None


@bp.before_request
def _settle_language():
    # Evaluate the language now, so that a ?lang= choice is kept even when this answer is a redirect.
    if g.get("portal_shop") is not None:
        get_locale()


@bp.url_defaults
def _add_shop(endpoint, values):
    shop = g.get("portal_shop")
    if shop is not None and "shop_handle" not in values and \
            current_app.url_map.is_endpoint_expecting(endpoint, "shop_handle"):
        values["shop_handle"] = shop.handle


@bp.after_request
def _private(resp):
    # Pages show personal data (orders, addresses): never stored by shared caches or the browser.
    if request.endpoint != "portal.static":
        resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.app_context_processor
def _layout():
    """Context for base.html (every page that extends it): language, switcher, the shop's theme."""
    if not has_request_context():  # mails rendered by the worker have no request
        return {}
    ctx = {"page_lang": str(get_locale() or "en"), "language_links": _language_links()}
    shop = g.get("portal_shop")
    if shop is not None:
        ctx["theme"] = theme_for(shop, url_for("portal.start", shop_handle=shop.handle))
    return ctx


def _when(moment) -> str:
    """A date and time in the shop's zone, without seconds: "Nov 22, 2026, 14:05"."""
    return f"{format_date(moment, 'medium')}, {format_time(moment, 'short')}"


def _country_name(code: str | None) -> str:
    try:
        return Locale.parse(_locale()).territories.get((code or "").upper(), code or "")
    except (ValueError, TypeError):
        return code or ""


@bp.context_processor
def _helpers():
    return {"format_currency": format_currency, "format_date": format_date, "format_datetime": format_datetime,
            "when": _when, "country_name": _country_name,
            "method_name": status.method_name, "method_explanation": status.method_explanation,
            "state_name": status.state_name, "blocked_reason": status.blocked_reason,
            "signed_in": access.signed_in(g.portal_shop) if g.get("portal_shop") else False}


def _language_links():
    current = str(get_locale() or "en")
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    return [(code, LANGUAGE_NAMES[code], f"{request.path}?{urlencode(args + [('lang', code)])}", code == current)
            for code in LANGUAGES]


def _locale() -> str:
    return str(get_locale() or "en")


def _client_address() -> str:
    return request.remote_addr or "unknown"


def _limit_lookups(shop, order_number: str | None = None, email: str | None = None) -> None:
    """Count a sign-in or withdrawal lookup; 429 past the limits."""
    limits = [(ratelimit.key_for("portal-address", _client_address()), *LOOKUPS_PER_ADDRESS)]
    if order_number is not None:
        limits.append((ratelimit.key_for(f"portal-order:{shop.id}", order_number.lstrip("#")),
                       *LOOKUPS_PER_ORDER_NUMBER))
    if email is not None:
        limits.append((ratelimit.key_for(f"portal-link:{shop.id}", email), *LINK_PER_EMAIL))
    ratelimit.enforce(*limits)


def _int_or_none(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


# =========================================================================== sign in

def _render_start(signin_form=None, link_form=None, *, error: str | None = None, code: int = 200):
    return render_template("portal/signin.html", signin_form=signin_form or forms.SignInForm(),
                           link_form=link_form or forms.LinkForm(), error=error, step=1), code


@bp.get("/<shop_handle>/")
def start():
    if access.signed_in(g.portal_shop) and not request.args.get("switch"):
        return redirect(url_for(".orders"))
    return _render_start()


@bp.post("/<shop_handle>/")
def signin():
    """Sign in with order number + email or postcode: grants that one order."""
    form = forms.SignInForm()
    if not form.validate_on_submit():
        return _render_start(form, code=422)
    _limit_lookups(g.portal_shop, order_number=form.order_number.data)
    order = services.find_order_for_login(g.portal_shop, form.order_number.data, form.contact.data)
    if order is None:
        return _render_start(form, error=_("We could not find an order with this number and email or postcode. "
                                           "Please check both and try again."), code=422)
    access.sign_in(g.portal_shop, order.email, [order])
    return redirect(url_for(".items", order_id=order.id))


@bp.post("/<shop_handle>/link")
def request_link():
    """Email a sign-in link. The answer is the same whether or not the email has orders."""
    form = forms.LinkForm()
    if not form.validate_on_submit():
        return _render_start(link_form=form, code=422)
    email = form.email.data
    _limit_lookups(g.portal_shop, email=email)
    known = services.orders_for_email(g.portal_shop, email, limit=1)
    link = tokens.signin_link(g.portal_shop, email)  # made either way: the same work for known and unknown
    if known:
        # Through the queue: mail is an outside call and must not run in (or time) the request.
        runtime.enqueue("send_signin_link", shop_id=g.portal_shop.id, email=email, link=link, locale=_locale())
    return redirect(url_for(".link_sent"))


@bp.get("/<shop_handle>/link-sent")
def link_sent():
    return render_template("portal/link_sent.html", step=1)


def _link_error():
    return _render_start(error=_("This sign-in link has expired or was already used. Ask for a new one below."),
                         code=400)


@bp.get("/<shop_handle>/link")
def open_link():
    """Show a sign-in link's Continue button; the link is only spent by the button's POST.

    Mail scanners (e.g. Outlook Safe Links) open links before the shopper does; a GET that
    spent the link would sign nobody in and leave the shopper with a used link.
    """
    token = request.args.get("t", "")[:2048]
    try:
        tokens.read_signin_token(g.portal_shop, token)
    except tokens.TokenError:
        return _link_error()
    return render_template("portal/link_open.html", token=token, step=1)


@bp.post("/<shop_handle>/link/open")
def use_link():
    """Spend the sign-in link and grant the email's recent orders."""
    try:
        email = tokens.spend_signin_token(g.portal_shop, request.form.get("t", "")[:2048])
    except tokens.TokenError:
        return _link_error()
    access.sign_in(g.portal_shop, email, services.orders_for_email(g.portal_shop, email))
    return redirect(url_for(".orders"))


@bp.post("/<shop_handle>/signout")
def signout():
    access.sign_out(g.portal_shop)
    flash(_("You are signed out."), "info")
    return redirect(url_for(".start"))


@bp.get("/<shop_handle>/orders")
def orders():
    if not access.signed_in(g.portal_shop):
        return redirect(url_for(".start"))
    found = access.orders(g.portal_shop)
    return render_template("portal/orders.html", orders=found, step=1,
                           returns=access.submitted_returns(g.portal_shop, found), email=access.email(g.portal_shop))


# =========================================================================== the draft's steps

def _reasons():
    tree = services.reasons_tree(g.portal_shop)
    ids = {r.id for parent, children in tree for r in (children or [parent])}
    flags = {r.id: r for parent, children in tree for r in [parent, *children]}
    return tree, ids, flags


def _store_uploads(entries, errors) -> None:
    """Store new photos of chosen lines; a bad file becomes that line's error (others are kept)."""
    config = current_app.config["CONNECTOR"]
    storage = current_app.extensions["connector.storage"]
    for entry in entries:
        if not entry.quantity:
            continue
        for upload in entry.uploads:
            try:
                entry.photos.append(photos.store_photo(storage, g.portal_shop.id, upload,
                                                       max_bytes=config.max_photo_bytes))
            except photos.PhotoError as exc:
                errors.setdefault(f"line-{entry.line_id}-photos", str(exc))
        entry.uploads = []


@bp.route("/<shop_handle>/orders/<int:order_id>/items", methods=["GET", "POST"])
def items(order_id: int):
    shop = g.portal_shop
    order = access.require_order(shop, order_id)
    options = services.line_options(shop, order)
    tree, reason_ids, reason_flags = _reasons()
    draft = access.draft_for(shop, order)
    errors: dict[str, str] = {}
    if request.method == "GET":
        entries = forms.entries_from_draft(draft, options)
    else:
        config = current_app.config["CONNECTOR"]
        entries, errors = forms.parse_items(request.form, request.files, options,
                                            photo_key=photos.photo_key_pattern(shop.id),
                                            max_photos=config.max_photos_per_line, reason_ids=reason_ids)
        _store_uploads(entries, errors)
        if not errors:
            draft = draft or services.start_draft(shop, order, email=access.email(shop) or order.email,
                                                  locale=_locale())
            access.remember_draft(shop, order, draft)
            choices = [services.ItemChoice(order_line_id=e.line_id, quantity=e.quantity, reason_id=e.reason_id,
                                           comment=e.comment, photos=e.photos) for e in entries if e.quantity]
            try:
                services.set_items(draft, choices)
            except services.ValidationError as exc:
                errors = exc.errors
            except services.ServiceError as exc:
                errors = {"items": exc.message}
            else:
                return redirect(url_for(".method", order_id=order.id))
    policy = services.policy_of(shop)
    rows = list(zip(options, entries))
    return render_template(
        "portal/items.html", order=order, rows=rows, tree=tree, reason_flags=reason_flags, errors=errors,
        draft=draft, reason_required=policy.reason_required, step=2, locale=_locale(),
        max_photos=current_app.config["CONNECTOR"].max_photos_per_line,
        existing=access.submitted_returns(shop, [order]).get(order.id, []),
    ), (422 if errors else 200)


def _draft_at(order, need: str):
    """The draft for `order` if it has reached step `need`; else a redirect to the step it lacks."""
    ret = access.draft_for(g.portal_shop, order)
    if ret is None or not ret.lines:
        return None, redirect(url_for(".items", order_id=order.id))
    if need in ("instructions", "summary") and not ret.method:
        return None, redirect(url_for(".method", order_id=order.id))
    if need == "summary" and not ret.checklist:
        return None, redirect(url_for(".instructions", order_id=order.id))
    return ret, None


@bp.route("/<shop_handle>/orders/<int:order_id>/method", methods=["GET", "POST"])
def method(order_id: int):
    order = access.require_order(g.portal_shop, order_id)
    ret, elsewhere = _draft_at(order, "method")
    if elsewhere:
        return elsewhere
    options = services.method_options(ret)
    policy = services.policy_of(g.portal_shop)
    errors: dict[str, str] = {}
    chosen, refund_method = ret.method, ret.refund_method
    if request.method == "POST":
        chosen, refund_method, errors = forms.parse_method(request.form, [o.method for o in options],
                                                           store_credit=policy.store_credit)
        if not errors:
            try:
                services.set_method(ret, chosen, refund_method)
            except services.ValidationError as exc:
                errors = exc.errors
            except services.ServiceError as exc:
                errors = {exc.field or "method": exc.message}
            else:
                return redirect(url_for(".instructions", order_id=order.id))
    if chosen is None and len(options) == 1:
        chosen = options[0].method
    return render_template("portal/method.html", order=order, ret=ret, options=options, chosen=chosen,
                           refund_method=refund_method or "original", store_credit=policy.store_credit,
                           errors=errors, step=3), (422 if errors else 200)


@bp.route("/<shop_handle>/orders/<int:order_id>/instructions", methods=["GET", "POST"])
def instructions(order_id: int):
    order = access.require_order(g.portal_shop, order_id)
    ret, elsewhere = _draft_at(order, "instructions")
    if elsewhere:
        return elsewhere
    checklist = services.checklist_items(ret)
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = forms.AddressForm(prefix="address")
        ticked = forms.parse_checklist(request.form, checklist)
        valid = form.validate_on_submit()
        errors = {form[name].name: message for name, message in forms.field_errors(form).items()}
        if len(ticked) != len(checklist):
            errors["checklist"] = _("Please confirm every point of the checklist.")
        if valid and not errors:
            try:
                services.set_instructions(ret, form.address(), ticked)
            except services.ValidationError as exc:
                errors = {form[k].name if k in form else k: v for k, v in exc.errors.items()}
            except services.ServiceError as exc:
                errors = {exc.field or "checklist": exc.message}
            else:
                return redirect(url_for(".summary", order_id=order.id))
    else:
        address = {**(order.shipping_address or {}), **(ret.address or {})}
        address["country"] = str(address.get("country") or order.country or g.portal_shop.country).upper()
        form = forms.AddressForm(prefix="address", data={k: address.get(k) or "" for k in
                                                         ("name", "line1", "line2", "postcode", "city",
                                                          "region", "country", "phone")})
        ticked = list(ret.checklist or [])
    return render_template("portal/instructions.html", order=order, ret=ret, form=form, checklist=checklist,
                           ticked=ticked, errors=errors, step=4), (422 if errors else 200)


@bp.get("/<shop_handle>/orders/<int:order_id>/summary")
def summary(order_id: int):
    order = access.require_order(g.portal_shop, order_id)
    ret, elsewhere = _draft_at(order, "summary")
    if elsewhere:
        return elsewhere
    option = next((o for o in services.method_options(ret) if o.method == ret.method), None)
    return render_template("portal/summary.html", order=order, ret=ret, option=option, step=5,
                           estimate=services.refund_preview(ret), locale=_locale())


@bp.post("/<shop_handle>/orders/<int:order_id>/confirm")
def confirm(order_id: int):
    """Submit the draft. A second submit of the same form finds the same, single return."""
    order = access.require_order(g.portal_shop, order_id)
    ret = access.return_of_order(g.portal_shop, order, _int_or_none(request.form.get("return_id"))) \
        or access.draft_for(g.portal_shop, order)
    if ret is None:
        flash(_("This return is no longer open. Please start again."), "error")
        return redirect(url_for(".orders"))
    if ret.state == lc.DRAFT:
        try:
            ret = services.confirm(ret)
        except services.ServiceError as exc:
            flash(exc.message, "error")
            step = {"items": ".items", "method": ".method", "checklist": ".instructions"}.get(exc.field, ".items")
            return redirect(url_for(step, order_id=order.id))
    access.forget_draft(g.portal_shop, order)
    access.grant_return(g.portal_shop, ret)
    return redirect(url_for(".confirmation", rma=ret.rma))


@bp.post("/<shop_handle>/orders/<int:order_id>/discard")
def discard(order_id: int):
    """The X: throw the draft away (photos included) and go back to the orders."""
    order = access.require_order(g.portal_shop, order_id)
    ret = access.draft_for(g.portal_shop, order)
    if ret is not None:
        services.discard_draft(ret)
    access.forget_draft(g.portal_shop, order)
    flash(_("Your return was discarded. Nothing was sent."), "info")
    return redirect(url_for(".orders"))


# =========================================================================== after confirmation

def _render_status(ret, *, confirmed: bool = False, tracking_form=None, address_form=None, errors=None,
                   code: int = 200):
    events = services.timeline(ret, public_only=True)
    history = [(e, text) for e in events if (text := status.describe(e, ret))]
    shipment = ret.shipment
    carrier_says = None
    if services.address_to_correct(ret):
        failures = [e for e in events if e.kind == "shipment_failed"]
        carrier_says = (failures[-1].data or {}).get("shopper_message") if failures else None
        address_form = address_form or forms.AddressForm(prefix="address", data={
            k: (ret.address or {}).get(k) or "" for k in forms.AddressForm.FIELDS})
    return render_template(
        "portal/status.html", ret=ret, order=ret.order, shipment=shipment, confirmed=confirmed,
        milestones=status.milestones(ret, events), history=history,
        has_label=bool(shipment and shipment.label_key),
        has_qr=bool(shipment and shipment.qr_key) and ret.method == "dropoff",
        can_cancel=ret.state in lc.CANCELLABLE and ret.state != lc.DRAFT,
        can_track=ret.state == lc.AWAITING_SHIPMENT and shipment is not None and shipment.method == "selfship",
        tracking_form=tracking_form or forms.TrackingForm(), errors=errors or {},
        address_form=address_form if carrier_says else None, carrier_says=carrier_says,
        return_address=g.portal_shop.return_address or {}, locale=_locale(),
    ), code


@bp.get("/<shop_handle>/returns/<rma>/confirmed")
def confirmation(rma: str):
    return _render_status(access.require_return(g.portal_shop, rma), confirmed=True)


def _granted_by_link(rma: str, token: str):
    """The return `rma` if `token` is a valid status link for it (and grant it); else None."""
    ret = access.find_return(g.portal_shop, rma)
    try:
        granted = tokens.read_status_token(g.portal_shop, token[:2048])
    except tokens.TokenError:
        return None
    if ret is None or granted != ret.id:
        return None
    access.grant_return(g.portal_shop, ret)
    return ret


@bp.get("/<shop_handle>/returns/<rma>")
def return_status(rma: str):
    token = request.args.get("t")
    if token is not None:
        ret = _granted_by_link(rma, token)
        if ret is None:
            return render_template("error.html", code=404, message=_(
                "This link is not valid or has expired. Sign in to see your returns.")), 404
        # Drop the token from the address bar (and from any Referer).
        return redirect(url_for(".return_status", rma=ret.rma))
    return _render_status(access.require_return(g.portal_shop, rma))


@bp.get("/<shop_handle>/returns/<rma>/label.pdf")
def label(rma: str):
    """The label, to the shopper whose session holds the return or to a status link (?t=)."""
    token = request.args.get("t")
    ret = _granted_by_link(rma, token) if token is not None else None
    if ret is None:
        ret = access.require_return(g.portal_shop, rma)
    data = services.label_bytes(ret)
    if not data:
        abort(404)
    return send_file(io.BytesIO(data), mimetype="application/pdf", as_attachment=True,
                     download_name=f"return-label-{ret.rma}.pdf")


@bp.get("/<shop_handle>/returns/<rma>/qr.png")
def qr(rma: str):
    ret = access.require_return(g.portal_shop, rma)
    data = services.qr_bytes(ret)
    if not data:
        abort(404)
    return send_file(io.BytesIO(data), mimetype="image/png", download_name=f"return-qr-{ret.rma}.png")


@bp.post("/<shop_handle>/returns/<rma>/cancel")
def cancel(rma: str):
    ret = access.require_return(g.portal_shop, rma)
    had_label = bool(ret.shipment and (ret.shipment.label_key or ret.shipment.tracking_number))
    try:
        services.cancel(ret, actor="shopper")
    except services.ServiceError as exc:
        flash(exc.message, "error")
        return redirect(url_for(".return_status", rma=ret.rma))
    voided = status.label_voided(ret)
    if voided is True:
        flash(_("Your return was cancelled and the label was voided."), "success")
    elif voided is False or had_label:
        flash(_("Your return was cancelled. The label could not be voided yet; please do not use it."), "info")
    else:
        flash(_("Your return was cancelled."), "success")
    return redirect(url_for(".return_status", rma=ret.rma))


@bp.post("/<shop_handle>/returns/<rma>/address")
def correct_address(rma: str):
    """After a carrier refused the sender address: the corrected one, and the label asked for again."""
    ret = access.require_return(g.portal_shop, rma)
    form = forms.AddressForm(prefix="address")
    if not form.validate_on_submit():
        return _render_status(ret, address_form=form, code=422)
    try:
        services.correct_address(ret, form.address(), actor="shopper")
    except services.ValidationError as exc:
        return _render_status(ret, address_form=form, code=422,
                              errors={form[k].name if k in form else k: v for k, v in exc.errors.items()})
    except services.ServiceError as exc:
        flash(exc.message, "error")
        return redirect(url_for(".return_status", rma=ret.rma))
    flash(_("Thank you. We asked the carrier again with the corrected address."), "success")
    return redirect(url_for(".return_status", rma=ret.rma))


@bp.post("/<shop_handle>/returns/<rma>/tracking")
def tracking(rma: str):
    ret = access.require_return(g.portal_shop, rma)
    form = forms.TrackingForm()
    if not form.validate_on_submit():
        return _render_status(ret, tracking_form=form, code=422)
    try:
        services.set_selfship_tracking(ret, form.tracking_number.data, form.carrier_name.data)
    except services.ValidationError as exc:
        return _render_status(ret, tracking_form=form, errors=exc.errors, code=422)
    except services.ServiceError as exc:
        flash(exc.message, "error")
        return redirect(url_for(".return_status", rma=ret.rma))
    flash(_("Thank you. We will follow your parcel with this tracking number."), "success")
    return redirect(url_for(".return_status", rma=ret.rma))


# =========================================================================== EU withdrawal

@bp.route("/<shop_handle>/withdraw", methods=["GET", "POST"])
def withdraw():
    """Withdrawal, first page: name, order number, email. No reason, no sign-in."""
    form = forms.WithdrawalForm()
    if request.method == "GET" and not form.email.data and access.email(g.portal_shop):
        form.email.data = access.email(g.portal_shop)
    if not form.validate_on_submit():
        return render_template("portal/withdraw.html", form=form), (422 if request.method == "POST" else 200)
    _limit_lookups(g.portal_shop, order_number=form.order_number.data)
    order = services.find_order_for_login(g.portal_shop, form.order_number.data, form.email.data)
    if order is None:
        return render_template("portal/withdraw.html", form=form, error=_(
            "We could not match this order number and email. Please check both and try again.")), 422
    access.set_pending_withdrawal(g.portal_shop, {"order": order.id, "name": form.name.data, "email": form.email.data,
                                           "nonce": secrets.token_hex(16)})
    return redirect(url_for(".withdraw_confirm"))


@bp.route("/<shop_handle>/withdraw/confirm", methods=["GET", "POST"])
def withdraw_confirm():
    """Withdrawal, second page: the statement, the items (all by default), "Confirm withdrawal"."""
    pending = access.pending_withdrawal(g.portal_shop)
    order = services.get_order(g.portal_shop, pending["order"]) if pending else None
    if order is None:
        return redirect(url_for(".withdraw"))
    options = services.line_options(g.portal_shop, order, withdrawal=True)
    chosen = {o.line.id: o.returnable_quantity for o in options}
    errors: dict[str, str] = {}
    if request.method == "POST":
        if db.session.get(UsedToken, _withdrawal_jti(pending)) is not None:
            return _withdrawal_already_recorded(order, pending)
        line_quantities, chosen, errors = forms.parse_withdrawal_lines(request.form, options)
        if not errors:
            done = _record_withdrawal(order, pending, line_quantities, errors)
            if done is not None:
                return done
    return render_template("portal/withdraw_confirm.html", pending=pending, order=order, options=options,
                           chosen=chosen, errors=errors, statement=_(services.WITHDRAWAL_STATEMENT),
                           ), (422 if errors else 200)


def _withdrawal_jti(pending) -> str:
    return f"withdrawal:{pending.get('nonce', '')}"[:64]


def _withdrawal_already_recorded(order, pending):
    """This confirmation page was submitted before (double click, second tab): show that one."""
    ret = access.latest_withdrawal(g.portal_shop, order, pending["email"])
    if ret is None:
        return redirect(url_for(".withdraw"))
    return _withdrawal_done(ret)


def _record_withdrawal(order, pending, line_quantities, errors):
    """Create the withdrawal once per confirmation page: its nonce is spent in the same commit."""
    db.session.add(UsedToken(jti=_withdrawal_jti(pending)))
    try:
        db.session.flush()
    except IntegrityError:  # a concurrent submit of the same page got there first
        db.session.rollback()
        return _withdrawal_already_recorded(order, pending)
    try:
        ret = services.create_withdrawal(g.portal_shop, order, name=pending["name"], email=pending["email"],
                                         line_quantities=line_quantities, locale=_locale())
    except services.ValidationError as exc:
        db.session.rollback()
        errors.update(exc.errors)
        return None
    except services.ServiceError as exc:
        db.session.rollback()
        errors["items"] = exc.message
        return None
    return _withdrawal_done(ret)


def _withdrawal_done(ret):
    access.clear_pending_withdrawal(g.portal_shop)
    access.grant_return(g.portal_shop, ret)
    return redirect(url_for(".withdrawal_received", rma=ret.rma))


@bp.get("/<shop_handle>/withdraw/<rma>")
def withdrawal_received(rma: str):
    ret = access.require_return(g.portal_shop, rma)
    if not ret.is_withdrawal:
        abort(404)
    statement = next((e for e in services.timeline(ret, public_only=True) if e.kind == "withdrawal"), None)
    data = statement.data if statement is not None else {}
    return render_template("portal/withdraw_done.html", ret=ret, order=ret.order, data=data,
                           received_at=statement.at if statement is not None else ret.confirmed_at,
                           statement=_(data.get("statement") or services.WITHDRAWAL_STATEMENT))
