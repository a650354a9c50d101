"""Admin GraphQL Order nodes become OrderData exactly: shop money as Decimal, GIDs, dates, address."""
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from connector.platforms.shopify.mapping import MappingError, order_from_node
from tests.shopify.factories import line_gid, order_gid
from tests.shopify.order_nodes import line_node, money, order_node


def test_order_node_maps_to_order_data():
    data = order_from_node(order_node("1042"))
    assert data.platform_id == order_gid("1042") and data.number == "1042"
    assert data.email == "Erika@Example.com"  # lower-cased when stored (upsert_order)
    assert data.currency == "EUR" and data.total == Decimal("184.80")
    assert data.placed_at == datetime(2026, 4, 1, 8, 0, tzinfo=timezone.utc)
    assert data.updated_at == datetime(2026, 4, 10, 9, 0, tzinfo=timezone.utc)
    assert data.fulfilled_at == datetime(2026, 4, 2, 10, 0, tzinfo=timezone.utc)
    assert data.delivered_at == datetime(2026, 4, 4, 12, 0, tzinfo=timezone.utc)
    assert data.cancelled_at is None
    assert data.shipping_total == Decimal("4.90") and data.shipping_tax == Decimal("0.78")
    assert data.taxes_included is True and data.locale == "de" and data.tags == ("vip",)
    assert data.payment_gateway == "shopify_payments"
    assert data.customer_name == "Erika Mustermann"
    assert data.customer_id == "gid://shopify/Customer/901042"
    assert data.shipping_address == {"name": "Erika Mustermann", "line1": "Musterstraße 1", "line2": "",
                                     "postcode": "10115", "city": "Berlin", "country": "DE", "region": "BE",
                                     "phone": "+49 30 1234567"}
    first, second = data.lines
    assert first.platform_id == line_gid("1042", 1)
    assert (first.title, first.variant_title, first.sku) == ("Trail Runner", "42 / Blue", "SKU-1042-1")
    assert first.unit_price == Decimal("89.95") and isinstance(first.unit_price, Decimal)
    assert first.tax_total == Decimal("14.36") and first.discount_total == Decimal("0")
    assert (first.product_type, first.product_tags) == ("Shoes", ("running",))
    assert first.image_url.endswith("trail.jpg")
    assert (second.quantity, second.unit_price) == (2, Decimal("4.95"))


def test_discounts_refunds_and_gift_cards():
    lines = [line_node("7", 1, quantity=3, current_quantity=1, discount="10.00"),
             line_node("7", 2, gift_card=True, image=None, variant=None, sku="")]
    data = order_from_node(order_node("7", lines=lines))
    assert data.lines[0].discount_total == Decimal("10.00")
    assert data.lines[0].refunded_quantity == 2  # refunded or removed on Shopify
    assert data.lines[1].final_sale is True
    assert (data.lines[1].image_url, data.lines[1].variant_title, data.lines[1].sku) == (None, "", "")


def test_a_split_order_is_delivered_when_its_last_parcel_is():
    node = order_node("8")
    node["fulfillments"] = [
        {"status": "SUCCESS", "displayStatus": "DELIVERED", "createdAt": "2026-04-02T10:00:00Z",
         "updatedAt": "2026-04-03T10:00:00Z", "deliveredAt": "2026-04-03T10:00:00Z"},
        {"status": "SUCCESS", "displayStatus": "IN_TRANSIT", "createdAt": "2026-04-05T10:00:00Z",
         "updatedAt": "2026-04-05T10:00:00Z", "deliveredAt": None},
        {"status": "CANCELLED", "displayStatus": "CANCELED", "createdAt": "2026-04-09T10:00:00Z",
         "updatedAt": "2026-04-09T10:00:00Z", "deliveredAt": None},
    ]
    data = order_from_node(node)
    assert data.fulfilled_at == datetime(2026, 4, 5, 10, 0, tzinfo=timezone.utc)
    assert data.delivered_at is None
    node["fulfillments"][1].update(displayStatus="DELIVERED", deliveredAt="2026-04-07T08:00:00Z")
    assert order_from_node(node).delivered_at == datetime(2026, 4, 7, 8, 0, tzinfo=timezone.utc)


def test_shop_money_is_used_not_presentment_money():
    node = order_node("9")
    node["totalPriceSet"] = {"shopMoney": {"amount": "100.00", "currencyCode": "EUR"},
                             "presentmentMoney": {"amount": "86.00", "currencyCode": "GBP"}}
    data = order_from_node(node)
    assert (data.total, data.currency) == (Decimal("100.00"), "EUR")


def test_lines_from_a_bulk_file_and_edges_are_accepted():
    node = order_node("10")
    items = node.pop("lineItems")["nodes"]
    assert len(order_from_node(node, lines=items).lines) == 2
    node["lineItems"] = {"edges": [{"node": item} for item in items]}
    assert len(order_from_node(node).lines) == 2


def test_a_guest_order_has_no_customer_id():
    node = order_node("13")
    node["customer"] = None
    assert order_from_node(node).customer_id is None


def test_a_float_amount_is_refused():
    node = order_node("11")
    node["totalPriceSet"] = money("1")
    node["totalPriceSet"]["shopMoney"]["amount"] = 1.1
    with pytest.raises(MappingError):
        order_from_node(node)


def test_a_node_without_id_is_refused():
    node = order_node("12")
    del node["id"]
    with pytest.raises(MappingError):
        order_from_node(node)
