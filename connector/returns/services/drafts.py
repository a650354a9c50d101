"""The shopper's draft return: items, method, instructions, discard."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import N_, _, runtime
from connector.returns.models import Order, Return, ReturnLine, ReturnReason, Shop
from connector.returns.money import ZERO, quantize
from connector.returns.policy import allowed_methods, return_fee
from connector.returns.services.base import MAX_COMMENT, ServiceError, ValidationError, _shop, now_utc, policy_of
from connector.returns.services.orders import line_options


@dataclass
class ItemChoice:
    order_line_id: int
    quantity: int
    reason_id: int | None
    comment: str = ""
    photos: list[str] = field(default_factory=list)


@dataclass
class MethodOption:
    method: str
    carrier: str
    connection_id: int | None  # the shop's carrier connection; None for the built-in backends
    fee: Decimal
    currency: str
    pickup_date: date | None
    pickup_window: str | None
    qr: bool
    prints_label: bool


def start_draft(shop: Shop, order: Order, *, email: str, locale: str) -> Return:
    """The open draft for this order and email, or a new one."""
    if order.shop_id != shop.id:
        raise ServiceError(_("This order cannot be found."))
    email = email.strip().lower()
    draft = session.scalar(select(Return).where(Return.shop_id == shop.id, Return.order_id == order.id,
                                                Return.email == email, Return.state == lc.DRAFT)
                           .order_by(Return.id.desc()))
    if draft is None:
        draft = Return(shop_id=shop.id, order_id=order.id, email=email, state=lc.DRAFT, currency=order.currency,
                       locale=locale, address=dict(order.shipping_address or {}))
        session.add(draft)
    else:
        draft.locale = locale
    session.commit()
    return draft


def _require_draft(ret: Return) -> None:
    if ret.state != lc.DRAFT:
        raise ServiceError(_("This return has already been submitted."))


def set_items(ret: Return, choices: list[ItemChoice]) -> None:
    """Replace the draft's items; raises ValidationError keyed by field, changing nothing."""
    _require_draft(ret)
    shop = _shop(ret)
    policy = policy_of(shop)
    options = {o.line.id: o for o in line_options(shop, ret.order)}
    reasons = {r.id: r for r in session.scalars(select(ReturnReason).where(
        ReturnReason.shop_id == shop.id, ReturnReason.active.is_(True)))}
    parents = {r.parent_id for r in reasons.values() if r.parent_id}
    errors: dict[str, str] = {}
    chosen = [c for c in choices if c.quantity]
    if not chosen:
        errors["items"] = _("Choose at least one item to return.")
    for c in chosen:
        key = f"line-{c.order_line_id}"
        option = options.get(c.order_line_id)
        if option is None:
            errors["items"] = _("One of the chosen items is not part of this order.")
            continue
        if option.blocked or c.quantity < 0 or c.quantity > option.returnable_quantity:
            errors[f"{key}-quantity"] = _("You can return at most %(n)s of this item.", n=option.returnable_quantity)
        reason = reasons.get(c.reason_id) if c.reason_id else None
        if c.reason_id and (reason is None or reason.id in parents):
            errors[f"{key}-reason"] = _("Choose a reason from the list.")
        elif reason is None and policy.reason_required:
            errors[f"{key}-reason"] = _("Choose a reason for this item.")
        if len(c.comment or "") > MAX_COMMENT:
            errors[f"{key}-comment"] = _("Please keep the comment under %(n)s characters.", n=MAX_COMMENT)
        elif reason is not None and reason.comment_required and not (c.comment or "").strip():
            errors[f"{key}-comment"] = _("Please describe the problem.")
        if reason is not None and reason.photo_required and not c.photos:
            errors[f"{key}-photos"] = _("Please add a photo of the problem.")
    if errors:
        raise ValidationError(errors)
    ret.lines.clear()
    session.flush()
    for c in chosen:
        ret.lines.append(ReturnLine(shop_id=ret.shop_id, order_line_id=c.order_line_id, quantity=c.quantity,
                                    reason_id=c.reason_id, comment=(c.comment or "").strip(),
                                    photos=list(c.photos)))
    session.flush()
    if ret.method:  # Back keeps every choice: keep the method while it is offered, at today's fee
        offered = {o.method: o for o in method_options(ret)}
        if ret.method in offered:
            ret.fee = offered[ret.method].fee
        else:
            ret.method, ret.carrier, ret.carrier_connection_id, ret.checklist = None, None, None, []
    session.commit()


def _shop_fault(ret: Return) -> bool:
    return any(line.reason is not None and line.reason.shop_fault for line in ret.lines)


def _country(ret: Return) -> str:
    return ((ret.address or {}).get("country") or ret.order.country or _shop(ret).country).upper()


# What the shopper is told before booking when a backend names no window of its own (`pickup_window`).
DEFAULT_PICKUP_WINDOW = "09:00-18:00"


def pickup_day(shop: Shop, country: str, now: datetime | None = None, *, region: str | None = None,
               cutoff_hour: int = 24) -> date:
    """The next working day at the pickup address (its country's and region's public holidays, the
    shop's closed days), one later when the carrier's cut-off hour has passed in the shop's time."""
    from connector.carriers.calendar import next_working_day

    extra = shop.policy.get("closed_days", []) if shop.policy else []
    closed = [date.fromisoformat(d) for d in extra if isinstance(d, str)]
    kwargs = dict(after=now or now_utc(), closed_days=closed, tz=shop.timezone, cutoff_hour=cutoff_hour)
    try:
        return next_working_day(country or shop.country, region=region or None, **kwargs)
    except ValueError:  # no calendar for that region or country: the country's, else the shop's
        try:
            return next_working_day(country or shop.country, **kwargs)
        except ValueError:
            return next_working_day(shop.country, **kwargs)


def _carrier_for(shop: Shop, policy, method: str, country: str, conns: list):
    """(backend key, connection, backend) of what performs `method` for `country`, or None; the
    backend is the connection's instance, or the built-in backend's class (connection None).
    A shop with carrier connections (`conns`, its active ones) uses them (selfship needs none);
    one without uses the built-in backends its policy names."""
    if conns and method != "selfship":
        serving = runtime.carriers.serving(shop, method, country, conns)
        if serving is None:
            return None
        return serving.connection.backend, serving.connection, serving.backend
    carrier_key = policy.carriers.get(method)
    if not carrier_key:
        return None
    try:
        return carrier_key, None, runtime.carrier_class(carrier_key)
    except KeyError:
        return None


def method_options(ret: Return) -> list[MethodOption]:
    """The methods the shop allows for the shopper's country that its carriers can perform."""
    shop = _shop(ret)
    policy = policy_of(shop)
    country = _country(ret)
    fault = _shop_fault(ret)
    options = []
    region = (ret.address or {}).get("region") or None
    conns = runtime.carriers.of_shop(shop) if runtime.carriers is not None else []  # one query per call
    for method in allowed_methods(policy, country):
        found = _carrier_for(shop, policy, method, country, conns)
        if found is None:
            continue
        carrier_key, conn, backend = found
        caps = backend.capabilities
        if not caps.serves(method):
            continue
        pickup = method in ("pickup", "carrier_label")
        cutoff = runtime.carriers.cutoff_hour(conn) if conn is not None else 24
        options.append(MethodOption(
            method=method, carrier=carrier_key, connection_id=conn.id if conn is not None else None,
            fee=quantize(return_fee(policy, method, shop_fault=fault), ret.currency), currency=ret.currency,
            pickup_date=pickup_day(shop, country, region=region, cutoff_hour=cutoff) if pickup else None,
            pickup_window=(getattr(backend, "pickup_window", None) or DEFAULT_PICKUP_WINDOW) if pickup else None,
            qr=method == "dropoff" and caps.qr,
            prints_label=method in ("pickup", "dropoff")))
    return options


def set_method(ret: Return, method: str, refund_method: str = "original") -> None:
    _require_draft(ret)
    if not ret.lines:
        raise ServiceError(_("Choose the items first."), field="items")
    options = {o.method: o for o in method_options(ret)}
    if method not in options:
        raise ValidationError({"method": _("Choose one of the offered return methods.")})
    if refund_method not in ("original", "store_credit") or (
            refund_method == "store_credit" and not policy_of(_shop(ret)).store_credit):
        raise ValidationError({"refund_method": _("Choose where your money should go.")})
    ret.method = method
    ret.carrier = options[method].carrier
    ret.carrier_connection_id = options[method].connection_id
    ret.fee = options[method].fee
    ret.refund_method = refund_method
    ret.checklist = []
    session.commit()


CHECKLISTS: dict[str, tuple[tuple[str, str], ...]] = {
    "pickup": (("packed", N_("The items are packed securely, in their original packaging where possible.")),
               ("label_attached", N_("The return label is printed and attached to the parcel.")),
               ("ready", N_("The parcel will be ready at the pickup address on the pickup day."))),
    "dropoff": (("packed", N_("The items are packed securely, in their original packaging where possible.")),
                ("label_attached", N_("The return label is attached, or the QR code is ready on my phone.")),
                ("drop_off", N_("I will take the parcel to a drop-off point within the return deadline."))),
    "carrier_label": (("packed", N_("The items are packed securely, in their original packaging where possible.")),
                      ("no_label", N_("No label needed: the driver brings it. I will not attach a label myself.")),
                      ("ready", N_("The parcel will be ready at the pickup address on the pickup day."))),
    "selfship": (("packed", N_("The items are packed securely, in their original packaging where possible.")),
                 ("address", N_("I will write the shop's return address on the parcel.")),
                 ("tracking", N_("I will keep the receipt and enter the tracking number here."))),
}


def checklist_items(ret: Return) -> list[tuple[str, str]]:
    return [(code, _(text)) for code, text in CHECKLISTS.get(ret.method or "", ())]


# region: state / province / Bundesland code, optional; pickups follow its public holidays.
ADDRESS_FIELDS = {"name": 255, "line1": 255, "line2": 255, "postcode": 32, "city": 128, "region": 64, "country": 2,
                  "phone": 40}


def validate_address(address: dict[str, Any]) -> dict[str, str]:
    """Clean an address in place; return field errors keyed "address-<field>"."""
    errors = {}
    for name, limit in ADDRESS_FIELDS.items():
        value = str(address.get(name) or "").strip()
        if len(value) > limit:
            errors[f"address-{name}"] = _("This is too long.")
        address[name] = value[:limit]
    for required in ("name", "line1", "postcode", "city", "country"):
        if not address[required] and f"address-{required}" not in errors:
            errors[f"address-{required}"] = _("This field is required.")
    address["country"] = address["country"].upper()
    if address["country"] and not re.fullmatch(r"[A-Z]{2}", address["country"]):
        errors["address-country"] = _("Choose a country.")
    return errors


def country_problem(ret: Return, address: dict[str, Any]) -> str | None:
    """Why the return's method cannot be sent from `address` (another country than the method was
    chosen for, which its carrier does not serve), or None."""
    if (address.get("country") or "").upper() == _country(ret):
        return None
    before, ret.address = ret.address, address
    try:
        offered = {o.method for o in method_options(ret)}
    finally:
        ret.address = before
    if ret.method in offered:
        return None
    return _("The chosen return method is not available from this country. Go back and choose another method.")


def set_instructions(ret: Return, address: dict[str, Any], checklist: list[str]) -> None:
    _require_draft(ret)
    if not ret.method:
        raise ServiceError(_("Choose a return method first."), field="method")
    address = {k: address.get(k, "") for k in ADDRESS_FIELDS}
    errors = validate_address(address)
    missing = [code for code, _text in CHECKLISTS[ret.method] if code not in checklist]
    if missing:
        errors["checklist"] = _("Please confirm every point of the checklist.")
    if not errors and (problem := country_problem(ret, address)):
        errors["country"] = problem
    if errors:
        raise ValidationError(errors)
    ret.address = address
    ret.checklist = [code for code, _text in CHECKLISTS[ret.method]]
    session.commit()


def discard_draft(ret: Return) -> None:
    """The X: a draft is deleted with its photos; a submitted return is never discarded."""
    _require_draft(ret)
    photos = [key for line in ret.lines for key in line.photos]
    session.delete(ret)
    session.commit()
    for key in photos:
        if runtime.storage is not None:
            runtime.storage.delete(key)


def _next_number(shop_id: int) -> int:
    return session.execute(update(Shop).where(Shop.id == shop_id).values(return_seq=Shop.return_seq + 1)
                           .returning(Shop.return_seq)).scalar_one()


def _claim(ret: Return, **values) -> bool:
    """Claim a draft for confirmation with a conditional UPDATE: true for exactly one caller."""
    result = session.execute(update(Return).where(Return.id == ret.id, Return.confirmed_at.is_(None))
                             .values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


def estimated_value(ret: Return) -> Decimal:
    total = ZERO
    for line in ret.lines:
        ol = line.order_line
        per_unit = (ol.unit_price * ol.quantity - ol.discount_total) / ol.quantity
        total += per_unit * line.quantity
    return quantize(total, ret.currency)
