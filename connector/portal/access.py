"""Who may see what in the portal: the shopper's grants, kept in the Flask session per shop.

    session["portal"][str(shop.id)] = {
        "email": str,            # who signed in (None when only a withdrawal or a status link was used)
        "orders": [order ids],   # orders this shopper may open
        "returns": [return ids], # returns opened through a status link or a withdrawal
        "drafts": {order id: return id},   # the draft being built per order
    }

Every lookup here goes through the services' shop-scoped getters and then checks the grant, so
an id from another shop, or from this shop but not granted, is a 404 (the same answer as an id
that does not exist).
"""
from __future__ import annotations

import re

from flask import abort, session
from sqlalchemy import select

from connector import db
from connector.returns import lifecycle, services
from connector.returns.models import Order, Return, Shop

_RMA = re.compile(r"R-(\d{1,9})")
MAX_GRANTS = 50  # a bound on what the session cookie carries


def _all() -> dict:
    return session.get("portal") or {}


def grants(shop: Shop) -> dict:
    data = _all().get(str(shop.id))
    return data if isinstance(data, dict) else {}


def _save(shop: Shop, data: dict) -> None:
    everything = dict(_all())
    everything[str(shop.id)] = data
    session["portal"] = everything


def signed_in(shop: Shop) -> bool:
    return bool(grants(shop).get("orders"))


def email(shop: Shop) -> str | None:
    return grants(shop).get("email")


def sign_in(shop: Shop, email_address: str, orders: list[Order]) -> None:
    """Replace this shop's grants by `orders` of `email_address` (earlier grants are dropped)."""
    _save(shop, {"email": email_address, "orders": [o.id for o in orders if o.shop_id == shop.id][:MAX_GRANTS],
                 "returns": [], "drafts": {}})


def grant_orders(shop: Shop, email_address: str | None, orders: list[Order]) -> None:
    """Add `orders` to this shop's grants, keeping drafts and returns (a shopper the platform
    already knows, e.g. a customer signed in to the shop, whose order list may have grown)."""
    data = dict(grants(shop))
    known = [i for i in data.get("orders", []) if isinstance(i, int)]
    added = [o.id for o in orders if o.shop_id == shop.id and o.id not in known]
    if not added and (data.get("email") or not email_address):
        return
    data["orders"] = (added + known)[:MAX_GRANTS]
    data.setdefault("returns", [])
    data.setdefault("drafts", {})
    if email_address and not data.get("email"):
        data["email"] = email_address
    _save(shop, data)


def sign_out(shop: Shop) -> None:
    everything = dict(_all())
    everything.pop(str(shop.id), None)
    session["portal"] = everything


def order_ids(shop: Shop) -> list[int]:
    return [i for i in grants(shop).get("orders", []) if isinstance(i, int)]


def orders(shop: Shop) -> list[Order]:
    found = (services.get_order(shop, order_id) for order_id in order_ids(shop))
    return sorted((o for o in found if o is not None), key=lambda o: o.placed_at, reverse=True)


def require_order(shop: Shop, order_id: int) -> Order:
    """The order if this shopper may see it; 404 otherwise."""
    if order_id not in order_ids(shop):
        abort(404)
    order = services.get_order(shop, order_id)
    if order is None:
        abort(404)
    return order


def grant_return(shop: Shop, ret: Return) -> None:
    data = dict(grants(shop))
    returns = [i for i in data.get("returns", []) if i != ret.id]
    data["returns"] = (returns + [ret.id])[-MAX_GRANTS:]
    _save(shop, data)


def may_see(shop: Shop, ret: Return) -> bool:
    if ret.shop_id != shop.id:
        return False
    data = grants(shop)
    return ret.id in data.get("returns", []) or ret.order_id in order_ids(shop)


def find_return(shop: Shop, rma: str) -> Return | None:
    """The submitted return called `rma` ("R-1042") in this shop, granted or not."""
    match = _RMA.fullmatch(rma or "")
    if not match:
        return None
    ret = services.get_return_by_number(shop, int(match.group(1)))
    return ret if ret is not None and ret.state != lifecycle.DRAFT else None


def require_return(shop: Shop, rma: str) -> Return:
    """The return if this shopper may see it; 404 otherwise."""
    ret = find_return(shop, rma)
    if ret is None or not may_see(shop, ret):
        abort(404)
    return ret


# --------------------------------------------------------------------------------------- drafts

def remember_draft(shop: Shop, order: Order, ret: Return) -> None:
    data = dict(grants(shop))
    drafts = dict(data.get("drafts") or {})
    drafts[str(order.id)] = ret.id
    data["drafts"] = drafts
    _save(shop, data)


def forget_draft(shop: Shop, order: Order) -> None:
    data = dict(grants(shop))
    drafts = dict(data.get("drafts") or {})
    drafts.pop(str(order.id), None)
    data["drafts"] = drafts
    _save(shop, data)


def draft_for(shop: Shop, order: Order) -> Return | None:
    """The draft this shopper is building for `order`, if it still is one."""
    return_id = (grants(shop).get("drafts") or {}).get(str(order.id))
    if not isinstance(return_id, int):
        return None
    ret = services.get_return(shop, return_id)
    if ret is None or ret.order_id != order.id or ret.state != lifecycle.DRAFT:
        return None
    return ret


def return_of_order(shop: Shop, order: Order, return_id: int | None) -> Return | None:
    """A return of `order` by id, in any state (the confirm button names its return)."""
    if return_id is None:
        return None
    ret = services.get_return(shop, return_id)
    return ret if ret is not None and ret.order_id == order.id else None


def submitted_returns(shop: Shop, orders_: list[Order]) -> dict[int, list[Return]]:
    """The submitted (not draft) returns of the given orders, by order id, newest first."""
    ids = [o.id for o in orders_ if o.shop_id == shop.id]
    if not ids:
        return {}
    found = db.session.scalars(select(Return).where(
        Return.shop_id == shop.id, Return.order_id.in_(ids), Return.state != lifecycle.DRAFT,
        Return.number.is_not(None)).order_by(Return.id.desc()))
    by_order: dict[int, list[Return]] = {}
    for ret in found:
        by_order.setdefault(ret.order_id, []).append(ret)
    return by_order


# ----------------------------------------------------------------------------------- withdrawal

def set_pending_withdrawal(shop: Shop, data: dict) -> None:
    """The matched withdrawal between its two pages: order id, name, email and a one-time nonce."""
    everything = dict(session.get("portal_withdrawal") or {})
    everything[str(shop.id)] = data
    session["portal_withdrawal"] = everything


def pending_withdrawal(shop: Shop) -> dict | None:
    data = (session.get("portal_withdrawal") or {}).get(str(shop.id))
    if not isinstance(data, dict) or not isinstance(data.get("order"), int):
        return None
    return data


def clear_pending_withdrawal(shop: Shop) -> None:
    everything = dict(session.get("portal_withdrawal") or {})
    everything.pop(str(shop.id), None)
    session["portal_withdrawal"] = everything


def latest_withdrawal(shop: Shop, order: Order, email_address: str) -> Return | None:
    """The newest withdrawal of `order` by `email_address` (to answer a repeated confirmation)."""
    return db.session.scalar(select(Return).where(
        Return.shop_id == shop.id, Return.order_id == order.id, Return.is_withdrawal.is_(True),
        Return.email == (email_address or "").strip().lower()).order_by(Return.id.desc()))
