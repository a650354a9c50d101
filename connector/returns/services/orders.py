"""Orders: storing synced copies, finding them for a shopper, and what of them can be returned."""
from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select

from connector.db import session
from connector.returns import lifecycle as lc
from connector.returns.models import Order, OrderLine, Return, ReturnLine, ReturnReason, Shop
from connector.returns.policy import line_eligibility
from connector.returns.ports import OrderData
from connector.returns.services.base import now_utc, policy_of


# Returns that hold units of an order line (drafts, cancelled and rejected ones hold none).
_HOLDING_STATES = tuple(s for s in lc.STATES if s not in (lc.DRAFT, lc.CANCELLED, lc.REJECTED))


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
    order.customer_platform_id = data.customer_id or None
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


def orders_for_customer(shop: Shop, customer_platform_id: str, limit: int = 20) -> list[Order]:
    """The newest orders of the platform customer account `customer_platform_id` in `shop`."""
    if not customer_platform_id:
        return []
    return list(session.scalars(select(Order).where(Order.shop_id == shop.id,
                                                    Order.customer_platform_id == customer_platform_id)
                                .order_by(Order.placed_at.desc()).limit(limit)))


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
