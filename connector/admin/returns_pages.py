"""The admin's return pages: the list (filter, search, pages), one return, and its actions.

Actions are POST forms calling the returns services; a refusal (wrong state, invalid input) is
shown on the page, never raised as a 500.
"""
from __future__ import annotations

import mimetypes
from decimal import Decimal

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext as _, lazy_gettext as _l
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload

from connector import db
from connector.admin.forms import RejectForm, method_label, parse_inspection, parse_received
from connector.admin.views import (DISPOSITION_LABELS, GRADE_LABELS, STATE_LABELS, actor, bp, current_shop, money,
                                   return_or_404)
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Refund, Return, ReturnLine, Shop

PER_PAGE = 25
LIVE_REFUND_STATES = ("pending", "succeeded", "unknown")
RECEIVABLE = lc.WAITING_FOR_PARCEL | {lc.IN_TRANSIT}
GRADABLE = (lc.RECEIVED, lc.INSPECTED, lc.REFUNDED)


def _manual_refunds(shop: Shop) -> bool:
    """True when the shop's platform cannot send money (standalone): refunds are recorded only."""
    from connector.platforms.registry import adapter_for
    try:
        return adapter_for(shop).capabilities.manual_refunds_only
    except NotImplementedError:
        return False


# ============================================================================ the list

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
    shop = current_shop()
    state = request.args.get("state", "")
    if state not in lc.STATES or state == lc.DRAFT:
        state = ""
    q = request.args.get("q", "")
    try:
        page = max(1, min(int(request.args.get("page", "1")), 10_000))
    except ValueError:
        page = 1
    # One order's returns (the Shopify admin's "View returns" link on an order lands here).
    order = None
    order_id = request.args.get("order", type=int)
    if order_id is not None:
        order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.id == order_id))
    query = (select(Return).join(Order, Order.id == Return.order_id)
             .where(Return.shop_id == shop.id, Order.shop_id == shop.id, Return.state != lc.DRAFT))
    if order_id is not None:
        query = query.where(Return.order_id == (order.id if order else -1))
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
                           total=total, counts=counts, tabs=FILTER_TABS, states=[s for s in lc.STATES if s != lc.DRAFT],
                           order=order, order_filter=order.id if order else None)


# ============================================================================ one return

# Shopify's ReturnStatus values, as the merchant reads them.
PLATFORM_STATUS_LABELS = {"REQUESTED": _l("requested"), "OPEN": _l("open"), "CLOSED": _l("closed"),
                          "DECLINED": _l("declined"), "CANCELED": _l("cancelled")}

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
    if event.kind == "shipment_stuck":
        return _("The carrier has not answered for 24 hours; still trying"), data.get("error") or ""
    if event.kind == "label_void_requested":
        return _("Cancellation asked from the carrier"), ""
    if event.kind == "label_pending":
        return _("The carrier makes the label later"), data.get("carrier_ref") or ""
    if event.kind == "parcel_delivered":
        return _("The carrier delivered the parcel"), data.get("tracking_number") or ""
    if event.kind == "platform_opened":
        return _("Created in the store's admin"), data.get("platform_id") or ""
    if event.kind == "platform_sync_failed":
        return _("The store refused an update"), data.get("error") or ""
    if event.kind == "platform_sync_retried":
        return _("Sent to the store again"), ""
    return event.kind.replace("_", " ").capitalize(), ", ".join(f"{k}: {v}" for k, v in data.items()
                                                               if isinstance(v, (str, int, float)))


def _actor_label(actor: str | None) -> str:
    actor = actor or ""
    if actor.startswith("merchant:shopify-user-"):  # a staff member in the Shopify admin (embedded)
        return _("Shopify staff (user %(id)s)", id=actor.rsplit("-", 1)[1])
    if actor.startswith("merchant:"):
        return actor.split(":", 1)[1]
    return {"shopper": _("Shopper"), "system": _("System"), "carrier": _("Carrier")}.get(actor, actor)


def _render_return(ret: Return, *, errors: dict[str, str] | None = None, status: int = 200,
                   reject_form: RejectForm | None = None):
    shop = current_shop()
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
    platform_error = next((e.data.get("error") for e in reversed(ret.events) if e.kind == "platform_sync_failed"), None)
    return render_template(
        "admin/return.html", ret=ret, order=ret.order, events=events, refunds=refunds, live_refund=live_refund,
        plan=plan, plan_error=plan_error, titles=titles, errors=errors or {}, locale=locale, actor_label=_actor_label,
        manual=_manual_refunds(shop), shipment=ret.shipment, reject_form=reject_form or RejectForm(),
        can_approve=ret.state == lc.REQUESTED, can_receive=ret.state in RECEIVABLE,
        can_grade=ret.state in GRADABLE, can_cancel=ret.state in lc.CANCELLABLE,
        platform_error=platform_error, platform_status_labels=PLATFORM_STATUS_LABELS,
        offer_manual=services.manual_refund_offered(ret, refunds),
        form=request.form if errors else {}), status


@bp.get("/<handle>/returns/<int:return_id>")
def return_page(return_id: int):
    return _render_return(return_or_404(return_id))


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


def _act(return_id: int, action, done):
    """Run an action on the shop's return; say what happened, why not, or which field is wrong."""
    ret = return_or_404(return_id)
    try:
        action(ret)
    except services.ValidationError as exc:
        db.session.rollback()
        return _render_return(return_or_404(return_id), errors=exc.errors, status=422)
    except (services.ServiceError, lc.IllegalTransition) as exc:
        return _refused(ret, exc)
    flash(done(ret), "success")
    return _back(ret)


def _act_on_form(return_id: int, parse, action, done):
    """A warehouse form: parse it against the return's lines, then `_act` with the values."""
    ret = return_or_404(return_id)
    values, errors = parse(request.form, ret.lines)
    if errors:
        return _render_return(ret, errors=errors, status=422)
    return _act(return_id, lambda r: action(r, values), done)


@bp.post("/<handle>/returns/<int:return_id>/approve")
def approve(return_id: int):
    return _act(return_id, lambda ret: services.approve(ret, actor()),
                lambda ret: _("Return %(rma)s approved.", rma=ret.rma))


@bp.post("/<handle>/returns/<int:return_id>/reject")
def reject(return_id: int):
    form = RejectForm()
    if not form.validate():
        return _render_return(return_or_404(return_id), reject_form=form, status=422,
                              errors={"reject": _("Please keep the note under 2000 characters.")})
    return _act(return_id, lambda ret: services.reject(ret, actor(), note=(form.note.data or "").strip()),
                lambda ret: _("Return %(rma)s rejected.", rma=ret.rma))


@bp.post("/<handle>/returns/<int:return_id>/cancel")
def cancel(return_id: int):
    return _act(return_id, lambda ret: services.cancel(ret, actor()),
                lambda ret: _("Return %(rma)s cancelled.", rma=ret.rma))


@bp.post("/<handle>/returns/<int:return_id>/retry-shipment")
def retry_shipment(return_id: int):
    return _act(return_id, lambda ret: services.retry_shipment(ret, actor()),
                lambda ret: _("The shipment was requested again."))


@bp.post("/<handle>/returns/<int:return_id>/retry-platform")
def retry_platform(return_id: int):
    return _act(return_id, lambda ret: services.retry_platform_sync(ret, actor()),
                lambda ret: _("Return %(rma)s is being sent to the store again.", rma=ret.rma))


@bp.post("/<handle>/returns/<int:return_id>/receive")
def receive(return_id: int):
    return _act_on_form(return_id, parse_received,
                        lambda ret, quantities: services.mark_received(ret, actor(), quantities),
                        lambda ret: _("Return %(rma)s marked as received.", rma=ret.rma))


@bp.post("/<handle>/returns/<int:return_id>/inspect")
def inspect(return_id: int):
    return _act_on_form(return_id, parse_inspection,
                        lambda ret, results: services.inspect(ret, actor(), results),
                        lambda ret: _("Grading saved."))


@bp.post("/<handle>/returns/<int:return_id>/refund")
def refund(return_id: int):
    ret = return_or_404(return_id)
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
        made = services.request_refund(ret, actor(), manual=request.form.get("manual") == "1")
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
    ret = return_or_404(return_id)
    data = services.label_bytes(ret)
    if data is None:
        abort(404)
    return _file(data, ret.shipment.label_key, f"{ret.rma}-label.pdf", attachment=True)


@bp.get("/<handle>/returns/<int:return_id>/qr")
def qr(return_id: int):
    ret = return_or_404(return_id)
    data = services.qr_bytes(ret)
    if data is None:
        abort(404)
    return _file(data, ret.shipment.qr_key, f"{ret.rma}-qr.png", attachment=False)


@bp.get("/<handle>/returns/<int:return_id>/photos/<int:line_id>/<kind>/<int:index>")
def photo(return_id: int, line_id: int, kind: str, index: int):
    """A shopper's (kind "shopper") or the warehouse's (kind "inspection") photo of a return line.

    The storage key comes from the line itself, never from the URL.
    """
    ret = return_or_404(return_id)
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
