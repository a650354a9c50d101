"""WooCommerce order JSON (REST wc/v3, webhook payloads alike) -> `ports.OrderData`.

Pure functions: no Flask, no database, no HTTP.

Amounts. WooCommerce keeps line amounts WITHOUT tax whatever `prices_include_tax` says:
`subtotal` (before coupons) and `total` (after), with `subtotal_tax` / `total_tax` beside them.
The domain's OrderLine wants `unit_price` before discounts, gross when the order's taxes are
included (models.OrderLine, returns/refunds.py: a line is worth unit_price * bought -
discount_total, + tax_total when taxes are not included). So:

    taxes included:  unit_price = (subtotal + subtotal_tax) / qty; discount = that * qty - (total + total_tax)
    taxes excluded:  unit_price = subtotal / qty;                 discount = that * qty - total
    tax_total = total_tax

Either way the line is worth exactly total + total_tax, what the shopper paid. A unit price that
does not divide evenly is rounded UP to the currency's minor unit and the cent it adds goes into
the discount, so the line's worth stays exact and the discount never turns negative.

Refunds. The order JSON lists its refunds (`refunds[]`: id, reason, total) but not which units
they took back; that is in each refund's `line_items` (negative quantities, meta
`_refunded_item_id`), read from `orders/<id>/refunds` and passed as `refunds`. Without them, a
"refunded" order counts every unit as refunded (nothing is left to return).

Dates: the `*_gmt` fields (naive, UTC) become aware UTC datetimes; the local ones are ignored.
"""
from __future__ import annotations

from datetime import datetime, time, timezone
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Callable, Iterable

from connector.returns.money import minor_unit
from connector.returns.ports import OrderData, OrderLineData

ZERO = Decimal("0")
# Order meta keys that delivery-date plugins write (the first one found wins).
DELIVERY_META_KEYS = ("_delivery_date", "delivery_date", "_delivered_at", "delivered_at", "_wcst_delivered_date")


class MappingError(ValueError):
    """The order JSON lacks what an order needs (id, creation date), or has a float amount."""


def order_from_json(order: dict[str, Any], refunds: list[dict[str, Any]] | None = None, *,
                    own_refund: Callable[[dict[str, Any]], bool] | None = None) -> OrderData:
    """The OrderData of a WooCommerce order. `refunds`: the order's refund objects (orders/<id>/
    refunds) when read; `own_refund(refund)` tells the connector's own refunds apart, whose units
    the domain already counts from its Refund rows."""
    try:
        order_id = order["id"]
        placed_at = when(order.get("date_created_gmt"))
    except (KeyError, TypeError) as exc:
        raise MappingError(f"order without {exc}") from exc
    if not order_id or placed_at is None:
        raise MappingError(f"order {order_id!r} lacks an id or a creation date")
    currency = _text(order.get("currency"), 3).upper()
    taxes_included = bool(order.get("prices_include_tax"))
    billing = order.get("billing") or {}
    shipping = order.get("shipping") or {}
    address = shipping_address(shipping if shipping.get("address_1") or shipping.get("city") else billing)
    status = order.get("status") or ""
    units = refunded_units(refunds, own_refund) if refunds is not None else None
    lines = tuple(line_from_json(item, currency, taxes_included, units, fully_refunded=status == "refunded")
                  for item in order.get("line_items") or [])
    customer = order.get("customer_id")
    return OrderData(
        platform_id=str(order_id),
        number=_text(order.get("number") or order_id, 64),
        email=_text(billing.get("email"), 255),
        currency=currency,
        placed_at=placed_at,
        lines=lines,
        customer_name=_text(address.get("name") or person_name(billing), 255),
        customer_id=str(customer) if customer and str(customer) != "0" else None,  # 0: a guest order
        shipping_address=address,
        taxes_included=taxes_included,
        shipping_total=amount(order.get("shipping_total")),
        shipping_tax=amount(order.get("shipping_tax")),
        total=amount(order.get("total")),
        payment_gateway=_text(order.get("payment_method"), 64) or None,
        fulfilled_at=when(order.get("date_completed_gmt")),
        delivered_at=delivery_date(order.get("meta_data") or []),
        # WooCommerce keeps no cancellation date: the last change of a cancelled order is it.
        cancelled_at=when(order.get("date_modified_gmt")) if status == "cancelled" else None,
        updated_at=when(order.get("date_modified_gmt")),
    )


def line_from_json(item: dict[str, Any], currency: str, taxes_included: bool,
                   refunded: dict[str, int] | None = None, *, fully_refunded: bool = False) -> OrderLineData:
    """One `line_items[]` entry (see the module docstring for the amounts)."""
    quantity = int(item.get("quantity") or 0)
    subtotal, total = amount(item.get("subtotal")), amount(item.get("total"))
    tax = amount(item.get("total_tax"))
    if taxes_included:
        subtotal += amount(item.get("subtotal_tax"))
        total += tax
    unit = (subtotal / quantity).quantize(minor_unit(currency), rounding=ROUND_CEILING) if quantity else subtotal
    line_id = str(item.get("id"))
    if refunded is not None:
        units = refunded.get(line_id, 0)
    else:
        units = quantity if fully_refunded else 0
    image = item.get("image") or {}
    return OrderLineData(
        platform_id=line_id,
        title=_text(item.get("name"), 255),
        quantity=quantity,
        unit_price=unit,
        sku=_text(item.get("sku"), 128),
        variant_title=_variant(item),
        discount_total=max(unit * quantity - total, ZERO),
        tax_total=tax,
        refunded_quantity=max(0, min(units, quantity)),
        image_url=_text(image.get("src"), 1024) or None,
    )


def refunded_units(refunds: Iterable[dict[str, Any]],
                   own_refund: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, int]:
    """{line item id: units} the refunds took back (refund line quantities are negative and point
    at the order's line through meta `_refunded_item_id`), the connector's own refunds left out."""
    units: dict[str, int] = {}
    for refund in refunds:
        if own_refund is not None and own_refund(refund):
            continue
        for item in refund.get("line_items") or []:
            target = next((str(m.get("value")) for m in item.get("meta_data") or []
                           if m.get("key") == "_refunded_item_id"), None)
            if target:
                units[target] = units.get(target, 0) + abs(int(item.get("quantity") or 0))
    return units


def shipping_address(address: dict[str, Any]) -> dict[str, str]:
    """A WooCommerce address in the domain's keys (see ports.Address)."""
    if not address:
        return {}
    result = {
        "name": person_name(address),
        "company": address.get("company") or "",
        "line1": address.get("address_1") or "",
        "line2": address.get("address_2") or "",
        "postcode": address.get("postcode") or "",
        "city": address.get("city") or "",
        "country": (address.get("country") or "").upper(),
        "region": address.get("state") or "",
        "phone": address.get("phone") or "",
    }
    return {key: _text(value, 255) for key, value in result.items()}


def person_name(address: dict[str, Any]) -> str:
    return " ".join(p for p in ((address.get("first_name") or "").strip(),
                                (address.get("last_name") or "").strip()) if p)


def delivery_date(meta: list[dict[str, Any]]) -> datetime | None:
    """The delivery date a plugin stored in the order's meta (ISO date or date-time, or a unix
    timestamp), as UTC; None when there is none or it cannot be read."""
    values = {m.get("key"): m.get("value") for m in meta if isinstance(m, dict)}
    for key in DELIVERY_META_KEYS:
        value = values.get(key)
        if value in (None, ""):
            continue
        try:
            if isinstance(value, (int, float)) or str(value).isdigit():
                return datetime.fromtimestamp(int(value), tz=timezone.utc)
            text = str(value).strip()
            if len(text) == 10:
                return datetime.combine(datetime.fromisoformat(text).date(), time(12), tzinfo=timezone.utc)
            return when(text)
        except (ValueError, OverflowError):
            continue
    return None


def amount(value: Any) -> Decimal:
    """A WooCommerce decimal string ("64.13") exactly; a float is refused (it would lose cents)."""
    if value in (None, ""):
        return ZERO
    if isinstance(value, float):
        raise MappingError("amount sent as a float")
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:
        raise MappingError(f"not an amount: {value!r}") from exc


def when(value: Any) -> datetime | None:
    """A `*_gmt` field ("2026-11-21T22:15:58", UTC without an offset) as an aware UTC datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _variant(item: dict[str, Any]) -> str:
    """A variation's attributes ("Size: M, Colour: Blue") from the visible line meta."""
    if not item.get("variation_id"):
        return ""
    parts = [f"{m.get('display_key')}: {m.get('display_value')}" for m in item.get("meta_data") or []
             if isinstance(m, dict) and not str(m.get("key", "")).startswith("_")
             and isinstance(m.get("display_value"), (str, int))]
    return _text(", ".join(parts), 255)


def _text(value: Any, limit: int) -> str:
    return str(value).strip()[:limit] if value is not None else ""
