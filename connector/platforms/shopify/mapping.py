"""Admin GraphQL `Order` nodes -> `ports.OrderData`. Pure functions: no Flask, no database, no HTTP.

The node is what OrdersCatchUp / OrderGet / the bulk query select (see graphql/). Line items come
as a connection (`lineItems.nodes` or `lineItems.edges[].node`) or, from a bulk JSONL file, as the
child lines passed in `lines`.

Money is always the shop's currency (`shopMoney` of each MoneyBag), as a Decimal parsed from
Shopify's decimal string, never a float: refunds are made in the shop's money too. Amounts follow
`order.taxesIncluded` (gross when true), as Shopify reports them.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from connector.returns.ports import OrderData, OrderLineData

ZERO = Decimal("0")
# Fulfillments that put no parcel on its way.
_NOT_SHIPPED = {"CANCELLED", "ERROR", "FAILURE"}
_DELIVERED_DISPLAY = {"DELIVERED", "PICKED_UP"}


class MappingError(ValueError):
    """The node lacks what an order needs (id, name, creation date)."""


def order_from_node(node: dict[str, Any], lines: Iterable[dict[str, Any]] | None = None) -> OrderData:
    """The OrderData of an Admin GraphQL Order node (`lines`: its LineItem nodes, when given apart)."""
    try:
        gid = node["id"]
        name = node["name"]
        placed_at = _when(node.get("processedAt")) or _when(node["createdAt"])
    except (KeyError, TypeError) as exc:
        raise MappingError(f"order node without {exc}") from exc
    if not gid or not name or placed_at is None:
        raise MappingError(f"order node {gid!r} lacks id, name or creation date")
    line_nodes = list(lines) if lines is not None else connection_nodes(node.get("lineItems"))
    total_bag = node.get("totalPriceSet")
    address = node.get("shippingAddress") or {}
    shipping_line = node.get("shippingLine")
    if shipping_line:
        shipping_total = money(shipping_line.get("discountedPriceSet"))
        shipping_tax = money_sum(t.get("priceSet") for t in shipping_line.get("taxLines") or [])
    else:
        shipping_total, shipping_tax = money(node.get("totalShippingPriceSet")), ZERO
    fulfilled_at, delivered_at = fulfilment_dates(node.get("fulfillments") or [])
    gateways = node.get("paymentGatewayNames") or []
    return OrderData(
        platform_id=gid,
        number=_text(name.lstrip("#").strip(), 64),
        email=_text(node.get("email"), 255),
        currency=currency(total_bag) or _text(node.get("currencyCode"), 3),
        placed_at=placed_at,
        lines=tuple(line_from_node(item) for item in line_nodes),
        customer_name=_text(person_name(address) or person_name(node.get("billingAddress") or {}), 255),
        customer_id=(node.get("customer") or {}).get("id") or None,  # None: a guest order
        locale=_locale(node.get("customerLocale")),
        shipping_address=shipping_address(address),
        taxes_included=bool(node.get("taxesIncluded", True)),
        shipping_total=shipping_total,
        shipping_tax=shipping_tax,
        total=money(total_bag),
        payment_gateway=_text(gateways[0], 64) or None if gateways else None,
        tags=tuple(_text(t, 255) for t in node.get("tags") or ()),
        fulfilled_at=fulfilled_at,
        delivered_at=delivered_at,
        cancelled_at=_when(node.get("cancelledAt")),
        updated_at=_when(node.get("updatedAt")),
    )


def line_from_node(item: dict[str, Any]) -> OrderLineData:
    """One LineItem node. `refunded_quantity` counts the units refunded or removed on Shopify
    (`quantity - currentQuantity`): they cannot be returned any more. Units of the connector's own
    refunds are among them until `without_own_refunds` takes them out (sync.py does, for orders
    that hold refunds of ours)."""
    quantity = int(item.get("quantity") or 0)
    current = item.get("currentQuantity")
    refunded = max(0, quantity - int(current)) if current is not None else 0
    product = item.get("product") or {}
    image = item.get("image") or {}
    return OrderLineData(
        platform_id=item["id"],
        title=_text(item.get("title"), 255),
        quantity=quantity,
        unit_price=money(item.get("originalUnitPriceSet")),
        sku=_text(item.get("sku"), 128),
        variant_title=_text(item.get("variantTitle"), 255),
        product_type=_text(product.get("productType"), 128),
        product_tags=tuple(_text(t, 255) for t in product.get("tags") or ()),
        discount_total=money_sum(a.get("allocatedAmountSet") for a in item.get("discountAllocations") or []),
        tax_total=money_sum(t.get("priceSet") for t in item.get("taxLines") or []),
        final_sale=bool(item.get("isGiftCard")),  # a gift card is never sent back
        refunded_quantity=min(refunded, quantity),
        image_url=_text(image.get("url"), 1024) or None,
    )


def without_own_refunds(data: OrderData, own_units: Mapping[str, int]) -> OrderData:
    """`data` with the units of the connector's own refunds (by line GID) taken out of each line's
    `refunded_quantity`: the domain counts those from its Refund rows, and counting them twice
    would leave fewer units returnable than there are."""
    if not own_units:
        return data
    lines = tuple(replace(line, refunded_quantity=max(0, line.refunded_quantity - own_units.get(line.platform_id, 0)))
                  for line in data.lines)
    return replace(data, lines=lines)


def refund_line_units(refund: dict[str, Any]) -> dict[str, int]:
    """{LineItem GID: units} a Refund node (OrderRefundLines) took back."""
    units: dict[str, int] = {}
    for item in connection_nodes(refund.get("refundLineItems")):
        gid = (item.get("lineItem") or {}).get("id")
        if gid:
            units[gid] = units.get(gid, 0) + int(item.get("quantity") or 0)
    return units


def shipping_address(address: dict[str, Any]) -> dict[str, str]:
    """A MailingAddress in the domain's keys (see ports.Address)."""
    if not address:
        return {}
    result = {
        "name": person_name(address),
        "line1": address.get("address1") or "",
        "line2": address.get("address2") or "",
        "postcode": address.get("zip") or "",
        "city": address.get("city") or "",
        "country": (address.get("countryCodeV2") or "").upper(),
        "region": address.get("provinceCode") or "",
        "phone": address.get("phone") or "",
    }
    return {key: _text(value, 255) for key, value in result.items()}


def person_name(address: dict[str, Any]) -> str:
    name = (address.get("name") or "").strip()
    if name:
        return name
    return " ".join(p for p in ((address.get("firstName") or "").strip(), (address.get("lastName") or "").strip()) if p)


def fulfilment_dates(fulfillments: list[dict[str, Any]]) -> tuple[datetime | None, datetime | None]:
    """(fulfilled_at, delivered_at) of an order: the last parcel sent, and its delivery once every
    parcel sent is delivered, so that the return window of a split order runs from the last one."""
    shipped = [f for f in fulfillments if (f.get("status") or "") not in _NOT_SHIPPED]
    created = [d for d in (_when(f.get("createdAt")) for f in shipped) if d]
    fulfilled_at = max(created) if created else None
    delivered = []
    for f in shipped:
        at = _when(f.get("deliveredAt"))
        if at is None and (f.get("displayStatus") or "") in _DELIVERED_DISPLAY:
            at = _when(f.get("updatedAt"))
        if at is None:
            return fulfilled_at, None
        delivered.append(at)
    return fulfilled_at, (max(delivered) if delivered else None)


def connection_nodes(connection: Any) -> list[dict[str, Any]]:
    """The nodes of a connection, whether selected as `nodes` or `edges { node }`."""
    if not connection:
        return []
    if isinstance(connection, list):
        return connection
    if connection.get("nodes") is not None:
        return list(connection["nodes"])
    return [edge["node"] for edge in connection.get("edges") or []]


def money(bag: dict[str, Any] | None) -> Decimal:
    """The shop-currency amount of a MoneyBag, exactly."""
    if not bag:
        return ZERO
    amount = (bag.get("shopMoney") or {}).get("amount")
    if amount is None:
        return ZERO
    if isinstance(amount, float):  # Shopify sends decimal strings; a float would lose cents
        raise MappingError("money amount sent as a float")
    try:
        return Decimal(str(amount))
    except InvalidOperation as exc:
        raise MappingError(f"not an amount: {amount!r}") from exc


def money_sum(bags: Iterable[dict[str, Any] | None]) -> Decimal:
    return sum((money(b) for b in bags), ZERO)


def currency(bag: dict[str, Any] | None) -> str:
    return ((bag or {}).get("shopMoney") or {}).get("currencyCode") or ""


def _when(value: Any) -> datetime | None:
    """Shopify's ISO 8601 DateTime ("2026-04-01T10:00:00Z") as an aware UTC datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _locale(value: Any) -> str | None:
    """"fr-CA" stays (it fits Order.locale); anything longer is cut to its language."""
    if not value:
        return None
    value = str(value).strip()
    return value if len(value) <= 8 else value[:2].lower()


def _text(value: Any, limit: int) -> str:
    return str(value).strip()[:limit] if value is not None else ""
