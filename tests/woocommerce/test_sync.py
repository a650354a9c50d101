"""Backfill paged by X-WP-TotalPages (never Link), progress kept; the poll with modified_after."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from sqlalchemy import select

from connector import db
from connector.platforms.woocommerce import sync
from connector.platforms.woocommerce.errors import WooError
from connector.returns.models import Order
from tests.woocommerce.conftest import API

FIX = Path(__file__).parents[1] / "fixtures" / "woocommerce" / "fixtures"
PAGE = json.loads((FIX / "orders_list_pagination.json").read_text())["orders_list_p1"]
REFUNDED = json.loads((FIX / "order_fully_refunded.json").read_text())
REFUND = json.loads((FIX / "refund_created_with_line_items.json").read_text())


def _order(id_, modified="2026-11-21T22:15:58"):
    order = copy.deepcopy(PAGE["json"][0])
    order.update(id=id_, number=str(id_), date_modified_gmt=modified)
    return order


def _serve_pages(rsps, pages, fail_on=None):
    """orders?page=N answering pages[N-1] with the recorded headers (Link included, to be ignored)."""
    def answer(request):
        query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        page = int(query["page"])
        if page == fail_on:
            return 503, {}, json.dumps({"code": "x", "message": "down", "data": {"status": 503}})
        headers = dict(PAGE["headers"], **{"X-WP-TotalPages": str(len(pages)),
                                           "X-WP-Total": str(sum(map(len, pages)))})
        return 200, headers, json.dumps(pages[page - 1] if page <= len(pages) else [])
    rsps.add_callback(responses.GET, f"{API}/orders", callback=answer)


def _queries(rsps):
    return [{k: v[0] for k, v in parse_qs(urlsplit(c.request.url).query).items()}
            for c in rsps.calls if urlsplit(c.request.url).path.endswith("/orders")]


def test_backfill_pages_by_total_pages(woo_shop, app, rsps):
    _serve_pages(rsps, [[_order(13), _order(15)], [_order(17)]])
    state = sync.backfill(woo_shop)
    queries = _queries(rsps)
    assert [q["page"] for q in queries] == ["1", "2"]
    q = queries[0]
    assert (q["per_page"], q["orderby"], q["order"], q["status[]"] if "status[]" in q else q["status"]) == \
        ("100", "modified", "asc", "any")
    since = datetime.fromisoformat(q["modified_after"]).replace(tzinfo=timezone.utc)
    assert abs(since - (datetime.now(timezone.utc) - timedelta(days=365))) < timedelta(minutes=5)
    assert state["status"] == "done" and state["imported"] == 3 and state["pages"] == 2
    assert woo_shop.platform_data["backfill"]["page"] == 2
    numbers = set(db.session.scalars(select(Order.platform_id).where(Order.shop_id == woo_shop.id)))
    assert {"13", "15", "17"} <= numbers
    assert all("oauth_signature" not in c.request.url for c in rsps.calls)  # Link never followed


def test_backfill_resumes_at_the_page_that_failed(woo_shop, app, rsps):
    _serve_pages(rsps, [[_order(13)], [_order(15)], [_order(17)]], fail_on=2)
    with pytest.raises(WooError):
        sync.backfill(woo_shop, client=_quick_client(woo_shop))
    state = woo_shop.platform_data["backfill"]
    assert state["status"] == "failed" and state["page"] == 1 and state["imported"] == 1 and state["error"]
    rsps.reset()
    _serve_pages(rsps, [[_order(13)], [_order(15)], [_order(17)]])
    state = sync.backfill(woo_shop)
    assert [q["page"] for q in _queries(rsps)] == ["2", "3"] and state["imported"] == 3


def _quick_client(shop):
    from connector.platforms.woocommerce.client import WooClient
    return WooClient.for_shop(shop, sleep=lambda s: None)


def test_poll_reads_changes_since_the_last_poll_minus_overlap(woo_shop, app, rsps):
    last = datetime(2026, 11, 21, 22, 0, tzinfo=timezone.utc)
    sync.save_state(woo_shop, polled_at=last.isoformat())
    _serve_pages(rsps, [[_order(15, "2026-11-21T22:16:41")]])
    assert sync.poll(woo_shop) == 1
    q = _queries(rsps)[0]
    assert q["modified_after"] == "2026-11-21T21:50:00" and q["dates_are_gmt"] == "true"
    assert datetime.fromisoformat(woo_shop.platform_data["polled_at"]) > last


def test_poll_never_overwrites_newer_data(woo_shop, app, rsps):
    _serve_pages(rsps, [[_order(15, "2026-11-21T22:16:41")]])
    sync.poll(woo_shop)
    rsps.reset()
    stale = _order(15, "2026-11-21T22:15:00")
    stale["billing"]["email"] = "old@example.com"
    _serve_pages(rsps, [[stale]])
    sync.poll(woo_shop)
    order = db.session.scalar(select(Order).where(Order.shop_id == woo_shop.id, Order.platform_id == "15"))
    assert order.email == "ann@example.com"


def test_failed_poll_keeps_the_cursor(woo_shop, app, rsps):
    sync.save_state(woo_shop, polled_at="2026-11-21T22:00:00+00:00")
    _serve_pages(rsps, [[_order(15)]], fail_on=1)
    with pytest.raises(WooError):
        sync.poll(woo_shop, client=_quick_client(woo_shop))
    assert woo_shop.platform_data["polled_at"] == "2026-11-21T22:00:00+00:00"
    assert woo_shop.platform_data["poll_error"]["message"] == "down"


def test_orders_with_refunds_read_their_refund_lines(woo_shop, app, rsps):
    _serve_pages(rsps, [[REFUNDED]])
    rsps.get(f"{API}/orders/13/refunds", json=[REFUND])
    sync.poll(woo_shop)
    order = db.session.scalar(select(Order).where(Order.shop_id == woo_shop.id, Order.platform_id == "13"))
    assert {line.platform_id: line.refunded_quantity for line in order.lines} == {"1": 1, "2": 0}


def test_poll_all_job_skips_inactive_stores(woo_shop, app, rsps):
    from connector import tasks
    woo_shop.active = False
    db.session.commit()
    tasks.woocommerce_poll_all()
    assert len(rsps.calls) == 0


REVOKED = {"code": "woocommerce_rest_authentication_error", "message": "Consumer key is invalid.", "data": {"status": 401}}


def test_keys_the_store_refuses_later_are_marked_and_the_merchant_is_mailed_once(woo_shop, app, rsps, outbox):
    """The merchant revoked the key in WooCommerce: every poll meets a 401 until they reconnect."""
    import re

    from connector import tasks
    from connector.platforms.woocommerce import connect

    rsps.get(re.compile(re.escape(API) + r"/.*"), status=401, json=REVOKED)
    tasks.woocommerce_poll(woo_shop.id)
    tasks.woocommerce_poll(woo_shop.id)
    db.session.expire_all()
    assert woo_shop.platform_data["connection"] == "refused"
    assert "Consumer key is invalid." in woo_shop.platform_data["connection_error"]
    (mail,) = [m for m in outbox() if "refused Returns Connector" in m["Subject"]]
    assert mail["To"] == woo_shop.support_email
    body = mail.get_body(("plain",)).get_content()
    assert "orders are not synced and refunds cannot be sent" in body
    assert "/woocommerce/connect?store_url=https%3A%2F%2Fstore.example.com" in body
    assert woo_shop.active  # the portal keeps serving the orders already synced

    rsps.reset()
    rsps.get(f"{API}/orders", json=[], headers={"X-WP-Total": "0", "X-WP-TotalPages": "0"})
    rsps.get(f"{API}/webhooks", json=[], headers={"X-WP-Total": "0", "X-WP-TotalPages": "0"})
    rsps.post(f"{API}/webhooks", json={"id": 1, "status": "active"})
    rsps.post(re.compile(r"https://store\.example\.com/wp-json/returns-connector/v1/secret"), status=404,
              json={"code": "rest_no_route", "message": "No route was found", "data": {"status": 404}})
    connect.first_setup(woo_shop)  # the merchant approved the keys again
    assert woo_shop.platform_data["connection"] == "connected"
    assert "connection_error" not in woo_shop.platform_data
