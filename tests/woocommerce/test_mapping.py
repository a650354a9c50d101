"""WooCommerce order JSON -> OrderData, with the recorded orders (amounts in Decimal)."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from connector.platforms.woocommerce.mapping import MappingError, order_from_json, refunded_units
from connector.returns.refunds import LineInput, plan_refund

FIX = Path(__file__).parents[1] / "fixtures" / "woocommerce" / "fixtures"
ORDER = json.loads((FIX / "order_created_v3.json").read_text())
REFUNDED = json.loads((FIX / "order_fully_refunded.json").read_text())
REFUND = json.loads((FIX / "refund_created_with_line_items.json").read_text())
PAGE = json.loads((FIX / "orders_list_pagination.json").read_text())["orders_list_p1"]["json"]


def test_recorded_order():
    data = order_from_json(ORDER)
    assert (data.platform_id, data.number, data.email, data.currency) == ("13", "13", "ann@example.com", "EUR")
    assert data.taxes_included is False
    assert data.placed_at == datetime(2026, 11, 21, 22, 15, 58, tzinfo=timezone.utc)
    assert data.updated_at == data.placed_at and data.fulfilled_at is None and data.cancelled_at is None
    assert data.total == Decimal("64.13") and data.shipping_total == Decimal("5.00")
    assert data.shipping_tax == Decimal("1.05")
    assert data.payment_gateway == "bacs" and data.customer_id is None  # customer_id 0: a guest
    assert data.customer_name == "Ann Buyer"
    assert data.shipping_address == {"name": "Ann Buyer", "company": "", "line1": "Main 1", "line2": "",
                                     "postcode": "28001", "city": "Madrid", "country": "ES", "region": "",
                                     "phone": ""}
    shirt, mug = data.lines
    assert (shirt.platform_id, shirt.title, shirt.sku, shirt.quantity) == ("1", "T-Shirt", "TS-1", 2)
    assert shirt.unit_price == Decimal("20.00") and shirt.discount_total == Decimal("0")
    assert shirt.tax_total == Decimal("8.40") and shirt.refunded_quantity == 0
    assert (mug.platform_id, mug.unit_price, mug.tax_total) == ("2", Decimal("8.00"), Decimal("1.68"))
    for value in (data.total, shirt.unit_price, shirt.tax_total):
        assert isinstance(value, Decimal)


def test_every_order_of_the_recorded_page_maps():
    assert [order_from_json(o).platform_id for o in PAGE] == ["13", "15"]


def _discounted(order, include_tax: bool):
    order = copy.deepcopy(order)
    order["prices_include_tax"] = include_tax
    shirt = order["line_items"][0]  # a 10% coupon on the shirt, as WooCommerce stores it (net amounts)
    shirt.update(total="36.00", total_tax="7.56")
    return order_from_json(order)


@pytest.mark.parametrize("include_tax", [False, True])
def test_line_is_worth_what_was_paid_whatever_the_tax_mode(include_tax):
    data = _discounted(ORDER, include_tax)
    shirt = data.lines[0]
    if include_tax:
        assert shirt.unit_price == Decimal("24.20") and shirt.discount_total == Decimal("4.84")
    else:
        assert shirt.unit_price == Decimal("20.00") and shirt.discount_total == Decimal("4.00")
    plan = plan_refund(currency="EUR", taxes_included=include_tax, refundable_remaining=Decimal("100"),
                       lines=[LineInput(1, "1", 2, 2, 0, shirt.unit_price, shirt.discount_total, shirt.tax_total)])
    assert plan.total == Decimal("43.56")  # 36.00 + 7.56


def test_uneven_unit_price_rounds_up_and_keeps_the_line_exact():
    order = copy.deepcopy(ORDER)
    order["line_items"][0].update(quantity=3, subtotal="10.00", total="10.00", subtotal_tax="2.10", total_tax="2.10")
    line = order_from_json(order).lines[0]
    assert line.unit_price == Decimal("3.34") and line.discount_total == Decimal("0.02")
    assert line.unit_price * 3 - line.discount_total == Decimal("10.00")


def test_refunded_order_without_refund_details_has_nothing_left():
    data = order_from_json(REFUNDED)
    assert [line.refunded_quantity for line in data.lines] == [2, 1]


def test_refund_line_items_give_the_refunded_units():
    assert refunded_units([REFUND]) == {"1": 1}
    data = order_from_json(REFUNDED, [REFUND])
    assert [line.refunded_quantity for line in data.lines] == [1, 0]


def test_own_refunds_are_left_out():
    data = order_from_json(REFUNDED, [REFUND], own_refund=lambda r: "RMA-1" in r["reason"])
    assert [line.refunded_quantity for line in data.lines] == [0, 0]


def test_cancelled_completed_customer_and_delivery_meta():
    order = copy.deepcopy(ORDER)
    order.update(status="cancelled", customer_id=7, date_modified_gmt="2026-11-22T08:00:00",
                 date_completed_gmt="2026-11-21T23:00:00",
                 meta_data=[{"id": 1, "key": "_delivery_date", "value": "2026-11-24"}])
    data = order_from_json(order)
    assert data.customer_id == "7"
    assert data.cancelled_at == datetime(2026, 11, 22, 8, tzinfo=timezone.utc)
    assert data.fulfilled_at == datetime(2026, 11, 21, 23, tzinfo=timezone.utc)
    assert data.delivered_at == datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
    assert data.updated_at == datetime(2026, 11, 22, 8, tzinfo=timezone.utc)


def test_float_amounts_and_missing_dates_are_refused():
    with pytest.raises(MappingError):
        order_from_json(dict(ORDER, total=64.13))
    with pytest.raises(MappingError):
        order_from_json(dict(ORDER, date_created_gmt=None))
