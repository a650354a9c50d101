"""The install backfill: bulkOperationRunQuery, polling the BulkOperation, and the JSONL import,
with every Shopify answer (and the bulk file's download) in the documented shape."""
from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests
import responses
from sqlalchemy import select

from connector import db
from connector.platforms.shopify import backfill, sync
from connector.platforms.shopify.client import METER
from connector.platforms.shopify.errors import ShopifyError
from connector.platforms.shopify.mapping import order_from_node
from connector.returns import services
from connector.returns.models import Order, OrderLine
from tests.shopify.factories import line_gid, make_shopify_shop, order_gid
from tests.shopify.order_nodes import jsonl, jsonl_lines, line_node, order_node

NOW = datetime(2026, 4, 20, 12, 0, tzinfo=timezone.utc)
OPERATION = "gid://shopify/BulkOperation/720918"
FILE_URL = ("https://storage.googleapis.com/shopify-tiers-assets-prod-us-east1/bulk-operation-outputs/"
            "l6lersgk4i81iqc3n6iyfhqsfe8e-final?GoogleAccessId=assets-us-prod%40shopify-tiers.iam.gserviceaccount.com"
            "&Expires=1745000000&Signature=abc&response-content-type=application%2Fjsonl")


@pytest.fixture(autouse=True)
def fresh_meter():
    METER.clear()


def run_answer(status="CREATED"):
    """bulkOperationRunQuery's documented answer."""
    return {"data": {"bulkOperationRunQuery": {
        "bulkOperation": {"id": OPERATION, "status": status, "createdAt": "2026-04-20T12:00:00Z"},
        "userErrors": []}},
        "extensions": {"cost": {"requestedQueryCost": 10, "actualQueryCost": 10,
                                "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1990.0,
                                                   "restoreRate": 100.0}}}}


def operation_answer(status, *, url=None, error_code=None, object_count="0"):
    """A BulkOperation read through node(id:), as Shopify answers it (counts are UnsignedInt64 strings)."""
    return {"data": {"node": {
        "id": OPERATION, "status": status, "errorCode": error_code, "objectCount": object_count,
        "rootObjectCount": "0", "fileSize": None if url is None else "4096", "createdAt": "2026-04-20T12:00:00Z",
        "completedAt": "2026-04-20T12:03:00Z" if status == "COMPLETED" else None,
        "url": url, "partialDataUrl": None}}}


def three_orders():
    return [
        order_node("3001", lines=[line_node("3001", 1), line_node("3001", 2, title="Wool Socks", price="4.95",
                                                                  quantity=2, tax="1.58"),
                                  line_node("3001", 3, title="Laces", price="2.50", tax="0.40")]),
        order_node("3002", lines=[line_node("3002", 1, price="59.00", tax="9.42")], email="jean@example.fr"),
        order_node("3003", lines=[line_node("3003", 1), line_node("3003", 2, quantity=4, current_quantity=3)]),
    ]


def stored(shop, number):
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))


def start_and_complete(shop, shopify, rsps, body: bytes):
    shopify.on("BulkOrdersRun", run_answer())
    backfill.start(shop, now=NOW)
    shopify.on("BulkOperationGet", operation_answer("COMPLETED", url=FILE_URL, object_count="9"))
    rsps.add(responses.GET, FILE_URL, body=body, content_type="application/jsonl")
    return backfill.poll(shop, now=NOW)


# ---------------------------------------------------------------------------- start and poll


def test_start_runs_a_bulk_query_over_the_configured_window(shopify_shop, shopify, config):
    shopify.on("BulkOrdersRun", run_answer())
    assert backfill.start(shopify_shop, now=NOW) == OPERATION
    (variables,) = shopify.calls("BulkOrdersRun")
    assert variables["groupObjects"] is True  # line items right after their order
    assert "created_at:>='2025-04-20T12:00:00Z'" in variables["query"]  # 365 days
    assert "lineItems" in variables["query"] and "__" not in variables["query"]
    state = shopify_shop.platform_data["backfill"]
    assert state["id"] == OPERATION and state["status"] == "CREATED" and state["imported"] == 0
    assert state["started_at"] == NOW.isoformat()


def test_start_twice_runs_one_bulk_operation(shopify_shop, shopify):
    shopify.on("BulkOrdersRun", run_answer())
    backfill.start(shopify_shop, now=NOW)
    backfill.start(shopify_shop, now=NOW)
    assert len(shopify.calls("BulkOrdersRun")) == 1


def test_start_while_shopify_runs_another_bulk_query_is_retried_later(shopify_shop, shopify):
    shopify.on("BulkOrdersRun", {"data": {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [
        {"field": None, "message": "A bulk query operation for this app and shop is already in progress: "
                                   "gid://shopify/BulkOperation/1.", "code": "OPERATION_IN_PROGRESS"}]}}})
    with pytest.raises(ShopifyError) as caught:
        backfill.start(shopify_shop, now=NOW)
    assert caught.value.retryable


def test_poll_records_a_running_operation(shopify_shop, shopify):
    shopify.on("BulkOrdersRun", run_answer())
    backfill.start(shopify_shop, now=NOW)
    shopify.on("BulkOperationGet", operation_answer("RUNNING", object_count="1200"))
    assert backfill.poll(shopify_shop, now=NOW) == "RUNNING"
    assert shopify.calls("BulkOperationGet") == [{"id": OPERATION}]
    state = shopify_shop.platform_data["backfill"]
    assert state["status"] == "RUNNING" and state["object_count"] == 1200


# ---------------------------------------------------------------------------- the import


def test_completed_operation_is_downloaded_and_imported(shopify_shop, shopify, rsps):
    assert start_and_complete(shopify_shop, shopify, rsps, jsonl(three_orders())) == "IMPORTED"
    order = stored(shopify_shop, "3001")
    assert order.platform_id == order_gid("3001") and order.email == "erika@example.com"
    assert [line.platform_id for line in order.lines] == [line_gid("3001", p) for p in (1, 2, 3)]
    assert [line.title for line in order.lines] == ["Trail Runner", "Wool Socks", "Laces"]
    assert order.lines[1].unit_price == Decimal("4.95") and order.lines[1].quantity == 2
    assert order.total == Decimal("184.80") and order.postcode == "10115" and order.country == "DE"
    assert stored(shopify_shop, "3002").lines[0].unit_price == Decimal("59.00")
    assert stored(shopify_shop, "3003").lines[1].refunded_quantity == 1
    state = shopify_shop.platform_data["backfill"]
    assert state["status"] == "IMPORTED" and state["imported"] == 3 and state["error"] is None
    download = [c for c in rsps.calls if c.request.url == FILE_URL][0]
    assert download.request.req_kwargs["stream"] is True
    assert "X-Shopify-Access-Token" not in download.request.headers  # a signed link: no token goes there


class LazyBody(io.RawIOBase):
    """A download body produced as it is read (never whole in memory), counting what was read."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.pending = b""
        self.read_bytes = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.pending))
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        self.read_bytes += n
        return n


def test_the_download_is_consumed_as_a_stream(shopify_shop, rsps):
    """Orders are written while most of the file has not been read yet."""
    orders = 400

    def chunks():
        for i in range(orders):
            number = str(4000 + i)
            node = order_node(number, lines=[line_node(number, p) for p in (1, 2, 3)])
            yield ("\n".join(jsonl_lines(node)) + "\n").encode()

    total = sum(len(c) for c in chunks())
    body = LazyBody(chunks())
    rsps.add(responses.GET, FILE_URL, body=io.BufferedReader(body, buffer_size=16 * 1024))
    read_at_batch = []
    count = backfill.import_jsonl(shopify_shop, FILE_URL, batch_size=50,
                                  on_batch=lambda n: read_at_batch.append(body.read_bytes))
    assert count == orders
    assert len(read_at_batch) == orders // 50
    assert read_at_batch[0] < total / 4  # the first batch was stored long before the end of the file
    assert body.read_bytes == total
    assert db.session.scalar(select(OrderLine.id).where(OrderLine.platform_id == line_gid("4399", 3)))


def test_an_older_copy_never_overwrites_newer_data(shopify_shop, shopify, rsps):
    """1001 was updated by a webhook after the bulk snapshot: the file's copy is older and skipped.
    1002's stored copy is older than the file's: it is replaced, lines included."""
    newer = stored(shopify_shop, "1001")
    newer.platform_updated_at = datetime(2026, 4, 19, 0, 0, tzinfo=timezone.utc)
    newer.email = "from-webhook@example.com"
    older = stored(shopify_shop, "1002")
    older.platform_updated_at = datetime(2026, 4, 1, 0, 0, tzinfo=timezone.utc)
    db.session.commit()
    body = jsonl([order_node("1001", updated_at="2026-04-10T09:00:00Z", email="bulk@example.com"),
                  order_node("1002", updated_at="2026-04-10T09:00:00Z", email="bulk@example.com",
                             lines=[line_node("1002", 1, title="Rain Pants", price="79.00", tax="12.61"),
                                    line_node("1002", 2, title="Gaiters", price="19.00", tax="3.03")])])
    start_and_complete(shopify_shop, shopify, rsps, body)
    kept = stored(shopify_shop, "1001")
    assert kept.email == "from-webhook@example.com"
    assert kept.platform_updated_at == datetime(2026, 4, 19, tzinfo=timezone.utc)
    assert [line.title for line in kept.lines] == ["Trail Jacket", "Merino Socks", "Gift Card"]
    replaced = stored(shopify_shop, "1002")
    assert replaced.email == "bulk@example.com"
    assert [(line.platform_id, line.title) for line in replaced.lines] == [
        (line_gid("1002", 1), "Rain Pants"), (line_gid("1002", 2), "Gaiters")]
    assert len(db.session.scalars(select(OrderLine).where(OrderLine.platform_id == line_gid("1002", 1))).all()) == 1


def test_the_batch_writer_stores_what_upsert_order_stores(app, shopify_shop):
    """Same columns, same normalisation, for new orders and for updates of stored ones."""
    other = make_shopify_shop(handle="twin-shop", domain="twin-shop.myshopify.com", with_orders=True)
    nodes = three_orders() + [order_node("1001", updated_at="2026-04-30T00:00:00Z", email=" Mixed@Case.COM ")]
    nodes[1]["shippingAddress"]["zip"] = "75 001"
    datas = [order_from_node(n, lines=n["lineItems"]["nodes"]) for n in nodes]
    datas[0] = replace(datas[0], number="#3001 ")
    backfill.write_orders(shopify_shop, datas)
    for data in datas:
        services.upsert_order(other, data)

    def snapshot(shop, number):
        order = stored(shop, number)
        skip = {"id", "shop_id", "synced_at", "_sa_instance_state"}
        head = {k: v for k, v in vars(order).items() if k not in skip and not k.startswith("_") and k != "lines"}
        lines = [{k: v for k, v in vars(line).items() if k not in skip | {"order_id", "order"} and not k.startswith("_")}
                 for line in order.lines]
        return head, lines

    db.session.expire_all()
    for number in ("3001", "3002", "3003", "1001"):
        assert snapshot(shopify_shop, number) == snapshot(other, number), number


def test_line_items_out_of_place_are_fetched_again(shopify_shop, rsps, shopify):
    """A line item whose order is not in the current batch: that order is read whole via OrderGet."""
    a = order_node("3101")
    b = order_node("3102")
    lines_a = jsonl_lines(a)
    lines_b = jsonl_lines(b)
    # a's second line item arrives after b's batch has started (batch size 1).
    body = "\n".join([lines_a[0], lines_a[1], lines_b[0], lines_b[1], lines_a[2], lines_b[2]]) + "\n"
    rsps.add(responses.GET, FILE_URL, body=body.encode())
    shopify.on("OrderGet", {"data": {"order": a}})
    assert backfill.import_jsonl(shopify_shop, FILE_URL, batch_size=1) == 2
    assert shopify.calls("OrderGet") == [{"id": order_gid("3101")}]
    assert len(stored(shopify_shop, "3101").lines) == 2
    assert len(stored(shopify_shop, "3102").lines) == 2


def test_progress_is_recorded_for_the_admin(shopify_shop, rsps):
    rsps.add(responses.GET, FILE_URL, body=jsonl([order_node(str(5000 + i)) for i in range(5)]))
    seen = []
    backfill.import_jsonl(shopify_shop, FILE_URL, batch_size=2,
                          on_batch=lambda n: seen.append(shopify_shop.platform_data["backfill"]["imported"]))
    assert seen == [2, 4, 5]


def test_an_interrupted_download_is_imported_again_at_the_next_poll(shopify_shop, shopify, rsps):
    shopify.on("BulkOrdersRun", run_answer())
    backfill.start(shopify_shop, now=NOW)
    shopify.on("BulkOperationGet", operation_answer("COMPLETED", url=FILE_URL))
    rsps.add(responses.GET, FILE_URL, body=requests.ConnectionError("reset by peer"))
    with pytest.raises(ShopifyError) as caught:
        backfill.poll(shopify_shop, now=NOW)
    assert caught.value.retryable
    assert shopify_shop.platform_data["backfill"]["status"] == "COMPLETED"
    rsps.replace(responses.GET, FILE_URL, body=jsonl(three_orders()))
    assert backfill.poll(shopify_shop, now=NOW) == "IMPORTED"
    assert stored(shopify_shop, "3003") is not None


def test_a_completed_operation_without_orders_has_no_file(shopify_shop, shopify):
    shopify.on("BulkOrdersRun", run_answer())
    backfill.start(shopify_shop, now=NOW)
    shopify.on("BulkOperationGet", operation_answer("COMPLETED", url=None))
    assert backfill.poll(shopify_shop, now=NOW) == "IMPORTED"
    assert shopify_shop.platform_data["backfill"]["imported"] == 0


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize("status, code", [("FAILED", "TIMEOUT"), ("CANCELED", None), ("EXPIRED", None)])
def test_a_failed_operation_is_recorded_and_the_merchant_told(shopify_shop, shopify, outbox, status, code):
    shopify.on("BulkOrdersRun", run_answer())
    backfill.start(shopify_shop, now=NOW)
    shopify.on("BulkOperationGet", operation_answer(status, error_code=code))
    assert backfill.poll(shopify_shop, now=NOW) == status
    state = shopify_shop.platform_data["backfill"]
    assert state["status"] == status and (code or status) in state["error"]
    (mail,) = outbox()
    assert mail["To"] == "support@example.com"
    assert "could not be imported" in mail["Subject"]
    assert (code or status) in mail.get_body(("plain",)).get_content()
    assert backfill.poll(shopify_shop, now=NOW) == status  # settled: not asked again
    assert len(shopify.calls("BulkOperationGet")) == 1


def test_a_file_that_is_not_jsonl_fails_the_backfill_and_tells_the_merchant(shopify_shop, shopify, rsps, outbox):
    assert start_and_complete(shopify_shop, shopify, rsps, b"<html>Access denied</html>\n") == "FAILED"
    state = shopify_shop.platform_data["backfill"]
    assert state["status"] == "FAILED" and state["error"].startswith("BAD_FILE")
    assert len(outbox()) == 1


# ---------------------------------------------------------------------------- the job


def test_the_job_starts_then_polls_then_imports(shopify_shop, shopify, rsps):
    from connector import tasks

    shopify.on("BulkOrdersRun", run_answer())
    tasks.shopify_backfill.call_local(shopify_shop.id)
    assert shopify_shop.platform_data["backfill"]["status"] == "CREATED"
    shopify.on("BulkOperationGet", [operation_answer("RUNNING"), operation_answer("COMPLETED", url=FILE_URL)])
    rsps.add(responses.GET, FILE_URL, body=jsonl(three_orders()))
    tasks.shopify_backfill.call_local(shopify_shop.id)
    assert shopify_shop.platform_data["backfill"]["status"] == "RUNNING"
    tasks.shopify_backfill.call_local(shopify_shop.id)
    db.session.refresh(shopify_shop)
    assert shopify_shop.platform_data["backfill"]["status"] == "IMPORTED"
    assert len(shopify.calls("BulkOrdersRun")) == 1


def test_a_stalled_backfill_is_driven_again(shopify_shop, shopify):
    shopify.on("BulkOrdersRun", run_answer())
    backfill.start(shopify_shop, now=NOW)
    assert backfill.stalled_shop_ids(now=NOW + timedelta(minutes=1)) == []
    assert backfill.stalled_shop_ids(now=NOW + timedelta(minutes=11)) == [shopify_shop.id]
    sync.save_state(shopify_shop, backfill={**shopify_shop.platform_data["backfill"], "status": "IMPORTED"})
    assert backfill.stalled_shop_ids(now=NOW + timedelta(minutes=11)) == []


def test_bulk_file_lines_are_json_objects_as_shopify_documents(shopify_shop):
    """The fixture itself: an order line without __parentId, then its children with it."""
    first, *children = jsonl_lines(three_orders()[0])
    assert "__parentId" not in json.loads(first) and "lineItems" not in json.loads(first)
    assert all(json.loads(c)["__parentId"] == order_gid("3001") for c in children)


def test_orders_holding_refunds_of_ours_are_read_whole_through_the_api(shopify_shop, shopify, rsps):
    """A reinstall: the file's line says 1 unit gone, but it was the connector's own refund."""
    from tests.shopify.order_nodes import refund_lines_answer, refund_of_ours

    refund_of_ours(shopify_shop, "1001", platform_refund_id="gid://shopify/Refund/11")
    node = order_node("1001", lines=[line_node("1001", 1, quantity=2, current_quantity=1)])
    shopify.on("OrderGet", {"data": {"order": node}})
    shopify.on("OrderRefundLines", refund_lines_answer("1001", [("gid://shopify/Refund/11", None, {1: 1})]))
    rsps.add(responses.GET, FILE_URL, body=jsonl([node, order_node("3201")]))
    assert backfill.import_jsonl(shopify_shop, FILE_URL) == 2
    assert stored(shopify_shop, "1001").lines[0].refunded_quantity == 0
    assert stored(shopify_shop, "1001").lines[0].quantity == 2
    assert shopify.calls("OrderGet") == [{"id": order_gid("1001")}]
