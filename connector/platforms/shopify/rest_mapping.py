"""Webhook payloads (Shopify's REST JSON shape) turned into the domain's plain data.

Pure functions: no Flask, no database, no network. Webhooks carry REST-shaped JSON even for apps
on the GraphQL API, so this module is the webhook twin of `mapping` (GraphQL nodes -> OrderData);
both produce the same ids: every order and line id is the resource's GraphQL GID, read from
`admin_graphql_api_id` (or built from the numeric `id` when a payload lacks it).

Money is `Decimal` in the shop's currency: the `*_set.shop_money.amount` strings where the payload
has them (the plain fields may be in the presentment currency on multi-currency shops), the plain
string fields otherwise. A JSON number is never taken as money. A payload that cannot be mapped
raises `PayloadError` naming the field.

Documented shapes: tests/fixtures/shopify/webhooks/ (README there names the sources).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping

from connector.returns.ports import OrderData, OrderLineData

ZERO = Decimal("0")


class PayloadError(ValueError):
    """The payload lacks something the mapping needs or holds it in the wrong shape."""


# ---------------------------------------------------------------------------- small readers


def gid(obj: Mapping[str, Any], kind: str, *, id_key: str = "id", gid_key: str = "admin_graphql_api_id") -> str:
    """The GraphQL GID of a REST object: its `admin_graphql_api_id`, else built from its numeric id."""
    value = obj.get(gid_key)
    prefix = f"gid://shopify/{kind}/"
    if isinstance(value, str) and value.startswith(prefix) and value[len(prefix):].isdigit():
        return value
    return gid_from_id(obj.get(id_key), kind, what=f"{kind} {id_key}")


def gid_from_id(value: Any, kind: str, *, what: str = "id") -> str:
    """`gid://shopify/<kind>/<id>` from a numeric id (int or digit string)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise PayloadError(f"{what}: not a Shopify id ({value!r})")
    return f"gid://shopify/{kind}/{int(value)}"


def moment(value: Any, what: str) -> datetime | None:
    """An ISO-8601 timestamp with offset as aware UTC; None when absent."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise PayloadError(f"{what}: not a timestamp ({value!r})")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise PayloadError(f"{what}: not an ISO-8601 timestamp ({value!r})") from None
    if parsed.tzinfo is None:
        raise PayloadError(f"{what}: the timestamp has no UTC offset ({value!r})")
    return parsed.astimezone(timezone.utc)


def _amount(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise PayloadError(f"{what}: a JSON number is not taken as money ({value!r})")
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, str):
        raise PayloadError(f"{what}: not an amount ({value!r})")
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise PayloadError(f"{what}: not an amount ({value!r})") from None
    if not amount.is_finite():
        raise PayloadError(f"{what}: not an amount ({value!r})")
    return amount


def shop_money(obj: Mapping[str, Any] | None, set_key: str, plain_key: str | None, what: str) -> Decimal:
    """`obj[set_key].shop_money.amount`, else the plain `obj[plain_key]` string, else 0."""
    if not obj:
        return ZERO
    money_set = obj.get(set_key)
    if isinstance(money_set, Mapping):
        shop = money_set.get("shop_money")
        if isinstance(shop, Mapping) and shop.get("amount") is not None:
            return _amount(shop["amount"], f"{what}.{set_key}.shop_money.amount")
    if plain_key and obj.get(plain_key) not in (None, ""):
        return _amount(obj[plain_key], f"{what}.{plain_key}")
    return ZERO


def _text(value: Any, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _quantity(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"{what}: not a quantity ({value!r})")
    return value


def _objects(value: Any, what: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise PayloadError(f"{what}: not a list of objects")
    return value


def locale_code(value: Any) -> str | None:
    """A customer locale as the domain keeps it: language, plus a two-letter region when given
    (`en`, `de-AT`); None when absent or not a language tag."""
    if not isinstance(value, str) or not value.strip():
        return None
    parts = value.strip().replace("_", "-").split("-")
    language = parts[0].lower()
    if not (2 <= len(language) <= 3 and language.isalpha()):
        return None
    region = parts[-1] if len(parts) > 1 else ""
    return f"{language}-{region.upper()}" if len(region) == 2 and region.isalpha() else language


# ---------------------------------------------------------------------------- refunds


@dataclass(frozen=True)
class RestRefund:
    """A refund as webhooks show it (refunds/create, and each entry of an order's `refunds`)."""

    platform_id: str  # gid://shopify/Refund/...
    order_id: str  # gid://shopify/Order/...
    note: str
    created_at: datetime | None
    return_id: str | None  # gid://shopify/Return/... when the refund settles a return
    line_quantities: dict[str, int] = field(default_factory=dict)  # LineItem GID -> units refunded


def refund_from_rest(payload: Mapping[str, Any], order_id: str | None = None) -> RestRefund:
    """Map a refunds/create payload (or an order's `refunds[]` entry, with the order's GID)."""
    if not isinstance(payload, Mapping):
        raise PayloadError("refund: not an object")
    order_gid = order_id or gid_from_id(payload.get("order_id"), "Order", what="refund order_id")
    quantities: dict[str, int] = {}
    for i, item in enumerate(_objects(payload.get("refund_line_items"), "refund_line_items")):
        line = item.get("line_item") if isinstance(item.get("line_item"), Mapping) else {}
        line_gid = (gid(line, "LineItem") if line.get("admin_graphql_api_id") or line.get("id") is not None
                    else gid_from_id(item.get("line_item_id"), "LineItem", what=f"refund_line_items[{i}].line_item_id"))
        qty = _quantity(item.get("quantity"), f"refund_line_items[{i}].quantity")
        quantities[line_gid] = quantities.get(line_gid, 0) + qty
    ret = payload.get("return")
    return_gid = gid(ret, "Return") if isinstance(ret, Mapping) and (ret.get("admin_graphql_api_id")
                                                                    or ret.get("id") is not None) else None
    return RestRefund(platform_id=gid(payload, "Refund"), order_id=order_gid, note=_text(payload.get("note"), 2000),
                      created_at=moment(payload.get("created_at"), "refund created_at"), return_id=return_gid,
                      line_quantities=quantities)


# ---------------------------------------------------------------------------- orders


def _address(value: Any) -> dict[str, str]:
    """A REST address as the domain keeps it (the keys of ports.Address); empty fields dropped."""
    if not isinstance(value, Mapping):
        return {}
    name = _text(value.get("name"), 255) or " ".join(
        p for p in (_text(value.get("first_name"), 120), _text(value.get("last_name"), 120)) if p)
    address = {
        "name": name,
        "line1": _text(value.get("address1"), 255),
        "line2": _text(value.get("address2"), 255),
        "postcode": _text(value.get("zip"), 32),
        "city": _text(value.get("city"), 255),
        "region": _text(value.get("province_code"), 64) or _text(value.get("province"), 64),
        "country": _text(value.get("country_code"), 2).upper(),
        "phone": _text(value.get("phone"), 64),
    }
    return {k: v for k, v in address.items() if v}


def _customer_name(payload: Mapping[str, Any], shipping: dict[str, str]) -> str:
    if shipping.get("name"):
        return shipping["name"]
    billing = _address(payload.get("billing_address"))
    if billing.get("name"):
        return billing["name"]
    customer = payload.get("customer") if isinstance(payload.get("customer"), Mapping) else {}
    return " ".join(p for p in (_text(customer.get("first_name"), 120), _text(customer.get("last_name"), 120)) if p)


def _customer_id(payload: Mapping[str, Any]) -> str | None:
    """The Customer GID of the account that placed the order; None for a guest order."""
    customer = payload.get("customer")
    if not isinstance(customer, Mapping) or (customer.get("admin_graphql_api_id") is None
                                             and customer.get("id") is None):
        return None
    return gid(customer, "Customer")


def _email(payload: Mapping[str, Any]) -> str:
    customer = payload.get("customer") if isinstance(payload.get("customer"), Mapping) else {}
    for value in (payload.get("email"), payload.get("contact_email"), customer.get("email")):
        if isinstance(value, str) and value.strip():
            return value.strip().lower()[:255]
    return ""  # POS and draft orders may have no email; the portal then finds them by postcode


def _line(item: Mapping[str, Any], index: int, gone: int) -> OrderLineData:
    """One line item; `gone` is how many of its units Shopify no longer counts as bought."""
    what = f"line_items[{index}]"
    quantity = _quantity(item.get("quantity"), f"{what}.quantity")
    discount = ZERO
    allocations = _objects(item.get("discount_allocations"), f"{what}.discount_allocations")
    for j, allocation in enumerate(allocations):
        discount += shop_money(allocation, "amount_set", "amount", f"{what}.discount_allocations[{j}]")
    if not allocations:
        discount = shop_money(item, "total_discount_set", "total_discount", what)
    tax = sum((shop_money(t, "price_set", "price", f"{what}.tax_lines[{j}]")
               for j, t in enumerate(_objects(item.get("tax_lines"), f"{what}.tax_lines"))), ZERO)
    return OrderLineData(
        platform_id=gid(item, "LineItem"),
        title=_text(item.get("title"), 255) or _text(item.get("name"), 255) or "?",
        quantity=quantity,
        unit_price=shop_money(item, "price_set", "price", what),
        sku=_text(item.get("sku"), 128),
        variant_title=_text(item.get("variant_title"), 255),
        discount_total=discount,
        tax_total=tax,
        final_sale=item.get("gift_card") is True,  # a gift card is not returned; it is refunded as money
        refunded_quantity=min(quantity, gone),
    )


def _shipping(payload: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
    """What the shopper paid for shipping (after shipping discounts) and its tax."""
    total = tax = ZERO
    for i, line in enumerate(_objects(payload.get("shipping_lines"), "shipping_lines")):
        if line.get("is_removed") is True:
            continue
        what = f"shipping_lines[{i}]"
        if isinstance(line.get("discounted_price_set"), Mapping) or line.get("discounted_price") not in (None, ""):
            total += shop_money(line, "discounted_price_set", "discounted_price", what)
        else:
            total += shop_money(line, "price_set", "price", what) - sum(
                (shop_money(a, "amount_set", "amount", f"{what}.discount_allocations[{j}]")
                 for j, a in enumerate(_objects(line.get("discount_allocations"), f"{what}.discount_allocations"))),
                ZERO)
        tax += sum((shop_money(t, "price_set", "price", f"{what}.tax_lines[{j}]")
                    for j, t in enumerate(_objects(line.get("tax_lines"), f"{what}.tax_lines"))), ZERO)
    return total, tax


# Fulfillment statuses that put no parcel on its way (as mapping._NOT_SHIPPED for GraphQL).
NOT_SHIPPED = {"cancelled", "error", "failure"}


def fulfilment_dates(payload: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    """(fulfilled_at, delivered_at) from an order's `fulfillments`, as `mapping.fulfilment_dates`
    reads GraphQL: the last parcel sent, and its delivery once every parcel sent is delivered, so
    that the return window of a split order runs from the last one.

    The REST shape has no delivery time: a delivered parcel counts from its `updated_at`
    (fulfillment_events/create gives the exact time; the handler keeps the one it has).
    """
    shipped = [(i, f) for i, f in enumerate(_objects(payload.get("fulfillments"), "fulfillments"))
               if (f.get("status") or "") not in NOT_SHIPPED]
    created = [c for c in (moment(f.get("created_at"), f"fulfillments[{i}].created_at") for i, f in shipped) if c]
    fulfilled_at = max(created) if created else None
    delivered = []
    for i, f in shipped:
        if f.get("shipment_status") != "delivered":
            return fulfilled_at, None
        at = (moment(f.get("updated_at"), f"fulfillments[{i}].updated_at")
              or moment(f.get("created_at"), f"fulfillments[{i}].created_at"))
        if at is None:
            return fulfilled_at, None
        delivered.append(at)
    return fulfilled_at, (max(delivered) if delivered else None)


def order_refunds(payload: Mapping[str, Any]) -> list[RestRefund]:
    """The order's refunds (`refunds[]`) as RestRefund, with the order's GID."""
    order_gid = gid(payload, "Order")
    return [refund_from_rest(r, order_id=order_gid) for r in _objects(payload.get("refunds"), "refunds")]


def order_from_rest(payload: Any, *, is_own_refund: Callable[[RestRefund], bool] = lambda refund: False) -> OrderData:
    """Map an orders/create|updated|cancelled payload to OrderData.

    `refunded_quantity` of a line counts the units gone from it on Shopify (refunds and order
    edits: quantity - current_quantity) except those of the connector's own refunds, which the
    domain counts from its Refund rows; `is_own_refund` tells which refunds those are.
    """
    if not isinstance(payload, Mapping):
        raise PayloadError("order: not an object")
    currency = _text(payload.get("currency"), 3).upper()
    if len(currency) != 3:
        raise PayloadError(f"order currency: not a currency code ({payload.get('currency')!r})")
    number = _text(payload.get("name"), 64).lstrip("#").strip() or str(payload.get("order_number") or "")
    if not number:
        raise PayloadError("order name: missing")
    placed_at = moment(payload.get("processed_at"), "order processed_at") or moment(payload.get("created_at"),
                                                                                    "order created_at")
    if placed_at is None:
        raise PayloadError("order created_at: missing")

    refunded_by_others: dict[str, int] = {}
    own: dict[str, int] = {}
    for refund in order_refunds(payload):
        target = own if is_own_refund(refund) else refunded_by_others
        for line_gid, qty in refund.line_quantities.items():
            target[line_gid] = target.get(line_gid, 0) + qty

    lines = []
    for i, item in enumerate(_objects(payload.get("line_items"), "line_items")):
        line_gid = gid(item, "LineItem")
        quantity = _quantity(item.get("quantity"), f"line_items[{i}].quantity")
        current = item.get("current_quantity")
        if isinstance(current, int) and not isinstance(current, bool):
            # What is left after refunds and order edits, less the units of our own refunds.
            gone = max(0, quantity - current - own.get(line_gid, 0))
        else:  # older API versions: only the refunds tell what is gone
            gone = refunded_by_others.get(line_gid, 0)
        lines.append(_line(item, i, gone))

    shipping_address = _address(payload.get("shipping_address"))
    shipping_total, shipping_tax = _shipping(payload)
    tags = tuple(t.strip()[:100] for t in (payload.get("tags") or "").split(",") if t.strip()) \
        if isinstance(payload.get("tags"), str) else ()
    gateways = payload.get("payment_gateway_names")
    gateway = _text(gateways[0], 64) if isinstance(gateways, list) and gateways else ""
    fulfilled_at, delivered_at = fulfilment_dates(payload)
    return OrderData(
        platform_id=gid(payload, "Order"),
        number=number,
        email=_email(payload),
        currency=currency,
        placed_at=placed_at,
        lines=tuple(lines),
        customer_name=_customer_name(payload, shipping_address)[:255],
        customer_id=_customer_id(payload),
        locale=locale_code(payload.get("customer_locale")),
        shipping_address=shipping_address,
        taxes_included=payload.get("taxes_included") is True,
        shipping_total=shipping_total,
        shipping_tax=shipping_tax,
        total=shop_money(payload, "total_price_set", "total_price", "order"),
        payment_gateway=gateway or None,
        tags=tags[:50],
        fulfilled_at=fulfilled_at,
        delivered_at=delivered_at,
        cancelled_at=moment(payload.get("cancelled_at"), "order cancelled_at"),
        updated_at=moment(payload.get("updated_at"), "order updated_at"),
    )


# ---------------------------------------------------------------------------- fulfilments


@dataclass(frozen=True)
class RestFulfilment:
    """fulfillments/create|update: when the parcel left, and whether it has arrived."""

    order_id: str
    status: str  # pending | open | success | cancelled | error | failure
    shipment_status: str | None  # ... | in_transit | out_for_delivery | delivered | failure
    created_at: datetime | None
    updated_at: datetime | None


def fulfilment_from_rest(payload: Any) -> RestFulfilment:
    if not isinstance(payload, Mapping):
        raise PayloadError("fulfillment: not an object")
    return RestFulfilment(order_id=gid_from_id(payload.get("order_id"), "Order", what="fulfillment order_id"),
                          status=_text(payload.get("status"), 32),
                          shipment_status=_text(payload.get("shipment_status"), 32) or None,
                          created_at=moment(payload.get("created_at"), "fulfillment created_at"),
                          updated_at=moment(payload.get("updated_at"), "fulfillment updated_at"))


@dataclass(frozen=True)
class RestFulfilmentEvent:
    """fulfillment_events/create: a carrier status of one fulfillment (e.g. `delivered`)."""

    order_id: str
    status: str  # label_printed | in_transit | out_for_delivery | delivered | failure | ...
    happened_at: datetime | None


def fulfilment_event_from_rest(payload: Any) -> RestFulfilmentEvent:
    if not isinstance(payload, Mapping):
        raise PayloadError("fulfillment event: not an object")
    return RestFulfilmentEvent(
        order_id=gid_from_id(payload.get("order_id"), "Order", what="fulfillment event order_id"),
        status=_text(payload.get("status"), 32),
        happened_at=moment(payload.get("happened_at"), "fulfillment event happened_at")
        or moment(payload.get("created_at"), "fulfillment event created_at"))
