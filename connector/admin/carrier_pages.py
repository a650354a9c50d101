"""The admin's carrier accounts: connect a carrier backend, check its credentials, choose the
methods it serves per destination country and the return address per country.

What a backend needs is its class's `settings_fields`; the form is built from them. Secrets are
password inputs that are never filled back in: left empty on an edit, the stored one is kept.
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from connector import db
from connector.admin.forms import method_label
from connector.admin.views import bp, current_shop
from connector.carriers import connections
from connector.carriers.registry import available
from connector.returns.models import CarrierConnection, Shipment
from connector.returns.policy import ReturnPolicy

ADDRESS_FIELDS = ("name", "line1", "line2", "postcode", "city", "region", "country", "phone", "email")
BLANK_ADDRESS_ROWS = 2
BUILT_IN = ("sandbox", "selfship")  # the demo's and "ship it yourself": nothing to connect


def _connectable() -> dict[str, type]:
    return {key: cls for key, cls in available().items() if key not in BUILT_IN or key == "sandbox"}


def _connection_or_404(connection_id: int) -> CarrierConnection:
    conn = connections.get(current_shop(), connection_id)
    if conn is None:
        abort(404)
    return conn


def _countries(text: str) -> list[str]:
    return [c.strip().upper() for c in (text or "").replace(";", ",").replace(" ", ",").split(",") if c.strip()]


def _posted_addresses(form) -> dict[str, dict[str, str]]:
    out = {}
    for i in range(min(int(form.get("address_rows", "0") or 0), 50)):
        key = (form.get(f"address-{i}-for") or "").strip().upper()
        if key:
            out[key] = {f: (form.get(f"address-{i}-{f}") or "").strip() for f in ADDRESS_FIELDS}
    return out


def _capabilities(conn: CarrierConnection | None, cls: type):
    """What this account can do: its backend instance's (settings may switch things on or off),
    else the backend class's."""
    if conn is not None:
        try:
            return connections.backend_of(conn).capabilities
        except (KeyError, ValueError):
            pass
    return cls.capabilities


@bp.get("/<handle>/settings/carriers")
def settings_carriers():
    shop = current_shop()
    return render_template("admin/settings_carriers.html", connections=connections.of_shop(shop, active_only=False),
                           backends=_connectable(), tab="carriers")


@bp.route("/<handle>/settings/carriers/new/<backend>", methods=["GET", "POST"])
@bp.route("/<handle>/settings/carriers/<int:connection_id>", methods=["GET", "POST"])
def settings_carrier(backend: str | None = None, connection_id: int | None = None):
    shop = current_shop()
    conn = _connection_or_404(connection_id) if connection_id is not None else None
    key = conn.backend if conn is not None else backend
    cls = _connectable().get(key or "")
    if cls is None:
        abort(404)
    fields = connections.fields_of(key)
    error = None
    if request.method == "POST":
        form = request.form
        try:
            cutoff = form.get("cutoff_hour", "").strip()
            saved = connections.save(
                shop, key, {f.name: form.get(f"field-{f.name}", "") for f in fields},
                name=form.get("name", ""), test_mode=bool(form.get("test_mode")),
                methods={m: _countries(form.get(f"method-{m}", "")) for m in connections.CARRIER_METHODS},
                return_addresses=_posted_addresses(form), cutoff_hour=int(cutoff) if cutoff else None,
                connection=conn)
            saved.active = bool(form.get("active")) if conn is not None else True
            db.session.commit()
        except (connections.ConnectionInvalid, ValueError) as exc:
            db.session.rollback()
            error = str(exc)
        else:
            flash(_("Carrier account saved. Check its credentials to be sure the carrier accepts them."), "success")
            return redirect(url_for("admin.settings_carrier", connection_id=saved.id))
    values = dict(conn.settings or {}) if conn is not None else {}
    stored_secrets = set(connections.stored_secret_names(conn)) if conn is not None else set()
    addresses = sorted((conn.return_addresses or {}).items(), key=lambda kv: (kv[0] != "*", kv[0])) if conn else []
    addresses += [("", {})] * BLANK_ADDRESS_ROWS
    address_labels = {"name": _("Name"), "line1": _("Street and number"), "line2": _("Address line 2"),
                      "postcode": _("Postcode"), "city": _("City"), "region": _("Region"), "country": _("Country"),
                      "phone": _("Phone"), "email": _("Email")}
    allowed = {m for methods in ReturnPolicy.from_dict(shop.policy or {}).methods.values() for m in methods}
    switched_off = [method_label(m) for m in (conn.methods if conn is not None else {}) if m not in allowed]
    return render_template(
        "admin/settings_carrier.html", conn=conn, address_labels=address_labels, stored_secrets=stored_secrets,
        switched_off=switched_off,
        capabilities=_capabilities(conn, cls), backend_key=key, backend_cls=cls, fields=fields, values=values,
        methods=connections.CARRIER_METHODS, addresses=addresses, address_fields=ADDRESS_FIELDS, error=error,
        webhook_url=url_for("carrier_webhooks.receive", token=conn.webhook_token, _external=True)
        if conn is not None and cls.capabilities.tracking_webhook else None,
        tab="carriers"), (422 if error else 200)


@bp.post("/<handle>/settings/carriers/<int:connection_id>/check")
def check_carrier(connection_id: int):
    conn = _connection_or_404(connection_id)
    result = connections.check(conn)
    if result.accepted:
        flash(_("The carrier accepted the credentials."), "success")
    elif result.unreachable:
        flash(_("The carrier could not be reached; try again later: %(error)s", error=result.message), "critical")
    else:
        flash(_("The carrier refused the credentials: %(error)s", error=result.message), "critical")
    return redirect(url_for("admin.settings_carrier", connection_id=conn.id))


@bp.post("/<handle>/settings/carriers/<int:connection_id>/delete")
def delete_carrier(connection_id: int):
    conn = _connection_or_404(connection_id)
    used = db.session.scalar(select(func.count()).select_from(Shipment).where(Shipment.connection_id == conn.id))
    if used:
        # Its parcels still need it for tracking and cancelling: it only stops being offered.
        conn.active = False
        flash(_("Carrier account switched off: it still has parcels to track."), "success")
    else:
        db.session.delete(conn)
        flash(_("Carrier account removed."), "success")
    db.session.commit()
    return redirect(url_for("admin.settings_carriers"))
