"""Use cases of the returns domain: what the portal, the admin, the API and the jobs call.

Each use case is one unit of work: it reads and writes through `connector.db.session`, scoped to
one shop, commits, and only then hands outside work (carrier, platform, mail) to the queue through
`context.runtime.enqueue` (DESIGN principle 1: the database is the truth, the queue only wakes
workers). The job bodies at the end (`fulfil_shipment`, `execute_refund`, ...) make the outside
calls through the ports and record the outcome.
"""
from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.context import N_, _, runtime
from connector.returns.models import (Event, Order, OrderLine, Refund, Return, ReturnLine, ReturnReason,
                                      Shipment, Shop)
from connector.returns.money import ZERO, quantize
from connector.returns.policy import (ReturnPolicy, allowed_methods, line_eligibility, return_fee,
                                      should_auto_approve)
from connector.returns.ports import (Address, CarrierError, CarrierNotSupported, CarrierRejected,
                                     CarrierRetryable, OrderData, ParcelItem, PlatformError, RefundPlan,
                                     RefundPlanLine, ShipmentRequest)
from connector.returns.refunds import LineInput, plan_refund

# How long the database waits for an outside step before the reconciler re-drives it.
STEP_DEADLINE = timedelta(minutes=10)
MAX_COMMENT = 2000
GRADES = ("A", "B", "C")
DISPOSITIONS = ("restock", "refurbish", "dispose", "missing")
# Returns that hold units of an order line (drafts, cancelled and rejected ones hold none).
_HOLDING_STATES = tuple(s for s in lc.STATES if s not in (lc.DRAFT, lc.CANCELLED, lc.REJECTED))


class ServiceError(Exception):
    """A use case refused; `message` is translated and fit to show the user."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationError(ServiceError):
    """Input errors keyed by field name."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(next(iter(errors.values())) if errors else "invalid")
        self.errors = errors


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# ============================================================================ shops and orders

def get_shop(handle: str) -> Shop | None:
    if not handle or len(handle) > 64:
        return None
    return session.scalar(select(Shop).where(Shop.handle == handle, Shop.active.is_(True)))


def policy_of(shop: Shop) -> ReturnPolicy:
    return ReturnPolicy.from_dict(shop.policy or {})


def get_return(shop: Shop, return_id: int) -> Return | None:
    """The return `return_id` if it belongs to `shop`."""
    return session.scalar(select(Return).where(Return.shop_id == shop.id, Return.id == return_id))


def get_return_by_number(shop: Shop, number: int) -> Return | None:
    return session.scalar(select(Return).where(Return.shop_id == shop.id, Return.number == number))


def get_order(shop: Shop, order_id: int) -> Order | None:
    return session.scalar(select(Order).where(Order.shop_id == shop.id, Order.id == order_id))


def normalise_postcode(value: str) -> str:
    return re.sub(r"[\s-]", "", value or "").upper()[:32]


def upsert_order(shop: Shop, data: OrderData) -> Order:
    """Store `data` as the shop's copy of the order; older data never overwrites newer."""
    order = session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == data.platform_id))
    if order is not None and order.platform_updated_at and data.updated_at \
            and data.updated_at < order.platform_updated_at:
        return order
    if order is None:
        order = Order(shop_id=shop.id, platform_id=data.platform_id)
        session.add(order)
    address = dict(data.shipping_address or {})
    order.number = data.number.lstrip("#").strip()
    order.email = data.email.strip().lower()
    order.customer_name = data.customer_name
    order.locale = data.locale
    order.currency = data.currency.upper()
    order.shipping_address = address
    order.postcode = normalise_postcode(address.get("postcode", ""))
    order.country = (address.get("country") or "").upper()[:2]
    order.taxes_included = data.taxes_included
    order.shipping_total = data.shipping_total
    order.shipping_tax = data.shipping_tax
    order.total = data.total
    order.payment_gateway = data.payment_gateway
    order.tags = list(data.tags)
    order.placed_at = data.placed_at
    order.fulfilled_at = data.fulfilled_at
    order.delivered_at = data.delivered_at
    order.cancelled_at = data.cancelled_at
    order.platform_updated_at = data.updated_at
    order.synced_at = now_utc()
    existing = {line.platform_id: line for line in order.lines}
    for item in data.lines:
        line = existing.get(item.platform_id)
        if line is None:
            line = OrderLine(shop_id=shop.id, platform_id=item.platform_id)
            order.lines.append(line)
        line.sku = item.sku
        line.title = item.title
        line.variant_title = item.variant_title
        line.product_type = item.product_type
        line.product_tags = list(item.product_tags)
        line.image_url = item.image_url
        line.quantity = item.quantity
        line.unit_price = item.unit_price
        line.discount_total = item.discount_total
        line.tax_total = item.tax_total
        line.final_sale = item.final_sale
        line.refunded_quantity = item.refunded_quantity
    session.commit()
    return order


def find_order_for_login(shop: Shop, number: str, email_or_postcode: str) -> Order | None:
    """The order whose number and email (or shipping postcode) match, else None.

    The same query and one constant-time comparison run whether or not the order exists, so the
    answer's timing does not tell which part was wrong.
    """
    number = (number or "").strip().lstrip("#").strip()[:64]
    secret = (email_or_postcode or "").strip()[:255]
    order = session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number)) if number else None
    if "@" in secret:
        expected, given = (order.email if order else ""), secret.lower()
    else:
        expected, given = (order.postcode if order else ""), normalise_postcode(secret)
    matches = hmac.compare_digest(expected.encode(), given.encode())
    return order if order is not None and matches and given else None


def orders_for_email(shop: Shop, email: str, limit: int = 20) -> list[Order]:
    email = (email or "").strip().lower()
    return list(session.scalars(select(Order).where(Order.shop_id == shop.id, Order.email == email)
                                .order_by(Order.placed_at.desc()).limit(limit)))


# ============================================================================ eligibility

@dataclass
class LineOption:
    line: OrderLine
    returnable_quantity: int
    blocked: str | None


def _units_held(shop: Shop, order: Order, exclude_return_id: int | None = None) -> dict[int, int]:
    """Units of each order line already in a live return (not draft, cancelled or rejected)."""
    query = (select(ReturnLine.order_line_id, func.sum(ReturnLine.quantity))
             .join(Return, Return.id == ReturnLine.return_id)
             .where(Return.shop_id == shop.id, Return.order_id == order.id, Return.state.in_(_HOLDING_STATES))
             .group_by(ReturnLine.order_line_id))
    if exclude_return_id is not None:
        query = query.where(Return.id != exclude_return_id)
    return {line_id: int(qty or 0) for line_id, qty in session.execute(query)}


# The statutory withdrawal period (Art. 9 Directive 2011/83/EU): a shop's shorter return window
# never shortens it.
WITHDRAWAL_DAYS = 14


def line_options(shop: Shop, order: Order, now: datetime | None = None, *,
                 withdrawal: bool = False) -> list[LineOption]:
    """Each order line with how many units can still be returned, or why none can.

    For an EU withdrawal the window is at least the statutory 14 days from delivery.
    """
    policy = policy_of(shop)
    if withdrawal and policy.window_days < WITHDRAWAL_DAYS:
        policy = replace(policy, window_days=WITHDRAWAL_DAYS)
    held = _units_held(shop, order)
    now = now or now_utc()
    options = []
    for line in order.lines:
        elig = line_eligibility(line, order, policy, already_returned=held.get(line.id, 0), now=now)
        options.append(LineOption(line, elig.returnable_quantity, elig.blocked))
    return options


def reasons_tree(shop: Shop) -> list[tuple[ReturnReason, list[ReturnReason]]]:
    reasons = list(session.scalars(select(ReturnReason).where(ReturnReason.shop_id == shop.id,
                                                              ReturnReason.active.is_(True))
                                   .order_by(ReturnReason.position, ReturnReason.id)))
    children: dict[int, list[ReturnReason]] = {}
    for reason in reasons:
        if reason.parent_id:
            children.setdefault(reason.parent_id, []).append(reason)
    return [(r, children.get(r.id, [])) for r in reasons if r.parent_id is None]


# ============================================================================ the shopper's draft

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


def _shop(ret: Return) -> Shop:
    return session.get(Shop, ret.shop_id)


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
            ret.method, ret.carrier, ret.checklist = None, None, []
    session.commit()


def _shop_fault(ret: Return) -> bool:
    return any(line.reason is not None and line.reason.shop_fault for line in ret.lines)


def _country(ret: Return) -> str:
    return ((ret.address or {}).get("country") or ret.order.country or _shop(ret).country).upper()


def pickup_day(shop: Shop, country: str, now: datetime | None = None) -> date:
    from connector.carriers.calendar import next_working_day

    extra = shop.policy.get("closed_days", []) if shop.policy else []
    closed = [date.fromisoformat(d) for d in extra if isinstance(d, str)]
    try:
        return next_working_day(country or shop.country, after=now or now_utc(), closed_days=closed, tz=shop.timezone)
    except ValueError:  # no holiday calendar for that country: count the shop's own working days
        return next_working_day(shop.country, after=now or now_utc(), closed_days=closed, tz=shop.timezone)


def method_options(ret: Return) -> list[MethodOption]:
    """The methods the shop allows for the shopper's country that its carriers can perform."""
    shop = _shop(ret)
    policy = policy_of(shop)
    country = _country(ret)
    fault = _shop_fault(ret)
    options = []
    for method in allowed_methods(policy, country):
        carrier_key = policy.carriers.get(method)
        if not carrier_key:
            continue
        try:
            caps = runtime.carrier_class(carrier_key).capabilities
        except KeyError:
            continue
        if not caps.serves(method):
            continue
        pickup = method in ("pickup", "carrier_label")
        options.append(MethodOption(
            method=method, carrier=carrier_key, fee=quantize(return_fee(policy, method, shop_fault=fault), ret.currency),
            currency=ret.currency, pickup_date=pickup_day(shop, country) if pickup else None,
            pickup_window="09:00-18:00" if pickup else None, qr=method == "dropoff" and caps.qr,
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


ADDRESS_FIELDS = {"name": 255, "line1": 255, "line2": 255, "postcode": 32, "city": 128, "country": 2, "phone": 40}


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


def set_instructions(ret: Return, address: dict[str, Any], checklist: list[str]) -> None:
    _require_draft(ret)
    if not ret.method:
        raise ServiceError(_("Choose a return method first."), field="method")
    address = {k: address.get(k, "") for k in ADDRESS_FIELDS}
    errors = validate_address(address)
    missing = [code for code, _text in CHECKLISTS[ret.method] if code not in checklist]
    if missing:
        errors["checklist"] = _("Please confirm every point of the checklist.")
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


def confirm(ret: Return) -> Return:
    """Submit the draft: number, `requested`, auto-approval, shipment and mail jobs. Idempotent."""
    if ret.state != lc.DRAFT:
        return ret
    if not ret.lines:
        raise ServiceError(_("Choose the items first."), field="items")
    if not ret.method:
        raise ServiceError(_("Choose a return method first."), field="method")
    if not ret.checklist:
        raise ServiceError(_("Please confirm the instructions first."), field="checklist")
    stamp = now_utc()
    if not _claim(ret, confirmed_at=stamp):
        session.rollback()
        session.refresh(ret)
        return ret
    shop = _shop(ret)
    policy = policy_of(shop)
    ret.confirmed_at = stamp
    ret.number = _next_number(shop.id)
    ret.deadline = stamp + timedelta(days=policy.ship_by_days)
    lc.transition(ret, lc.REQUESTED, actor="shopper", data={"method": ret.method})
    jobs = [("notify", {"return_id": ret.id, "kind": "confirmed"})]
    if should_auto_approve(policy, value=estimated_value(ret), is_withdrawal=ret.is_withdrawal,
                           reason_codes=[line.reason.code for line in ret.lines if line.reason]):
        jobs += _approve(ret, "system")
    session.commit()
    _enqueue_all(jobs)
    return ret


def _enqueue_all(jobs: Iterable[tuple[str, dict]]) -> None:
    for name, kwargs in jobs:
        runtime.enqueue(name, **kwargs)


def _set_pending(ret: Return, step: str | None, delay: timedelta = STEP_DEADLINE) -> None:
    ret.pending_step = step
    ret.pending_until = now_utc() + delay if step else None


def _approve(ret: Return, actor: str) -> list[tuple[str, dict]]:
    """Approve and open the shipment; returns the jobs to enqueue after commit."""
    lc.transition(ret, lc.APPROVED, actor=actor)
    method = ret.method or "selfship"
    policy = policy_of(_shop(ret))
    carrier = ret.carrier or policy.carriers.get(method, "selfship")
    shipment = Shipment(shop_id=ret.shop_id, carrier=carrier, method=method, status="requested",
                        idempotency_key=f"shp-{ret.shop_id}-{ret.id}-{uuid.uuid4().hex[:12]}")
    ret.shipments.append(shipment)
    if method == "selfship":
        shipment.status = "awaiting_shipment"
        lc.transition(ret, lc.AWAITING_SHIPMENT, actor="system")
        return [("notify", {"return_id": ret.id, "kind": lc.AWAITING_SHIPMENT})]
    _set_pending(ret, "shipment")
    session.flush()
    return [("fulfil_shipment", {"shipment_id": shipment.id})]


def approve(ret: Return, actor: str) -> None:
    jobs = _approve(ret, actor)
    session.commit()
    _enqueue_all(jobs + [("notify", {"return_id": ret.id, "kind": lc.APPROVED})])


def reject(ret: Return, actor: str, note: str = "") -> None:
    lc.transition(ret, lc.REJECTED, actor=actor, data={"note": note[:2000]})
    session.commit()
    runtime.enqueue("notify", return_id=ret.id, kind=lc.REJECTED)


def cancel(ret: Return, actor: str) -> None:
    """Cancel before the parcel moves; the label is voided (or the pickup cancelled) by a job."""
    if ret.state not in lc.CANCELLABLE:
        raise ServiceError(_("This return can no longer be cancelled: the parcel is already on its way."))
    if ret.state == lc.DRAFT:
        discard_draft(ret)
        return
    jobs: list[tuple[str, dict]] = [("notify", {"return_id": ret.id, "kind": lc.CANCELLED})]
    shipment = ret.shipment
    lc.transition(ret, lc.CANCELLED, actor=actor)
    _set_pending(ret, None)
    if shipment is not None:
        if shipment.tracking_number or shipment.carrier_ref:
            shipment.status = "void_requested"
            _set_pending(ret, "void")
            jobs.insert(0, ("void_shipment", {"shipment_id": shipment.id}))
        else:
            shipment.status = "voided"
    session.commit()
    _enqueue_all(jobs)


def set_selfship_tracking(ret: Return, tracking_number: str, carrier_name: str) -> None:
    tracking_number = (tracking_number or "").strip()
    carrier_name = (carrier_name or "").strip()
    errors = {}
    if not re.fullmatch(r"[A-Za-z0-9 \-]{4,64}", tracking_number):
        errors["tracking_number"] = _("Enter the tracking number as printed on your receipt.")
    if not carrier_name or len(carrier_name) > 64:
        errors["carrier_name"] = _("Enter the carrier you sent the parcel with.")
    if errors:
        raise ValidationError(errors)
    shipment = ret.shipment
    if ret.state != lc.AWAITING_SHIPMENT or shipment is None or shipment.method != "selfship":
        raise ServiceError(_("A tracking number can only be added to a return you ship yourself."))
    shipment.tracking_number = tracking_number.replace(" ", "")
    shipment.carrier_ref = carrier_name
    shipment.status = "in_transit"
    lc.transition(ret, lc.IN_TRANSIT, actor="shopper", data={"tracking_number": shipment.tracking_number,
                                                              "carrier": carrier_name})
    session.commit()
    runtime.enqueue("notify", return_id=ret.id, kind=lc.IN_TRANSIT)


# ============================================================================ EU withdrawal

WITHDRAWAL_STATEMENT = N_("I hereby withdraw from the contract concluded by me for the purchase of the "
                           "goods listed below.")


def create_withdrawal(shop: Shop, order: Order, *, name: str, email: str,
                      line_quantities: dict[int, int] | None, locale: str) -> Return:
    """Record an EU withdrawal (Art. 11a, Directive 2011/83/EU) as a return marked as such.

    No reason is asked. All returnable units are withdrawn unless `line_quantities` names a part.
    The acknowledgment mail is queued at once with the statement, date and time.
    """
    if order.shop_id != shop.id:
        raise ServiceError(_("We could not match this order number and email."))
    name = (name or "").strip()
    if not name or len(name) > 255:
        raise ValidationError({"name": _("Enter your name.")})
    options = {o.line.id: o for o in line_options(shop, order, withdrawal=True)}
    wanted = line_quantities or {lid: o.returnable_quantity for lid, o in options.items()}
    lines = []
    for line_id, qty in wanted.items():
        option = options.get(line_id)
        if not qty:
            continue
        if option is None or qty < 0 or qty > option.returnable_quantity:
            raise ValidationError({f"line-{line_id}-quantity": _("You can withdraw at most %(n)s of this item.",
                                                                  n=option.returnable_quantity if option else 0)})
        lines.append(ReturnLine(shop_id=shop.id, order_line_id=line_id, quantity=qty))
    if not lines:
        raise ValidationError({"items": _("There is nothing left in this order to withdraw from.")})
    stamp = now_utc()
    ret = Return(shop_id=shop.id, order_id=order.id, email=email.strip().lower(), state=lc.DRAFT,
                 currency=order.currency, locale=locale, address=dict(order.shipping_address or {}),
                 is_withdrawal=True, withdrawal_name=name, method="selfship",
                 carrier=policy_of(shop).carriers.get("selfship", "selfship"), confirmed_at=stamp)
    ret.lines.extend(lines)
    session.add(ret)
    session.flush()
    ret.number = _next_number(shop.id)
    ret.deadline = stamp + timedelta(days=14)  # goods back within 14 days of withdrawal (Art. 14)
    lc.record(ret, "withdrawal", actor="shopper", public=True, data={
        "statement": WITHDRAWAL_STATEMENT, "name": name, "email": ret.email, "order": order.number,
        "received_at": stamp.isoformat(), "partial": line_quantities is not None,
        "lines": [{"title": line.order_line.title if line.order_line else "", "quantity": line.quantity}
                  for line in lines]})
    lc.transition(ret, lc.REQUESTED, actor="shopper", data={"withdrawal": True})
    session.commit()
    runtime.enqueue("notify", return_id=ret.id, kind="withdrawal")
    return ret


# ============================================================================ warehouse

def mark_received(ret: Return, actor: str, quantities: dict[int, int] | None = None) -> None:
    """The parcel arrived. `quantities` (by return line id) default to what was announced."""
    quantities = quantities or {}
    for line in ret.lines:
        qty = quantities.get(line.id, line.quantity)
        if qty < 0 or qty > line.quantity:
            raise ValidationError({f"line-{line.id}-received": _("Between 0 and %(n)s.", n=line.quantity)})
        line.received_quantity = qty
    shipment = ret.shipment
    if shipment is not None and shipment.status not in ("voided",):
        shipment.status = "delivered"
    lc.transition(ret, lc.RECEIVED, actor=actor,
                  data={"received": {str(line.id): line.received_quantity for line in ret.lines}})
    _set_pending(ret, None)
    session.commit()
    runtime.enqueue("notify", return_id=ret.id, kind=lc.RECEIVED)
    if policy_of(_shop(ret)).refund_trigger == "received":
        request_refund(ret, "system")


def inspect(ret: Return, actor: str, results: dict[int, dict[str, str]]) -> None:
    """Grade lines A/B/C with a disposition; once every line is graded the return is inspected."""
    if ret.state not in (lc.RECEIVED, lc.INSPECTED, lc.REFUNDED):
        raise ServiceError(_("Only a received return can be graded."))
    lines = {line.id: line for line in ret.lines}
    errors = {}
    for line_id, result in results.items():
        if line_id not in lines:
            errors["lines"] = _("Unknown line.")
            continue
        if result.get("grade") not in GRADES:
            errors[f"line-{line_id}-grade"] = _("Choose grade A, B or C.")
        if result.get("disposition") not in DISPOSITIONS:
            errors[f"line-{line_id}-disposition"] = _("Choose what happens to the item.")
        if len(result.get("note") or "") > MAX_COMMENT:
            errors[f"line-{line_id}-note"] = _("Please keep the note under %(n)s characters.", n=MAX_COMMENT)
    if errors:
        raise ValidationError(errors)
    for line_id, result in results.items():
        line = lines[line_id]
        line.grade, line.disposition = result["grade"], result["disposition"]
        line.inspection_note = (result.get("note") or "").strip()
    lc.record(ret, "inspection", actor=actor, data={str(i): {"grade": r["grade"], "disposition": r["disposition"]}
                                                     for i, r in results.items()})
    complete = all(line.grade for line in ret.lines)
    if complete and ret.state == lc.RECEIVED:
        lc.transition(ret, lc.INSPECTED, actor=actor)
    session.commit()
    if complete and ret.state == lc.INSPECTED:
        runtime.enqueue("notify", return_id=ret.id, kind=lc.INSPECTED)
        if policy_of(_shop(ret)).refund_trigger == "inspected":
            request_refund(ret, "system")


# ============================================================================ refunds

def _order_refunds(ret: Return) -> list[Refund]:
    return list(session.scalars(select(Refund).join(Return, Return.id == Refund.return_id)
                                .where(Refund.shop_id == ret.shop_id, Return.order_id == ret.order_id,
                                       Refund.state.in_(("pending", "succeeded", "unknown")))))


def refund_preview(ret: Return) -> RefundPlan:
    """The refund this return would make now, in Decimal, capped at what the order still allows."""
    shop = _shop(ret)
    policy = policy_of(shop)
    order = ret.order
    earlier = [r for r in _order_refunds(ret) if r.return_id != ret.id or r.state != "pending"]
    refunded_units: dict[int, int] = {}
    for refund in earlier:
        for line in refund.lines:
            refunded_units[line["order_line_id"]] = refunded_units.get(line["order_line_id"], 0) + line["quantity"]
    inputs = []
    for line in ret.lines:
        qty = line.quantity if line.received_quantity is None else line.received_quantity
        if line.disposition == "missing":
            qty = 0
        if qty <= 0:
            continue
        ol = line.order_line
        inputs.append(LineInput(
            order_line_id=ol.id, platform_line_id=ol.platform_id, quantity_bought=ol.quantity, quantity=qty,
            quantity_previously_refunded=refunded_units.get(ol.id, 0) + ol.refunded_quantity,
            unit_price=ol.unit_price, discount_total=ol.discount_total, tax_total=ol.tax_total,
            restock=line.grade == "A" and line.disposition == "restock"))
    shipping = ZERO
    shipping_refunded = any(r.shipping_amount > 0 for r in earlier)
    fault = _shop_fault(ret)
    if not shipping_refunded:
        if policy.refund_shipping == "always" or (policy.refund_shipping == "shop_fault" and fault):
            shipping = order.shipping_total + (ZERO if order.taxes_included else order.shipping_tax)
        elif policy.refund_shipping == "full_return":
            held = _units_held(shop, order)
            if all(held.get(ol.id, 0) + ol.refunded_quantity >= ol.quantity for ol in order.lines):
                shipping = order.shipping_total + (ZERO if order.taxes_included else order.shipping_tax)
    already = sum((r.amount for r in earlier), ZERO)
    return plan_refund(currency=ret.currency, taxes_included=order.taxes_included, lines=inputs, shipping=shipping,
                       return_fee=ZERO if fault else ret.fee,
                       restocking_fee_percent=ZERO if fault else policy.restocking_fee_percent,
                       refundable_remaining=max(order.total - already, ZERO), method=ret.refund_method)


REFUNDABLE_STATES = (lc.RECEIVED, lc.INSPECTED)


def request_refund(ret: Return, actor: str) -> Refund:
    """Create the return's refund exactly once and queue its execution.

    The row, with its idempotency key, is committed before the platform is called. A second click,
    a second tab or a race finds the same row: the key is derived from the return and the count of
    failed attempts, and is unique in the table.
    """
    live = session.scalar(select(Refund).where(Refund.shop_id == ret.shop_id, Refund.return_id == ret.id,
                                               Refund.state.in_(("pending", "succeeded", "unknown"))))
    if live is not None:
        return live
    if ret.state not in REFUNDABLE_STATES:
        raise ServiceError(_("A refund can be made once the return has been received."))
    plan = refund_preview(ret)
    failed = session.scalar(select(func.count()).select_from(Refund).where(
        Refund.shop_id == ret.shop_id, Refund.return_id == ret.id, Refund.state == "failed"))
    refund = Refund(shop_id=ret.shop_id, return_id=ret.id, amount=plan.total, currency=plan.currency,
                    lines=[{"order_line_id": l.order_line_id, "platform_line_id": l.platform_line_id,
                            "quantity": l.quantity, "amount": str(l.amount), "tax": str(l.tax), "restock": l.restock}
                           for l in plan.lines],
                    shipping_amount=plan.shipping,
                    deductions=[{"code": d.code, "label": d.label, "amount": str(d.amount)} for d in plan.deductions],
                    method=plan.method, idempotency_key=f"rc-{ret.shop_id}-{ret.id}-{failed + 1}",
                    state="pending", requested_by=actor)
    session.add(refund)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return session.scalar(select(Refund).where(Refund.shop_id == ret.shop_id, Refund.return_id == ret.id)
                              .order_by(Refund.id.desc()))
    lc.record(ret, "refund_requested", actor=actor, data={"amount": str(plan.total), "currency": plan.currency,
                                                          "key": refund.idempotency_key})
    _set_pending(ret, "refund")
    session.commit()
    runtime.enqueue("execute_refund", refund_id=refund.id)
    return refund


def plan_of(refund: Refund) -> RefundPlan:
    """Rebuild the committed plan from the refund row (what was shown is what is sent)."""
    from connector.returns.ports import Deduction

    return RefundPlan(
        currency=refund.currency,
        lines=tuple(RefundPlanLine(order_line_id=l["order_line_id"], platform_line_id=l["platform_line_id"],
                                   quantity=l["quantity"], amount=Decimal(l["amount"]), tax=Decimal(l["tax"]),
                                   restock=l.get("restock", False)) for l in refund.lines),
        shipping=refund.shipping_amount,
        deductions=tuple(Deduction(d["code"], d["label"], Decimal(d["amount"])) for d in refund.deductions),
        total=refund.amount, method=refund.method)


def execute_refund(refund_id: int) -> Refund | None:
    """Job body: send the refund through the shop's platform adapter, exactly once.

    A refund whose outcome is unknown (timeout, crash) is first looked up on the platform by its
    key; only when the platform has none is it sent again, with the same key.
    """
    refund = session.get(Refund, refund_id)
    if refund is None or refund.state in ("succeeded", "failed"):
        return refund
    ret = refund.return_
    shop = _shop(ret)
    adapter = runtime.adapter(shop)
    refund.attempts += 1
    session.commit()
    try:
        result = adapter.find_refund(ret.order, refund.idempotency_key) if refund.attempts > 1 else None
        if result is None:
            result = adapter.refund(ret.order, plan_of(refund), refund.idempotency_key)
    except PlatformError as exc:
        result = None
        refund.error = str(exc)[:2000]
        refund.state = "unknown" if exc.retryable else "failed"
    if result is not None:
        refund.state = result.status
        refund.platform_refund_id = result.platform_refund_id
        refund.manual = result.manual
        refund.error = result.message if result.status != "succeeded" else None
    if refund.state == "succeeded":
        refund.completed_at = now_utc()
        lc.record(ret, "refund", actor="system", public=False,
                  data={"amount": str(refund.amount), "currency": refund.currency, "manual": refund.manual,
                        "platform_refund_id": refund.platform_refund_id})
        if ret.state in REFUNDABLE_STATES:
            lc.transition(ret, lc.REFUNDED, actor="system", data={"amount": str(refund.amount),
                                                                   "currency": refund.currency})
        _set_pending(ret, None)
    elif refund.state == "failed":
        lc.record(ret, "refund_failed", actor="system", data={"error": refund.error})
        _set_pending(ret, None)
    else:
        _set_pending(ret, "refund", _backoff(refund.attempts))
    session.commit()
    if refund.state == "succeeded":
        runtime.enqueue("notify", return_id=ret.id, kind=lc.REFUNDED)
    return refund


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 6 * 3600))


# ============================================================================ shipments (job bodies)

def shipment_request(ret: Return, shipment: Shipment) -> ShipmentRequest:
    shop = _shop(ret)
    address = ret.address or {}
    sender = Address.from_dict({**address, "email": ret.email})
    recipient = Address.from_dict(shop.return_address or {"name": shop.name, "line1": "", "postcode": "",
                                                          "city": "", "country": shop.country})
    items = tuple(ParcelItem(description=line.order_line.title, quantity=line.quantity, sku=line.order_line.sku,
                             value=quantize(line.order_line.unit_price * line.quantity, ret.currency))
                  for line in ret.lines)
    return ShipmentRequest(idempotency_key=shipment.idempotency_key, reference=ret.rma, method=shipment.method,
                           sender=sender, recipient=recipient, items=items, currency=ret.currency)


def _store_label(shop_id: int, shipment: Shipment, label) -> None:
    if label is None:
        return
    stem = f"shop-{shop_id}/labels/{shipment.idempotency_key}"
    if label.pdf:
        shipment.label_key = runtime.storage.put(stem + ".pdf", label.pdf)
    if label.qr_png:
        shipment.qr_key = runtime.storage.put(stem + "-qr.png", label.qr_png)
    shipment.tracking_number = label.tracking_number or shipment.tracking_number
    shipment.tracking_url = label.tracking_url or shipment.tracking_url
    shipment.carrier_ref = label.carrier_ref or shipment.carrier_ref


def fulfil_shipment(shipment_id: int) -> Shipment | None:
    """Job body: get the label or book the pickup for an approved return. Idempotent per shipment."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.status != "requested":
        return shipment
    ret = shipment.return_
    if ret.state != lc.APPROVED:
        return shipment
    shop = _shop(ret)
    backend = runtime.carrier(shipment.carrier, shop)
    request = shipment_request(ret, shipment)
    shipment.attempts += 1
    session.commit()
    try:
        if shipment.method in ("pickup", "carrier_label"):
            day = pickup_day(shop, request.sender.country)
            pickup = backend.schedule_pickup(request, day)
            _store_label(shop.id, shipment, pickup.label)
            shipment.pickup_date, shipment.pickup_window = pickup.day, pickup.window
            shipment.carrier_ref = pickup.carrier_ref or shipment.carrier_ref
            shipment.tracking_number = pickup.tracking_number or shipment.tracking_number
            shipment.status = "pickup_booked"
            target = lc.AWAITING_PICKUP
        else:
            _store_label(shop.id, shipment, backend.create_return_label(request))
            shipment.status = "label_ready"
            target = lc.LABEL_READY
    except CarrierRetryable as exc:
        shipment.error = str(exc)[:2000]
        _set_pending(ret, "shipment", _backoff(shipment.attempts))
        session.commit()
        return shipment
    except CarrierError as exc:
        shipment.status = "failed"
        shipment.error = str(exc)[:2000]
        shopper = exc.shopper_message if isinstance(exc, CarrierRejected) else None
        lc.record(ret, "shipment_failed", actor="carrier", public=bool(shopper),
                  data={"error": shipment.error, "shopper_message": shopper})
        _set_pending(ret, None)
        session.commit()
        runtime.enqueue("alert_merchant", shop_id=shop.id,
                        subject=f"{ret.rma}: the carrier refused the return shipment", text=shipment.error)
        return shipment
    shipment.error = None
    lc.transition(ret, target, actor="carrier", data={"tracking_number": shipment.tracking_number,
                                                      "pickup_date": shipment.pickup_date.isoformat()
                                                      if shipment.pickup_date else None})
    _set_pending(ret, None)
    session.commit()
    runtime.enqueue("notify", return_id=ret.id, kind=target)
    return shipment


def retry_shipment(ret: Return, actor: str) -> Shipment:
    """Merchant action after a carrier refusal: open a new shipment request and queue it."""
    shipment = ret.shipment
    if ret.state != lc.APPROVED or shipment is None or shipment.status != "failed":
        raise ServiceError(_("There is no failed shipment to retry."))
    shipment.status = "voided"
    fresh = Shipment(shop_id=ret.shop_id, carrier=shipment.carrier, method=shipment.method, status="requested",
                     idempotency_key=f"shp-{ret.shop_id}-{ret.id}-{uuid.uuid4().hex[:12]}")
    ret.shipments.append(fresh)
    lc.record(ret, "shipment_retry", actor=actor)
    _set_pending(ret, "shipment")
    session.commit()
    runtime.enqueue("fulfil_shipment", shipment_id=fresh.id)
    return fresh


def void_shipment(shipment_id: int) -> Shipment | None:
    """Job body: void the label or cancel the pickup of a cancelled return, where the carrier can."""
    shipment = session.get(Shipment, shipment_id)
    if shipment is None or shipment.status != "void_requested":
        return shipment
    ret = shipment.return_
    backend = runtime.carrier(shipment.carrier, _shop(ret))
    try:
        if shipment.pickup_date and shipment.carrier_ref:
            backend.cancel_pickup(shipment.carrier_ref)
        if shipment.tracking_number:
            backend.void_label(shipment.tracking_number)
        shipment.status = "voided"
        lc.record(ret, "label_voided", actor="carrier", public=True)
    except CarrierRetryable as exc:
        shipment.error = str(exc)[:2000]
        shipment.attempts += 1
        _set_pending(ret, "void", _backoff(shipment.attempts))
        session.commit()
        return shipment
    except (CarrierNotSupported, CarrierError) as exc:
        shipment.status = "voided"
        shipment.error = str(exc)[:2000]
        lc.record(ret, "label_not_voided", actor="carrier", public=True, data={"error": shipment.error})
    _set_pending(ret, None)
    session.commit()
    return shipment


PARCEL_MOVING = {"in_transit", "out_for_delivery"}


def refresh_tracking(shipment: Shipment) -> Shipment:
    """Poll the carrier and apply new tracking events: in transit, then delivered (= received)."""
    ret = shipment.return_
    if not shipment.tracking_number or shipment.status in ("voided", "failed", "void_requested"):
        return shipment
    backend = runtime.carrier(shipment.carrier, _shop(ret))
    if not backend.capabilities.tracking:
        return shipment
    events = backend.track(shipment.tracking_number)
    known = {(e["at"], e["status"]) for e in shipment.events}
    fresh = [e for e in events if (e.at.isoformat(), e.status) not in known]
    if not fresh:
        return shipment
    shipment.events = list(shipment.events) + [
        {"at": e.at.isoformat(), "status": e.status, "description": e.description, "location": e.location}
        for e in fresh]
    statuses = {e.status for e in events}
    notify = None
    if statuses & PARCEL_MOVING and ret.state in lc.WAITING_FOR_PARCEL:
        shipment.status = "in_transit"
        lc.transition(ret, lc.IN_TRANSIT, actor="carrier", data={"tracking_number": shipment.tracking_number})
        notify = lc.IN_TRANSIT
    session.commit()
    if notify:
        runtime.enqueue("notify", return_id=ret.id, kind=notify)
    if "delivered" in statuses and ret.state in (lc.IN_TRANSIT, *lc.WAITING_FOR_PARCEL):
        mark_received(ret, "carrier")
    return shipment


# ============================================================================ reading

def timeline(ret: Return, public_only: bool) -> list[Event]:
    query = select(Event).where(Event.shop_id == ret.shop_id, Event.return_id == ret.id).order_by(Event.at, Event.id)
    if public_only:
        query = query.where(Event.public.is_(True))
    return list(session.scalars(query))


def label_bytes(ret: Return) -> bytes | None:
    shipment = ret.shipment
    if shipment is None or not shipment.label_key or not runtime.storage.exists(shipment.label_key):
        return None
    return runtime.storage.get(shipment.label_key)


def qr_bytes(ret: Return) -> bytes | None:
    shipment = ret.shipment
    if shipment is None or not shipment.qr_key or not runtime.storage.exists(shipment.qr_key):
        return None
    return runtime.storage.get(shipment.qr_key)


# ============================================================================ reconciler

DRAFT_LIFETIME = timedelta(days=7)


def reconcile(now: datetime | None = None) -> dict[str, int]:
    """Re-drive every return whose outside step is pending past its deadline; purge stale drafts.

    Safe to run at any time and from several workers: each job body is idempotent.
    """
    now = now or now_utc()
    counts = {"shipment": 0, "refund": 0, "void": 0, "drafts": 0}
    stuck = list(session.scalars(select(Return).where(Return.pending_step.is_not(None),
                                                      Return.pending_until < now).limit(500)))
    jobs = []
    for ret in stuck:
        if ret.pending_step == "shipment":
            for shipment in ret.shipments:
                if shipment.status == "requested":
                    jobs.append(("fulfil_shipment", {"shipment_id": shipment.id}))
        elif ret.pending_step == "refund":
            for refund in ret.refunds:
                if refund.state in ("pending", "unknown"):
                    jobs.append(("execute_refund", {"refund_id": refund.id}))
        elif ret.pending_step == "void":
            for shipment in ret.shipments:
                if shipment.status == "void_requested":
                    jobs.append(("void_shipment", {"shipment_id": shipment.id}))
        counts[ret.pending_step] = counts.get(ret.pending_step, 0) + 1
        # Push the deadline out so that a slow job is not driven twice by the next pass.
        ret.pending_until = now + STEP_DEADLINE
    old_drafts = list(session.scalars(select(Return).where(Return.state == lc.DRAFT,
                                                           Return.created_at < now - DRAFT_LIFETIME).limit(500)))
    photos = [key for draft in old_drafts for line in draft.lines for key in line.photos]
    for draft in old_drafts:
        session.delete(draft)
    counts["drafts"] = len(old_drafts)
    session.commit()
    for key in photos:
        runtime.storage.delete(key)
    _enqueue_all(jobs)
    return counts
