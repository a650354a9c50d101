"""Shopify's mandatory privacy topics, done on the connector's own data.

    customers/data_request  export_customer: every row this shop holds about the customer, as one
                            JSON document (stored, and mailed to the merchant by the handler)
    customers/redact        redact_customer: the customer's orders and returns in this shop keep
                            their business facts (items, money, dates, states) and lose whatever
                            identifies the person
    shop/redact             delete_shop: every row of the shop (the database cascades from the
                            shop row) and every stored file under "shop-<id>/"

A customer is found by the payload's email (orders and returns are stored with it, lower-cased),
by their Shopify customer account (Order.customer_platform_id) and by the order ids Shopify lists
(`orders_requested` / `orders_to_redact`); nothing outside the given shop is ever read or touched.
Each function can run twice with the same outcome.

What redaction keeps, and why:
- order lines, amounts, currency, dates, country, tags, return states, grades, dispositions,
  refunds and tracking numbers: the merchant's bookkeeping, carrier claims and statistics, none of
  which names the person once the links below are cut;
- inspection notes, shipment errors and event texts only when they mention none of this
  customer's identifiers (email, its local part, name words, phone digits, street lines,
  postcode); otherwise the text is replaced by "[redacted]" (we cannot tell a free text free of
  personal data in general; we can tell whether it names this person);
- inspection photos: pictures of the returned goods taken by the merchant's warehouse (evidence of
  their condition), not of the person.
What it removes: email, names, addresses, postcodes and the customer account id of orders; email,
address and withdrawal name of returns; the shopper's comments and photos (files deleted); the
label and QR files (they print the sender's name and address); and the stored webhook bodies that
carry the customer.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Iterable

from sqlalchemy import delete, or_, select, update

from connector.db import session
from connector.dbtypes import utcnow
from connector.returns.context import runtime
from connector.returns.models import Order, Return, Shop, WebhookDelivery
from connector.returns.money import quantize

REDACTED = "[redacted]"
PERSONAL_KEYS = frozenset({"name", "email", "phone", "address", "withdrawal_name", "customer_name", "first_name",
                           "last_name", "line1", "line2", "postcode", "zip"})
REDACTED_PAYLOAD = '{"redacted": true}'


@dataclass(frozen=True)
class Customer:
    """Who a privacy request is about, within one shop."""

    email: str = ""  # lower-cased
    order_ids: tuple[str, ...] = ()  # order GIDs named by Shopify
    phone: str = ""
    shopify_id: str = ""  # the numeric customer id Shopify sends

    @property
    def customer_gid(self) -> str | None:
        return f"gid://shopify/Customer/{self.shopify_id}" if self.shopify_id.isdigit() else None

    @classmethod
    def from_payload(cls, payload: dict[str, Any], orders_key: str) -> "Customer":
        customer = payload.get("customer") if isinstance(payload.get("customer"), dict) else {}
        email = customer.get("email") if isinstance(customer.get("email"), str) else ""
        ids = []
        for value in payload.get(orders_key) or []:
            if isinstance(value, (int, str)) and not isinstance(value, bool) and str(value).isdigit():
                ids.append(f"gid://shopify/Order/{int(value)}")
        phone = customer.get("phone") if isinstance(customer.get("phone"), str) else ""
        shopify_id = str(customer.get("id")) if isinstance(customer.get("id"), (int, str)) else ""
        return cls(email=email.strip().lower(), order_ids=tuple(ids), phone=phone.strip(), shopify_id=shopify_id)


def customer_orders(shop: Shop, customer: Customer) -> list[Order]:
    """The customer's orders in `shop`: by email, and the ones Shopify names."""
    conditions = []
    if customer.email:
        conditions.append(Order.email == customer.email)
    if customer.order_ids:
        conditions.append(Order.platform_id.in_(customer.order_ids))
    if customer.customer_gid:
        conditions.append(Order.customer_platform_id == customer.customer_gid)
    if not conditions:
        return []
    return list(session.scalars(select(Order).where(Order.shop_id == shop.id, or_(*conditions)).order_by(Order.id)))


def customer_returns(shop: Shop, customer: Customer, orders: Iterable[Order]) -> list[Return]:
    """The customer's returns in `shop`: of their orders, or under their email."""
    order_ids = [o.id for o in orders]
    conditions = []
    if order_ids:
        conditions.append(Return.order_id.in_(order_ids))
    if customer.email:
        conditions.append(Return.email == customer.email)
    if not conditions:
        return []
    return list(session.scalars(select(Return).where(Return.shop_id == shop.id, or_(*conditions)).order_by(Return.id)))


# ---------------------------------------------------------------------------- data request


def _plain(value: Any) -> Any:
    """JSON-ready: Decimal as text, dates as ISO-8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _money(amount: Decimal | None, currency: str) -> str | None:
    """An amount as text in its currency's minor unit ("129.00", not the column's "129.0000")."""
    return None if amount is None else str(quantize(amount, currency))


def _order_doc(order: Order) -> dict[str, Any]:
    cur = order.currency
    return {
        "order": order.display_number, "shopify_order_id": order.platform_id, "email": order.email,
        "customer_name": order.customer_name, "shopify_customer_id": order.customer_platform_id,
        "locale": order.locale, "shipping_address": order.shipping_address,
        "country": order.country, "postcode": order.postcode, "currency": cur, "total": _money(order.total, cur),
        "shipping_total": _money(order.shipping_total, cur), "placed_at": order.placed_at,
        "fulfilled_at": order.fulfilled_at, "delivered_at": order.delivered_at, "cancelled_at": order.cancelled_at,
        "tags": order.tags,
        "lines": [{"title": line.title, "variant": line.variant_title, "sku": line.sku, "quantity": line.quantity,
                   "unit_price": _money(line.unit_price, cur), "discount_total": _money(line.discount_total, cur),
                   "tax_total": _money(line.tax_total, cur), "refunded_quantity": line.refunded_quantity}
                  for line in order.lines],
    }


def _return_doc(ret: Return, locale: str) -> dict[str, Any]:
    return {
        "return": ret.rma, "order": ret.order.display_number if ret.order else None, "state": ret.state,
        "email": ret.email, "address": ret.address, "method": ret.method, "carrier": ret.carrier,
        "refund_method": ret.refund_method, "fee": _money(ret.fee, ret.currency), "currency": ret.currency,
        "locale": ret.locale,
        "is_withdrawal": ret.is_withdrawal, "withdrawal_name": ret.withdrawal_name, "deadline": ret.deadline,
        "created_at": ret.created_at, "confirmed_at": ret.confirmed_at, "shopify_return_id": ret.platform_id,
        "lines": [{"item": line.order_line.title if line.order_line else None, "quantity": line.quantity,
                   "reason": line.reason.label(locale) if line.reason else None, "comment": line.comment,
                   "photos": list(line.photos), "received_quantity": line.received_quantity, "grade": line.grade,
                   "disposition": line.disposition, "inspection_note": line.inspection_note,
                   "inspection_photos": list(line.inspection_photos)} for line in ret.lines],
        "shipments": [{"carrier": s.carrier, "method": s.method, "status": s.status,
                       "tracking_number": s.tracking_number, "tracking_url": s.tracking_url,
                       "pickup_date": s.pickup_date, "pickup_window": s.pickup_window, "tracking_events": s.events,
                       "created_at": s.created_at} for s in ret.shipments],
        "refunds": [{"amount": _money(r.amount, r.currency), "currency": r.currency, "state": r.state,
                     "method": r.method, "shipping_amount": _money(r.shipping_amount, r.currency),
                     "deductions": r.deductions, "created_at": r.created_at, "completed_at": r.completed_at}
                    for r in ret.refunds],
        "timeline": [{"at": e.at, "actor": e.actor, "kind": e.kind, "data": e.data, "shown_to_customer": e.public}
                     for e in ret.events],
    }


def export_customer(shop: Shop, customer: Customer, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything `shop` holds about `customer` in the connector, as a JSON-ready document."""
    orders = customer_orders(shop, customer)
    returns = customer_returns(shop, customer, orders)
    return _plain({
        "about": "Personal data held by Returns Connector for this shop's customer",
        "shop": {"name": shop.name, "domain": shop.domain},
        "request": request or {},
        "customer": {"email": customer.email, "phone": customer.phone, "shopify_customer_id": customer.shopify_id},
        "generated_at": utcnow(),
        "orders": [_order_doc(o) for o in orders],
        "returns": [_return_doc(r, shop.locale or "en") for r in returns],
    })


def export_key(shop: Shop, request_id: str) -> str:
    """Where a data request's document is stored (under the shop's folder)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", request_id)[:64] or "unnamed"
    return f"shop-{shop.id}/privacy/data-request-{safe}.json"


def store_export(shop: Shop, request_id: str, document: dict[str, Any]) -> str:
    key = export_key(shop, request_id)
    runtime.storage.put(key, json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8"))
    return key


# ---------------------------------------------------------------------------- redaction


@dataclass
class Identifiers:
    """What names this customer in free text."""

    texts: set[str] = field(default_factory=set)  # matched case-insensitively as substrings
    words: set[str] = field(default_factory=set)  # name words, matched as whole words
    digits: set[str] = field(default_factory=set)  # phone numbers, matched on their digits

    def add_address(self, address: dict[str, Any] | None) -> None:
        for key in ("line1", "line2"):
            value = (address or {}).get(key)
            if isinstance(value, str) and len(value.strip()) >= 4:
                self.texts.add(value.strip().casefold())
        postcode = (address or {}).get("postcode")
        if isinstance(postcode, str) and len(postcode.strip()) >= 4:
            self.texts.add(postcode.strip().casefold())
        self.add_name((address or {}).get("name"))
        self.add_phone((address or {}).get("phone"))

    def add_name(self, name: Any) -> None:
        if isinstance(name, str):
            self.words.update(w.casefold() for w in re.findall(r"[^\W\d_]{3,}", name))

    def add_phone(self, phone: Any) -> None:
        digits = re.sub(r"\D", "", phone) if isinstance(phone, str) else ""
        if len(digits) >= 6:
            self.digits.add(digits)

    def add_email(self, email: str) -> None:
        if email:
            self.texts.add(email.casefold())
            local = email.split("@", 1)[0]
            if len(local) >= 4:
                self.texts.add(local.casefold())

    def mentioned_in(self, text: str) -> bool:
        folded = text.casefold()
        if any(t in folded for t in self.texts):
            return True
        if self.words and set(re.findall(r"[^\W\d_]+", folded)) & self.words:
            return True
        digits = re.sub(r"\D", "", text)
        return any(d in digits for d in self.digits)


def _scrub(value: Any, who: Identifiers, key: str = "") -> Any:
    """`value` with personal fields and texts naming the customer replaced by REDACTED."""
    if isinstance(value, dict):
        return {k: _scrub(v, who, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, who, key) for v in value]
    if isinstance(value, str) and value and (key in PERSONAL_KEYS or who.mentioned_in(value)):
        return REDACTED
    return value


def _country_only(address: dict[str, Any] | None, country: str = "") -> dict[str, str]:
    code = (address or {}).get("country") or country
    return {"country": code} if code else {}


@dataclass(frozen=True)
class Redaction:
    orders: int
    returns: int
    files: int
    deliveries: int


def redact_customer(shop: Shop, customer: Customer) -> Redaction:
    """Anonymise `customer` in `shop`'s orders, returns and stored webhook bodies; delete their
    photos and labels. Commits, then deletes the files (a file left behind by a crash is
    unreachable, as no row names it any more)."""
    orders = customer_orders(shop, customer)
    returns = customer_returns(shop, customer, orders)
    who = Identifiers()
    who.add_email(customer.email)
    who.add_phone(customer.phone)
    for order in orders:
        who.add_email(order.email)
        who.add_name(order.customer_name)
        who.add_address(order.shipping_address)
    for ret in returns:
        who.add_email(ret.email)
        who.add_name(ret.withdrawal_name)
        who.add_address(ret.address)

    files: list[str] = []
    for order in orders:
        order.email = ""
        order.customer_name = ""
        order.customer_platform_id = None
        order.shipping_address = _country_only(order.shipping_address, order.country)
        order.postcode = ""
    for ret in returns:
        ret.email = ""
        ret.address = _country_only(ret.address)
        ret.withdrawal_name = None
        for line in ret.lines:
            files.extend(line.photos)
            line.photos = []
            line.comment = ""
            if line.inspection_note and who.mentioned_in(line.inspection_note):
                line.inspection_note = REDACTED
        for shipment in ret.shipments:
            files.extend(k for k in (shipment.label_key, shipment.qr_key) if k)
            shipment.label_key = shipment.qr_key = None
            if shipment.tracking_url and who.mentioned_in(shipment.tracking_url):
                shipment.tracking_url = None
            if shipment.error and who.mentioned_in(shipment.error):
                shipment.error = REDACTED
        for refund in ret.refunds:
            if refund.error and who.mentioned_in(refund.error):
                refund.error = REDACTED
        for event in ret.events:
            event.data = _scrub(event.data or {}, who)
    deliveries = _redact_deliveries(shop, customer, [o.platform_id for o in orders])
    session.commit()
    for key in files:
        runtime.storage.delete(key)
    return Redaction(orders=len(orders), returns=len(returns), files=len(files), deliveries=deliveries)


def _redact_deliveries(shop: Shop, customer: Customer, order_ids: list[str]) -> int:
    """Blank the stored webhook bodies of `shop` that carry the customer (their email, or one of
    their orders' GIDs); a body not yet processed is marked processed, as there is nothing left
    to process."""
    needles = [n for n in [customer.email, customer.customer_gid, *order_ids, *customer.order_ids] if n]
    if not needles:
        return 0
    matches = or_(*(WebhookDelivery.payload.contains(n, autoescape=True) for n in dict.fromkeys(needles)))
    ids = list(session.scalars(select(WebhookDelivery.id).where(
        WebhookDelivery.shop_id == shop.id, WebhookDelivery.payload != REDACTED_PAYLOAD, matches)))
    if ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                        .values(payload=REDACTED_PAYLOAD))
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(ids),
                                                      WebhookDelivery.processed_at.is_(None))
                        .values(processed_at=utcnow(), error="redacted before processing (customers/redact)"))
    return len(ids)


# ---------------------------------------------------------------------------- shop deletion


def delete_shop(shop: Shop) -> None:
    """Delete `shop` and everything it owns: rows (the foreign keys cascade from the shop row,
    webhook deliveries included) and stored files under "shop-<id>/"."""
    shop_id = shop.id
    session.execute(delete(Shop).where(Shop.id == shop_id))
    session.commit()
    session.expunge_all()  # the deleted rows must not be flushed back by a later commit
    runtime.storage.delete_prefix(f"shop-{shop_id}/")
