"""Admin GraphQL Order nodes as Shopify answers them (OrdersCatchUp / OrderGet), the same orders
as lines of a bulk operation's JSONL file (one object per line, each line item its own object with
`__parentId`, following its order), and an order's refunds (OrderRefundLines) beside Refund rows
of the connector's own."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from connector import db
from connector.returns.models import Order, Refund, Return
from tests.shopify.factories import line_gid, order_gid


def money(amount: str, currency: str = "EUR") -> dict[str, Any]:
    return {"shopMoney": {"amount": amount, "currencyCode": currency}}


def line_node(number: str, position: int, *, title: str = "Trail Runner", price: str = "89.95",
              quantity: int = 1, current_quantity: int | None = None, sku: str | None = None,
              variant: str | None = "42 / Blue", discount: str | None = None, tax: str = "14.36",
              gift_card: bool = False, product_type: str = "Shoes", tags: tuple[str, ...] = ("running",),
              image: str | None = "https://cdn.shopify.com/s/files/1/0001/trail.jpg") -> dict[str, Any]:
    return {
        "id": line_gid(number, position),
        "title": title,
        "variantTitle": variant,
        "sku": sku if sku is not None else f"SKU-{number}-{position}",
        "quantity": quantity,
        "currentQuantity": quantity if current_quantity is None else current_quantity,
        "isGiftCard": gift_card,
        "originalUnitPriceSet": money(price),
        "discountAllocations": [{"allocatedAmountSet": money(discount)}] if discount else [],
        "taxLines": [{"priceSet": money(tax)}] if tax else [],
        "image": {"url": image} if image else None,
        "product": {"productType": product_type, "tags": list(tags)},
    }


def order_node(number: str, *, updated_at: str = "2026-04-10T09:00:00Z", email: str = "Erika@Example.com",
               lines: list[dict[str, Any]] | None = None, created_at: str = "2026-04-01T08:00:00Z",
               delivered_at: str | None = "2026-04-04T12:00:00Z", cancelled_at: str | None = None,
               total: str = "184.80", currency: str = "EUR", more_lines: bool = False) -> dict[str, Any]:
    """An Order node with its first page of line items (as OrdersCatchUp and OrderGet select it)."""
    lines = lines if lines is not None else [line_node(number, 1), line_node(number, 2, title="Wool Socks",
                                                                             price="4.95", quantity=2, tax="1.58")]
    return {
        "id": order_gid(number),
        "name": f"#{number}",
        "email": email,
        "currencyCode": currency,
        "createdAt": created_at,
        "processedAt": created_at,
        "updatedAt": updated_at,
        "cancelledAt": cancelled_at,
        "customerLocale": "de",
        "customer": {"id": f"gid://shopify/Customer/{900000 + int(number)}"},
        "tags": ["vip"],
        "taxesIncluded": True,
        "paymentGatewayNames": ["shopify_payments"],
        "totalPriceSet": money(total, currency),
        "totalShippingPriceSet": money("4.90", currency),
        "shippingLine": {"discountedPriceSet": money("4.90", currency), "taxLines": [{"priceSet": money("0.78", currency)}]},
        "shippingAddress": {"name": "Erika Mustermann", "firstName": "Erika", "lastName": "Mustermann",
                            "address1": "Musterstraße 1", "address2": None, "zip": "10115", "city": "Berlin",
                            "countryCodeV2": "DE", "provinceCode": "BE", "phone": "+49 30 1234567"},
        "billingAddress": {"name": "Erika Mustermann", "firstName": "Erika", "lastName": "Mustermann"},
        "fulfillments": [{"status": "SUCCESS", "displayStatus": "DELIVERED" if delivered_at else "IN_TRANSIT",
                          "createdAt": "2026-04-02T10:00:00Z", "updatedAt": delivered_at or "2026-04-02T10:00:00Z",
                          "deliveredAt": delivered_at}],
        "lineItems": {"pageInfo": {"hasNextPage": more_lines, "endCursor": "cursor-lines-1" if more_lines else None},
                      "nodes": lines},
    }


def jsonl_lines(order: dict[str, Any]) -> list[str]:
    """One order as bulk JSONL: the order object (its connection left out), then each line item
    with `__parentId`, as Shopify writes them when objects are grouped."""
    head = {k: v for k, v in order.items() if k != "lineItems"}
    out = [json.dumps(head)]
    for item in order["lineItems"]["nodes"]:
        out.append(json.dumps({**item, "__parentId": order["id"]}))
    return out


def jsonl(orders: list[dict[str, Any]]) -> bytes:
    return ("\n".join(line for o in orders for line in jsonl_lines(o)) + "\n").encode()


def refund_of_ours(shop, number, *, platform_refund_id=None, key_suffix="1"):
    """A return of the order with a Refund row of the connector (as services.request_refund makes)."""
    order = db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))
    ret = Return(shop_id=shop.id, order_id=order.id, email=order.email, currency=order.currency, state="refunded")
    db.session.add(ret)
    db.session.flush()
    refund = Refund(shop_id=shop.id, return_id=ret.id, amount=Decimal("10.00"), currency="EUR", state="succeeded",
                    idempotency_key=f"rc-{shop.id}-{ret.id}-{key_suffix}", platform_refund_id=platform_refund_id)
    db.session.add(refund)
    db.session.commit()
    return refund


def refund_lines_answer(number, refunds):
    """OrderRefundLines as Shopify answers it: [(refund GID, note, {line position: units})]."""
    return {"data": {"order": {"id": order_gid(number), "refunds": [
        {"id": gid, "note": note, "refundLineItems": {"nodes": [
            {"quantity": qty, "lineItem": {"id": line_gid(number, pos)}} for pos, qty in lines.items()]}}
        for gid, note, lines in refunds]}}}
