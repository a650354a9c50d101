"""WooCommerceAdapter outside refunds: capabilities, the no-op native-return methods, order notes,
find_refund, and the pure refund mapping (tax split per rate)."""
from __future__ import annotations

import json
from decimal import Decimal

from connector.platforms.registry import adapter_for
from connector.platforms.woocommerce import refund_mapping as rf
from connector.platforms.woocommerce.adapter import WooCommerceAdapter
from tests.woocommerce.conftest import API
from tests.woocommerce.test_refunds import recorded


class _Order:
    platform_id = "13"


def test_capabilities_say_no_native_returns_but_notes_and_manual_refunds(woo_shop):
    adapter = WooCommerceAdapter(woo_shop)
    caps = adapter.capabilities
    assert adapter.key == "woocommerce"
    assert caps.refund_through_gateway and caps.order_notes and caps.manual_refunds
    assert not caps.native_returns and not caps.store_credit
    assert adapter.open_return(None) is None and adapter.find_return(None) is None
    assert adapter.parse_webhook(None) == []


def test_registry_gives_the_woocommerce_adapter(woo_shop):
    assert isinstance(adapter_for(woo_shop), WooCommerceAdapter)


def test_add_note_posts_a_private_note(woo_shop, rsps):
    rsps.add("POST", f"{API}/orders/13/notes", json=recorded("order_notes.json")[0], status=201)
    WooCommerceAdapter(woo_shop).add_note(_Order(), "Return R-1 received (returns app)")
    assert json.loads(rsps.calls[0].request.body) == {"note": "Return R-1 received (returns app)",
                                                      "customer_note": False}


def test_find_refund_reads_the_key_from_the_reason(woo_shop, rsps):
    refund = recorded("refund_created_with_line_items.json")
    refund["reason"] = "Returns Connector R-1 [rc-1-1-1]"
    other = recorded("refund_via_gateway.json")
    rsps.add("GET", f"{API}/orders/13/refunds", json=[other, refund],
             headers={"X-WP-Total": "2", "X-WP-TotalPages": "1"})
    adapter = WooCommerceAdapter(woo_shop)
    found = adapter.find_refund(_Order(), "rc-1-1-1")
    assert found.status == "succeeded" and found.platform_refund_id == "18" and found.manual is True
    assert adapter.find_refund(_Order(), "rc-1-1-2") is None
    assert "per_page=100" in rsps.calls[0].request.url


def test_split_sums_exactly_and_follows_the_weights():
    cent = Decimal("0.01")
    assert rf.split(Decimal("20.60"), [Decimal("15.45"), Decimal("5.15")], cent) == [Decimal("15.45"), Decimal("5.15")]
    parts = rf.split(Decimal("1.00"), [Decimal(1)] * 3, cent)
    assert sum(parts) == Decimal("1.00") and sorted(parts) == [Decimal("0.33"), Decimal("0.33"), Decimal("0.34")]


def test_recorded_order_shipping_refund_follows_the_line_tax():
    order = recorded("order_created_v3.json")  # shipping 5.00 + 1.05 VAT (rate 1)
    assert rf.shipping_items(Decimal("6.05"), order, "EUR") == [
        {"id": 3, "refund_total": "5.00", "refund_tax": [{"id": 1, "refund_total": "1.05"}]}]


def test_gateways_that_refund():
    assert rf.refund_gateways([{"id": "bacs", "method_supports": ["products"]},
                               {"id": "stripe", "method_supports": ["products", "refunds"]}]) == ["stripe"]
