"""Returns that staff or shoppers create or change in Shopify's own interface, mirrored here.

`mirror_return(shop, return_gid)` is what the returns/* webhook handlers call. It reads the return
from Shopify (ReturnGet) and:

- for one of ours (`Return.platform_id`): records Shopify's status and, when it changed in
  Shopify's admin, moves ours along where the state machine allows it: approved there -> approved
  here (the label follows as usual), declined -> rejected, cancelled -> cancelled, closed ->
  closed. Each change is an Event on the timeline.
- for a return we do not know: creates one with origin "platform" for the order (synced first if
  it is missing), its lines from the ReturnLineItems' order lines, the reasons mapped back from
  Shopify's reason handles, the next RMA number, and a state that matches Shopify's status
  (REQUESTED -> requested; OPEN -> approved, then awaiting_shipment; DECLINED -> rejected;
  CANCELED -> cancelled). No label is made and no mail is sent: Shopify has told the shopper and
  the merchant handles the shipping there (the admin can still add a label).

Idempotent: `Return.platform_id` is unique per shop, so a second webhook for the same return (or
two at once) updates the one row; a return our own worker is opening right now (platform_status
OPENING) is left to that worker, which records the id itself.
"""
from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from connector.db import session
from connector.platforms.shopify import reasons
from connector.platforms.shopify.adapter import ShopifyAdapter, apply_parts
from connector.platforms.shopify import returns_mapping as rm
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Return, ReturnLine, ReturnReason, Shop
from connector.returns.services.base import MAX_COMMENT, now_utc
from connector.returns.services.drafts import _next_number
from connector.returns.services.platform import OPENING

log = logging.getLogger("connector.shopify.returns_mirror")

ACTOR = "merchant:Shopify"  # a change made in Shopify's own interface


def mirror_return(shop: Shop, return_gid: str) -> Return | None:
    """Bring the connector in step with the Shopify return `return_gid`; the row, or None when
    there is nothing to mirror (unknown to Shopify, its order not found, or no line we can map)."""
    adapter = ShopifyAdapter(shop)
    node = adapter.client.execute("ReturnGet", {"id": return_gid}).get("return")
    if not node:
        log.info("shop %s: return %s is not in Shopify (any more)", shop.id, return_gid)
        return None
    found = rm.parse_return(node)
    ours = _by_platform_id(shop, found.id)
    if ours is not None:
        return _follow(ours, found)
    order = _order(shop, found.order_id)
    if order is None:
        log.warning("shop %s: return %s belongs to order %s, which cannot be synced", shop.id, found.id,
                    found.order_id)
        return None
    opening = session.scalar(select(Return).where(
        Return.shop_id == shop.id, Return.order_id == order.id, Return.platform_id.is_(None),
        Return.platform_status == OPENING))
    if opening is not None:
        return opening  # ours, being created on Shopify by a worker right now
    if found.status == "CLOSED":
        log.info("shop %s: return %s was closed before it reached us; not mirrored", shop.id, found.id)
        return None
    return _create(shop, order, found)


def _by_platform_id(shop: Shop, platform_id: str) -> Return | None:
    return session.scalar(select(Return).where(Return.shop_id == shop.id, Return.platform_id == platform_id))


def _order(shop: Shop, order_gid: str | None) -> Order | None:
    """The synced order, fetched from Shopify and stored first when it is not here yet."""
    if not order_gid:
        return None
    order = session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == order_gid))
    if order is not None:
        return order
    from connector.platforms.shopify import sync

    data = sync.fetch_order(shop, order_gid)
    return services.upsert_order(shop, data) if data is not None else None


def _follow(ret: Return, found: rm.ShopifyReturn) -> Return:
    """Record Shopify's status on our return and follow a decision taken in Shopify's admin."""
    previous = ret.platform_status
    if previous == found.status or previous == OPENING:
        return ret  # nothing new, or our worker records it with the id
    ret.platform_status = found.status
    apply_parts(ret, found)  # an approval opens the reverse fulfillment order: its ids come now
    lc.record(ret, "platform_status", actor=ACTOR, public=False,
              data={"from": previous, "to": found.status, "platform_id": found.id})
    session.commit()
    if found.status == "OPEN" and ret.state == lc.REQUESTED:
        services.approve(ret, ACTOR)
    elif found.status == "DECLINED" and ret.state == lc.REQUESTED:
        services.reject(ret, ACTOR, note=found.decline_note)
    elif found.status == "CANCELED" and ret.state in lc.CANCELLABLE and ret.state != lc.DRAFT:
        services.cancel(ret, ACTOR)
    elif found.status == "CLOSED" and lc.can_transition(ret.state, lc.CLOSED):
        lc.transition(ret, lc.CLOSED, actor=ACTOR)
        session.commit()
    return ret


# The states a return created in Shopify's admin reaches, by its Shopify status.
PATHS = {
    "REQUESTED": (lc.REQUESTED,),
    "OPEN": (lc.REQUESTED, lc.APPROVED, lc.AWAITING_SHIPMENT),
    "DECLINED": (lc.REQUESTED, lc.REJECTED),
    "CANCELED": (lc.REQUESTED, lc.CANCELLED),
}


def _create(shop: Shop, order: Order, found: rm.ShopifyReturn) -> Return | None:
    codes = {r.code: r for r in session.scalars(select(ReturnReason).where(
        ReturnReason.shop_id == shop.id, ReturnReason.active.is_(True)))}
    by_line = {line.platform_id: line for line in order.lines}
    wanted: dict[int, dict[str, Any]] = {}
    for part in found.lines:
        order_line = by_line.get(part.line_item or "")
        if order_line is None:
            continue  # an unverified line, or one the order copy does not hold
        entry = wanted.setdefault(order_line.id, {"quantity": 0, "handle": part.reason_handle, "notes": []})
        entry["quantity"] += part.quantity
        if part.note and part.note not in entry["notes"]:
            entry["notes"].append(part.note)
    if not wanted:
        log.warning("shop %s: return %s has no line of order %s we can map", shop.id, found.id, order.number)
        return None
    ret = Return(shop_id=shop.id, order_id=order.id, email=order.email, state=lc.DRAFT, currency=order.currency,
                 locale=order.locale or shop.locale, address=dict(order.shipping_address or {}), origin="platform",
                 platform_id=found.id, platform_status=found.status, confirmed_at=found.created_at or now_utc())
    for order_line_id, entry in wanted.items():
        code = reasons.code_for_handle(entry["handle"], codes)
        ret.lines.append(ReturnLine(shop_id=shop.id, order_line_id=order_line_id, quantity=entry["quantity"],
                                    reason_id=codes[code].id if code else None,
                                    comment="\n".join(entry["notes"])[:MAX_COMMENT]))
    session.add(ret)
    try:
        session.flush()
    except IntegrityError:  # the same return mirrored at the same moment by another webhook
        session.rollback()
        ours = _by_platform_id(shop, found.id)
        return _follow(ours, found) if ours is not None else None
    ret.number = _next_number(shop.id)
    apply_parts(ret, found)
    for state in PATHS.get(found.status, (lc.REQUESTED,)):
        data = {"platform_id": found.id, "name": found.name} if state == lc.REQUESTED else {}
        if state == lc.REJECTED:
            data = {"note": found.decline_note[:2000]}
        lc.transition(ret, state, actor=ACTOR, data=data)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        ours = _by_platform_id(shop, found.id)
        return _follow(ours, found) if ours is not None else None
    return ret
