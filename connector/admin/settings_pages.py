"""The admin's settings: return policy, methods and carriers, reasons, branding and return address.

The policy pages merge what they edit into Shop.policy and check the whole result with
`returns.policy.validate_policy_dict` before saving; errors are shown beside their fields.
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, gettext as _
from sqlalchemy import func, select
from wtforms.fields.choices import SelectChoice

from connector import db
from connector.admin.forms import BrandingForm, PolicyForm, ReasonForm, parse_methods
from connector.admin.views import bp, current_shop
from connector.returns.models import ReturnReason
from connector.returns.policy import ReturnPolicy, validate_policy_dict
from connector.returns.ports import METHODS

def _save_policy(values: dict) -> dict[str, str]:
    """Merge `values` into the stored policy and save it; return errors by field when it cannot be."""
    shop = current_shop()
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


def _reason_choices() -> list[SelectChoice]:
    locale = str(get_locale() or "en")[:2]
    reasons = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == current_shop().id)
                                 .order_by(ReturnReason.position, ReturnReason.id)).all()
    return [SelectChoice(r.code, r.label(locale)) for r in reasons]


@bp.get("/<handle>/settings")
def settings():
    return redirect(url_for("admin.settings_policy"))


@bp.route("/<handle>/settings/policy", methods=["GET", "POST"])
def settings_policy():
    shop = current_shop()
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
    shop = current_shop()
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
    query = select(ReturnReason).where(ReturnReason.shop_id == current_shop().id)
    if not include_inactive:
        query = query.where(ReturnReason.active.is_(True))
    reasons = db.session.scalars(query.order_by(ReturnReason.position, ReturnReason.id)).all()
    children: dict[int, list[ReturnReason]] = {}
    for reason in reasons:
        if reason.parent_id:
            children.setdefault(reason.parent_id, []).append(reason)
    return [(r, children.get(r.id, [])) for r in reasons if r.parent_id is None]


def _reason_or_404(reason_id: int) -> ReturnReason:
    reason = db.session.scalar(select(ReturnReason).where(ReturnReason.shop_id == current_shop().id,
                                                          ReturnReason.id == reason_id))
    if reason is None:
        abort(404)
    return reason


def _parent_choices(exclude: ReturnReason | None) -> list[SelectChoice]:
    locale = str(get_locale() or "en")[:2]
    # One level of nesting: a reason can only go under a top-level reason, and one that has
    # children of its own stays top-level.
    if exclude is not None and db.session.scalar(select(func.count()).select_from(ReturnReason).where(
            ReturnReason.shop_id == current_shop().id, ReturnReason.parent_id == exclude.id)):
        return [SelectChoice(0, _("— none (top level) —"))]
    tops = db.session.scalars(select(ReturnReason).where(ReturnReason.shop_id == current_shop().id,
                                                         ReturnReason.parent_id.is_(None))
                              .order_by(ReturnReason.position, ReturnReason.id)).all()
    return [SelectChoice(0, _("— none (top level) —"))] + [SelectChoice(r.id, r.label(locale)) for r in tops
                                                           if exclude is None or r.id != exclude.id]


@bp.route("/<handle>/settings/reasons/new", methods=["GET", "POST"])
@bp.route("/<handle>/settings/reasons/<int:reason_id>", methods=["GET", "POST"])
def settings_reason(reason_id: int | None = None):
    shop = current_shop()
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
    shop = current_shop()
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
