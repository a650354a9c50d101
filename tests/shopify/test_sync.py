"""The catch-up on updated_at: paging, the cursor and its overlap, shops it serves; fetch_order."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select

from connector import db
from connector.platforms.shopify import sync
from connector.platforms.shopify.client import METER
from connector.platforms.shopify.errors import ReconnectRequired
from connector.returns.models import Order
from tests.shopify.factories import line_gid, make_shopify_shop, order_gid
from tests.shopify.order_nodes import line_node, order_node, refund_lines_answer, refund_of_ours

NOW = datetime(2026, 4, 20, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def fresh_meter():
    METER.clear()


def page(nodes, *, next_cursor=None):
    return {"data": {"orders": {"pageInfo": {"hasNextPage": bool(next_cursor), "endCursor": next_cursor},
                                "nodes": nodes}},
            "extensions": {"cost": {"requestedQueryCost": 552, "actualQueryCost": 40,
                                    "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1960.0,
                                                       "restoreRate": 100.0}}}}


def stored(shop, number):
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))


def test_iter_orders_follows_the_pages_oldest_change_first(shopify_shop, shopify):
    shopify.on("OrdersCatchUp", [page([order_node("2001"), order_node("2002")], next_cursor="c-2"),
                                 page([order_node("2003")])])
    since = datetime(2026, 4, 1, 10, 0, 5, tzinfo=timezone.utc)
    numbers = [o.number for o in sync.iter_orders(shopify_shop, since)]
    assert numbers == ["2001", "2002", "2003"]
    first, second = shopify.calls("OrdersCatchUp")
    assert first == {"first": 10, "after": None, "query": "updated_at:>'2026-04-01T10:00:05Z'"}
    assert second["after"] == "c-2" and second["query"] == first["query"]


def test_iter_orders_without_since_reads_every_order(shopify_shop, shopify):
    shopify.on("OrdersCatchUp", page([]))
    assert list(sync.iter_orders(shopify_shop, None)) == []
    assert shopify.calls("OrdersCatchUp")[0]["query"] is None


def test_an_order_with_more_line_items_than_a_page_is_read_whole(shopify_shop, shopify):
    shopify.on("OrdersCatchUp", page([order_node("2004", more_lines=True)]))
    shopify.on("OrderLineItems", {"data": {"order": {"id": order_gid("2004"), "lineItems": {
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "nodes": [line_node("2004", 3, title="Laces", price="2.50")]}}}})
    (data,) = sync.iter_orders(shopify_shop, None)
    assert [line.platform_id for line in data.lines] == [line_gid("2004", p) for p in (1, 2, 3)]
    assert shopify.calls("OrderLineItems") == [{"id": order_gid("2004"), "after": "cursor-lines-1"}]


def test_fetch_order(shopify_shop, shopify):
    shopify.on("OrderGet", [{"data": {"order": order_node("2005")}}, {"data": {"order": None}}])
    data = sync.fetch_order(shopify_shop, order_gid("2005"))
    assert data.number == "2005" and data.total == Decimal("184.80")
    assert shopify.calls("OrderGet") == [{"id": order_gid("2005")}]
    assert sync.fetch_order(shopify_shop, order_gid("9999")) is None


def test_catch_up_reads_since_the_cursor_with_overlap_then_moves_it(shopify_shop, shopify):
    sync.save_state(shopify_shop, caught_up_at="2026-04-20T11:45:00+00:00")
    shopify.on("OrdersCatchUp", [page([order_node("2006", updated_at="2026-04-20T11:50:00Z")], next_cursor="c-2"),
                                 page([order_node("1001", updated_at="2026-04-20T11:55:00Z")])])
    assert sync.catch_up(shopify_shop, now=NOW) == 2
    assert shopify.calls("OrdersCatchUp")[0]["query"] == "updated_at:>'2026-04-20T11:40:00Z'"  # 5 minutes overlap
    assert stored(shopify_shop, "2006").email == "erika@example.com"
    order = stored(shopify_shop, "1001")  # the seeded order, updated in place (same GID)
    assert order.platform_id == order_gid("1001") and order.total == Decimal("184.80")
    assert shopify_shop.platform_data["caught_up_at"] == NOW.isoformat()
    assert shopify_shop.platform_data["location_id"] == "gid://shopify/Location/7001"  # other keys kept


def test_the_cursor_stays_when_a_page_fails(shopify_shop, shopify):
    sync.save_state(shopify_shop, caught_up_at="2026-04-20T11:45:00+00:00")
    shopify.on("OrdersCatchUp", [page([order_node("2007")], next_cursor="c-2"),
                                 (401, {"errors": "[API] Invalid API key or access token"})])
    shopify_shop_tokens_expire_never(shopify_shop)
    with pytest.raises(ReconnectRequired):
        sync.catch_up(shopify_shop, now=NOW)
    db.session.rollback()
    assert shopify_shop.platform_data["caught_up_at"] == "2026-04-20T11:45:00+00:00"


def shopify_shop_tokens_expire_never(shop):
    """A token that cannot be refreshed: a 401 is final."""
    from connector.platforms.shopify import credentials
    from connector.platforms.shopify.credentials import ShopifyCredentials

    credentials.save(shop, ShopifyCredentials(access_token="shpat_old", scope="read_orders"))
    db.session.commit()


def test_an_older_copy_from_the_catch_up_never_overwrites_newer_data(shopify_shop, shopify):
    sync.save_state(shopify_shop, caught_up_at="2026-04-20T11:45:00+00:00")
    order = stored(shopify_shop, "1001")
    order.platform_updated_at = datetime(2026, 4, 20, 11, 59, tzinfo=timezone.utc)
    order.email = "newer@example.com"
    db.session.commit()
    shopify.on("OrdersCatchUp", page([order_node("1001", updated_at="2026-04-20T11:50:00Z")]))
    sync.catch_up(shopify_shop, now=NOW)
    assert stored(shopify_shop, "1001").email == "newer@example.com"


def test_first_catch_up_starts_at_the_backfill_snapshot(shopify_shop, shopify):
    sync.save_state(shopify_shop, backfill={"id": "gid://shopify/BulkOperation/1", "status": "IMPORTED",
                                            "started_at": "2026-04-19T08:00:00+00:00"})
    shopify.on("OrdersCatchUp", page([]))
    sync.catch_up(shopify_shop, now=NOW)
    assert shopify.calls("OrdersCatchUp")[0]["query"] == "updated_at:>'2026-04-19T07:55:00Z'"


def test_catch_up_serves_active_shopify_shops_with_tokens_only(shopify_shop, shopify):
    from connector.platforms.shopify import credentials
    from tests.factories import make_shop

    make_shop(handle="standalone-shop")
    uninstalled = make_shopify_shop(handle="gone-shop", domain="gone-shop.myshopify.com", with_orders=False)
    credentials.save(uninstalled, None)
    inactive = make_shopify_shop(handle="paused-shop", domain="paused-shop.myshopify.com", with_orders=False)
    inactive.active = False
    db.session.commit()
    assert sync.catch_up_shop_ids() == [shopify_shop.id]
    shopify.on("OrdersCatchUp", page([order_node("2008")]))
    assert sync.catch_up_all() == {shopify_shop.id: 1}


def test_catch_up_all_records_a_failing_shop_and_goes_on(shopify_shop, shopify):
    shopify_shop_tokens_expire_never(shopify_shop)
    shopify.on("OrdersCatchUp", (401, {"errors": "[API] Invalid API key or access token"}))
    results = sync.catch_up_all()
    assert "reconnect" in results[shopify_shop.id].lower()
    assert "reconnect" in shopify_shop.platform_data["catch_up_error"]["message"].lower()


def test_the_periodic_job_queues_a_catch_up_per_shop(shopify_shop, shopify):
    from connector import tasks

    shopify.on("OrdersCatchUp", page([order_node("2009")]))
    tasks.shopify_catch_up_all.call_local()
    assert stored(shopify_shop, "2009") is not None
    assert "caught_up_at" in shopify_shop.platform_data


def test_jobs_skip_inactive_shops(shopify_shop, shopify):
    from connector import tasks

    shopify_shop.active = False
    db.session.commit()
    tasks.shopify_catch_up.call_local(shopify_shop.id)
    tasks.shopify_backfill.call_local(shopify_shop.id)
    assert shopify.log == []


# ---------------------------------------------------------------------------- refunds of our own


def test_units_of_our_own_refunds_are_not_counted_as_refunded_on_shopify(shopify_shop, shopify):
    """The domain counts its own refunds from its Refund rows: only the others' reduce what is returnable."""
    refund_of_ours(shopify_shop, "1001", platform_refund_id="gid://shopify/Refund/11")
    keyed = refund_of_ours(shopify_shop, "1001", key_suffix="2")  # outcome unknown: known by its note
    node = order_node("1001", lines=[line_node("1001", 1, quantity=2, current_quantity=0),
                                     line_node("1001", 2, quantity=3, current_quantity=1)])
    shopify.on("OrderGet", {"data": {"order": node}})
    shopify.on("OrderRefundLines", refund_lines_answer("1001", [
        ("gid://shopify/Refund/11", None, {1: 1}),
        ("gid://shopify/Refund/12", f"Returns Connector refund {keyed.idempotency_key}", {1: 1, 2: 1}),
        ("gid://shopify/Refund/13", "refunded by staff", {2: 1}),
    ]))
    data = sync.fetch_order(shopify_shop, order_gid("1001"))
    assert [line.refunded_quantity for line in data.lines] == [0, 1]
    assert shopify.calls("OrderRefundLines") == [{"id": order_gid("1001")}]


def test_refunds_are_not_asked_for_orders_without_refunds_of_ours(shopify_shop, shopify):
    node = order_node("1002", lines=[line_node("1002", 1, quantity=2, current_quantity=1)])
    shopify.on("OrderGet", {"data": {"order": node}})
    data = sync.fetch_order(shopify_shop, order_gid("1002"))
    assert data.lines[0].refunded_quantity == 1
    assert shopify.calls("OrderRefundLines") == []
