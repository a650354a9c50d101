"""POST /woocommerce/webhooks/<handle> and the topic handlers, on the deliveries recorded from a
real WooCommerce 10.0.2 store (tests/fixtures/woocommerce): the creation ping, signatures over the
raw body, dedupe on resource id + date_modified_gmt, order upserts that never go back in time,
deletions, and our refunds seen in order.updated."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from connector import db
from connector.platforms.woocommerce import credentials
from connector.platforms.woocommerce.handlers import TOPICS, process_delivery, redrive_deliveries
from connector.platforms.woocommerce.webhooks import MAX_BODY
from connector.returns import lifecycle as lc
from connector.returns.context import runtime
from connector.returns.models import Order, Refund, Return, ReturnLine, WebhookDelivery
from tests.woocommerce.conftest import API
from tests.woocommerce.factories import WEBHOOK_SECRET, make_woo_shop

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "woocommerce"
VECTORS = json.loads((FIXTURES / "vectors.json").read_text())
URL = "/woocommerce/webhooks/alpine-store"
# Headers a client library sets for itself (the test client computes its own).
TRANSPORT = {"Host", "Content-Length", "Connection", "Accept-Encoding"}


def recorded(name: str) -> tuple[dict[str, str], bytes]:
    """A recorded delivery (deliveries/<name>.json): its WooCommerce headers and raw body."""
    data = json.loads((FIXTURES / "deliveries" / f"{name}.json").read_text())
    return {k: v for k, v in data["headers"].items() if k not in TRANSPORT}, base64.b64decode(data["body_b64"])


def live_delivery() -> tuple[dict[str, str], bytes]:
    """vectors.json "webhook_deliveries_live": order.updated of order 15, signed with "test-secret"."""
    [data] = VECTORS["webhook_deliveries_live"]
    assert data["secret"] == WEBHOOK_SECRET
    return {k: v for k, v in data["headers"].items() if k not in TRANSPORT}, base64.b64decode(data["body_b64"])


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def adapted(headers: dict[str, str], body: bytes, secret: str = WEBHOOK_SECRET, delivery_id: str | None = None,
            **changes) -> tuple[dict[str, str], bytes]:
    """The recorded delivery with fields of its JSON body changed, re-signed with `secret`."""
    data = json.loads(body)
    data.update(changes)
    new_body = json.dumps(data, separators=(",", ":")).encode()
    new_headers = dict(headers, **{"X-WC-Webhook-Signature": sign(new_body, secret)})
    if delivery_id:
        new_headers["X-WC-Webhook-Delivery-ID"] = delivery_id
    return new_headers, new_body


def post(client, headers, body, url=URL):
    return client.post(url, data=body, headers=headers)


@pytest.fixture
def enqueued(monkeypatch):
    """The jobs the request enqueues, recorded instead of run."""
    calls = []
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: calls.append((name, kw)))
    return calls


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def order(shop, platform_id: str) -> Order | None:
    db.session.expire_all()
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == platform_id))


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# ---------------------------------------------------------------------------- the endpoint


def test_the_recorded_delivery_is_stored_and_enqueued_once(client, woo_shop, enqueued, rsps):
    headers, body = live_delivery()
    resp = post(client, headers, body)
    assert resp.status_code == 200
    [row] = deliveries()
    assert (row.shop_id, row.platform, row.topic, row.dedupe_key) == (
        woo_shop.id, "woocommerce", "order.updated", "order.updated 15 2026-11-21T22:16:41")
    assert row.payload.encode() == body and row.processed_at is None and row.error is None
    assert enqueued == [("woocommerce_webhook", {"delivery_id": row.id})]
    assert len(rsps.calls) == 0  # no WooCommerce call, no outside call of any kind in the request


@pytest.mark.parametrize("signature", [None, "", "not-base64", sign(b"{}"), "live-of-another-secret"])
def test_a_wrong_or_missing_signature_is_401_and_stores_nothing(client, woo_shop, enqueued, signature):
    headers, body = live_delivery()
    if signature is None:
        del headers["X-WC-Webhook-Signature"]
    elif signature == "live-of-another-secret":
        headers["X-WC-Webhook-Signature"] = sign(body, "another-secret")
    else:
        headers["X-WC-Webhook-Signature"] = signature
    assert post(client, headers, body).status_code == 401
    assert deliveries() == [] and enqueued == []


def test_one_changed_byte_breaks_the_signature(client, woo_shop, enqueued):
    headers, body = live_delivery()
    tampered = body.replace(b'"total":"15.73"', b'"total":"15.74"', 1)
    assert tampered != body
    assert post(client, headers, tampered).status_code == 401
    assert deliveries() == [] and enqueued == []


def test_the_creation_ping_gets_200_and_stores_nothing(client, woo_shop, enqueued):
    headers, body = recorded("002")
    live = VECTORS["webhook_ping_live"]
    assert body == live["body"].encode() == b"webhook_id=1"
    assert post(client, headers, body).status_code == 200
    live_headers = {k: v for k, v in live["headers"].items() if k not in TRANSPORT}
    assert post(client, live_headers, live["body"].encode()).status_code == 200
    assert deliveries() == [] and enqueued == []


@pytest.mark.parametrize("body,signature", [
    (b"webhook_id=1", "bm90LWEtc2lnbmF0dXJl"),  # a ping body with a (wrong) signature header is not the ping
    (b"webhook_id=1&status=active", None),  # more than the ping
    (b"webhook_id=x", None),
    (b'{"webhook_id": 1}', None),
])
def test_only_an_exact_unsigned_ping_is_the_ping(client, woo_shop, enqueued, body, signature):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-WC-Webhook-Signature"] = signature
    assert post(client, headers, body).status_code == 401
    assert deliveries() == [] and enqueued == []


def test_the_same_change_twice_is_one_row_whatever_the_delivery_id(client, woo_shop, enqueued):
    headers, body = live_delivery()
    assert post(client, headers, body).status_code == 200
    again = dict(headers, **{"X-WC-Webhook-Delivery-ID": "0123456789abcdef0123456789abcdef"})
    resp = post(client, again, body)
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "duplicate"
    assert len(deliveries()) == 1 and len(enqueued) == 1


def test_one_delivery_id_for_two_changes_is_two_rows(client, woo_shop, enqueued):
    """WooCommerce makes the delivery id from the webhook id and the second: not unique."""
    headers, body = live_delivery()
    post(client, headers, body)
    post(client, *adapted(headers, body, date_modified_gmt="2026-11-21T22:17:00"))
    assert [r.dedupe_key for r in deliveries()] == ["order.updated 15 2026-11-21T22:16:41",
                                                   "order.updated 15 2026-11-21T22:17:00"]
    assert len(enqueued) == 2


def test_a_body_over_the_limit_is_413(client, woo_shop, enqueued):
    headers, _body = live_delivery()
    body = b'{"id":15,"pad":"' + b"x" * MAX_BODY + b'"}'
    headers["X-WC-Webhook-Signature"] = sign(body)
    assert post(client, headers, body).status_code == 413
    assert deliveries() == [] and enqueued == []


def test_another_shops_secret_is_refused(client, woo_shop, enqueued):
    other = make_woo_shop(handle="other-store", with_orders=False)
    credentials.save(other, credentials.load(other).with_(webhook_secret="secret-of-the-other-store"))
    db.session.commit()
    headers, body = live_delivery()  # signed with alpine-store's secret
    assert post(client, headers, body, url="/woocommerce/webhooks/other-store").status_code == 401
    theirs = dict(headers, **{"X-WC-Webhook-Signature": sign(body, "secret-of-the-other-store")})
    assert post(client, theirs, body).status_code == 401  # their signature, our address
    assert deliveries() == [] and enqueued == []
    assert post(client, theirs, body, url="/woocommerce/webhooks/other-store").status_code == 200
    [row] = deliveries()
    assert row.shop_id == other.id


@pytest.mark.parametrize("url", ["/woocommerce/webhooks/no-such-store", "/woocommerce/webhooks/demo%20shop",
                                 "/woocommerce/webhooks/inactive"])
def test_an_unknown_or_disconnected_store_is_404(client, woo_shop, enqueued, url):
    if url.endswith("inactive"):
        woo_shop.handle = "inactive"
        woo_shop.active = False
        db.session.commit()
    headers, body = live_delivery()
    assert post(client, headers, body, url=url).status_code == 404
    assert deliveries() == [] and enqueued == []


def test_a_standalone_shop_of_that_handle_is_not_a_woocommerce_store(client, shop, enqueued):
    headers, body = live_delivery()
    assert post(client, headers, body, url=f"/woocommerce/webhooks/{shop.handle}").status_code == 404
    assert deliveries() == []


def test_a_signed_body_that_is_not_json_is_kept_closed_with_its_error(client, woo_shop, enqueued):
    headers, _body = live_delivery()
    body = b"<html>not json</html>"
    headers["X-WC-Webhook-Signature"] = sign(body)
    assert post(client, headers, body).status_code == 200
    [row] = deliveries()
    assert row.error.startswith("payload:") and row.processed_at is not None
    assert enqueued == []
    assert post(client, headers, body).status_code == 200  # the same bytes again: one row
    assert len(deliveries()) == 1


def test_a_signed_delivery_without_a_topic_is_400(client, woo_shop, enqueued):
    headers, body = live_delivery()
    for name in ("X-WC-Webhook-Topic", "X-WC-Webhook-Resource", "X-WC-Webhook-Event"):
        del headers[name]
    assert post(client, headers, body).status_code == 400
    assert deliveries() == []


def test_the_topic_falls_back_to_resource_and_event(client, woo_shop, enqueued):
    headers, body = live_delivery()
    del headers["X-WC-Webhook-Topic"]
    assert post(client, headers, body).status_code == 200
    assert deliveries()[0].topic == "order.updated"


# ---------------------------------------------------------------------------- the handlers


def test_the_recorded_order_is_stored_with_its_lines(client, woo_shop):
    headers, body = live_delivery()
    assert post(client, headers, body).status_code == 200  # the job runs inline (JOBS_IMMEDIATE)
    got = order(woo_shop, "15")
    assert (got.number, got.email, got.currency, got.total, got.shipping_total) == (
        "15", "ann@example.com", "EUR", Decimal("15.73"), Decimal("5.00"))
    assert got.platform_updated_at == utc("2026-11-21T22:16:41")
    assert [(l.platform_id, l.title, l.sku, l.quantity, l.unit_price, l.tax_total) for l in got.lines] == [
        ("8", "Mug", "MUG-1", 1, Decimal("8.00"), Decimal("1.68"))]
    [row] = deliveries()
    assert row.processed_at is not None and row.error is None


def test_the_recorded_order_created_is_stored(client, woo_shop):
    headers, body = recorded("008")
    headers["X-WC-Webhook-Signature"] = sign(body)  # recorded with another store's secret
    assert post(client, headers, body).status_code == 200
    got = order(woo_shop, "25")
    assert got.email == "c@example.com" and [l.platform_id for l in got.lines] == ["20"]


def test_an_older_update_never_overwrites_a_newer_one(client, woo_shop):
    headers, body = live_delivery()
    newer = adapted(headers, body, date_modified_gmt="2026-11-21T22:30:00", status="cancelled", total="0.00")
    assert post(client, *newer).status_code == 200
    assert post(client, headers, body).status_code == 200  # the older one arrives late
    got = order(woo_shop, "15")
    assert got.platform_updated_at == utc("2026-11-21T22:30:00")
    assert got.total == Decimal("0.00") and got.cancelled_at == utc("2026-11-21T22:30:00")
    assert all(r.processed_at is not None and r.error is None for r in deliveries())


def test_a_deleted_order_is_cancelled_and_keeps_its_returns(client, woo_shop):
    target = order(woo_shop, "1001")
    ret = Return(shop_id=woo_shop.id, order_id=target.id, number=1001, email=target.email, state=lc.APPROVED,
                 currency=target.currency, method="selfship", origin="portal")
    db.session.add(ret)
    db.session.commit()
    headers, body = recorded("010")
    assert json.loads(body) == {"id": 16}  # WooCommerce sends only the id
    assert post(client, *adapted(headers, body, id=1001)).status_code == 200
    got = order(woo_shop, "1001")
    assert got.cancelled_at is not None
    assert db.session.get(Return, ret.id).state == lc.APPROVED
    # The recorded one names an order never synced: nothing to do, closed without error.
    assert post(client, *adapted(headers, body)).status_code == 200
    assert all(r.processed_at is not None and r.error is None for r in deliveries())


def received_return(shop, platform_id: str) -> Return:
    got = order(shop, platform_id)
    ret = Return(shop_id=shop.id, order_id=got.id, number=1001, email=got.email, state=lc.RECEIVED,
                 currency=got.currency, method="selfship", origin="portal")
    ret.lines.append(ReturnLine(shop_id=shop.id, order_line_id=got.lines[0].id, quantity=1, received_quantity=1,
                                grade="A", disposition="restock"))
    db.session.add(ret)
    db.session.commit()
    return ret


def test_our_refund_seen_in_order_updated_is_settled_once(client, woo_shop, outbox, rsps):
    headers, body = live_delivery()
    post(client, headers, body)
    ret = received_return(woo_shop, "15")
    refund = Refund(shop_id=woo_shop.id, return_id=ret.id, amount=Decimal("9.68"), currency="EUR",
                    idempotency_key=f"rc-{woo_shop.id}-{ret.id}-1", state="unknown", attempts=1)
    db.session.add(refund)
    db.session.commit()
    # order.updated after the refund: refunds[] as WooCommerce lists them (id, reason, total).
    listed = [{"id": 18, "reason": f"Return {ret.rma} [{refund.idempotency_key}]", "total": "-9.68"}]
    post(client, *adapted(headers, body, date_modified_gmt="2026-11-21T22:20:00", refunds=listed))
    post(client, *adapted(headers, body, date_modified_gmt="2026-11-21T22:21:00", refunds=listed))
    assert len(rsps.calls) == 0  # only our refund listed: nothing to read from the store
    db.session.expire_all()
    refund = db.session.get(Refund, refund.id)
    assert (refund.state, refund.platform_refund_id) == ("succeeded", "18")
    ret = db.session.get(Return, ret.id)
    assert ret.state == lc.REFUNDED
    events = [e for e in ret.events if e.kind == "refund"]
    assert len(events) == 1 and events[0].data["seen_in"] == "order.updated"
    assert order(woo_shop, "15").lines[0].refunded_quantity == 0  # ours: counted from the Refund row
    assert len([m for m in outbox() if m["To"] == ret.email]) == 1


def test_a_returns_restock_refund_settles_nothing_and_is_not_counted_as_foreign(client, woo_shop, outbox, rsps):
    headers, body = live_delivery()
    post(client, headers, body)
    ret = received_return(woo_shop, "15")
    refund = Refund(shop_id=woo_shop.id, return_id=ret.id, amount=Decimal("9.68"), currency="EUR",
                    idempotency_key=f"rc-{woo_shop.id}-{ret.id}-1", state="unknown", attempts=1)
    db.session.add(refund)
    db.session.commit()
    # A return with mixed grades: the restock refund of 0.00 (id 18), then the money (id 19), newest first.
    restock = {"id": 18, "reason": f"Returns Connector {ret.rma} [rc-{woo_shop.id}-{ret.id}-restock]", "total": "0.00"}
    post(client, *adapted(headers, body, date_modified_gmt="2026-11-21T22:20:00", refunds=[restock]))
    db.session.expire_all()
    assert db.session.get(Refund, refund.id).state == "unknown"  # the restock is not the money
    money = {"id": 19, "reason": f"Returns Connector {ret.rma} [{refund.idempotency_key}]", "total": "-9.68"}
    post(client, *adapted(headers, body, date_modified_gmt="2026-11-21T22:21:00", refunds=[money, restock]))
    assert len(rsps.calls) == 0  # both ours: nothing to read from the store
    db.session.expire_all()
    assert (db.session.get(Refund, refund.id).state, db.session.get(Refund, refund.id).platform_refund_id) == (
        "succeeded", "19")
    assert order(woo_shop, "15").lines[0].refunded_quantity == 0


def test_a_key_of_another_shop_in_the_reason_is_not_ours(client, woo_shop, rsps):
    headers, body = live_delivery()
    post(client, headers, body)
    ret = received_return(woo_shop, "15")
    db.session.add(Refund(shop_id=woo_shop.id, return_id=ret.id, amount=Decimal("1"), currency="EUR",
                          idempotency_key=f"rc-{woo_shop.id}-{ret.id}-1", state="unknown"))
    db.session.commit()
    foreign = json.loads((FIXTURES / "fixtures" / "refund_created_with_line_items.json").read_text())
    foreign["reason"] = f"[rc-{woo_shop.id + 1}-{ret.id}-1]"
    foreign["line_items"][0]["meta_data"][0]["value"] = "8"  # points at the order's line 8
    rsps.get(f"{API}/orders/15/refunds", json=[foreign], headers={"X-WP-Total": "1", "X-WP-TotalPages": "1"})
    listed = [{"id": foreign["id"], "reason": foreign["reason"], "total": "-24.20"}]
    post(client, *adapted(headers, body, date_modified_gmt="2026-11-21T22:20:00", refunds=listed))
    assert db.session.scalar(select(Refund.state)) == "unknown"
    assert order(woo_shop, "15").lines[0].refunded_quantity == 1  # counted as a foreign refund
    assert [c.request.url.split("?")[0] for c in rsps.calls] == [f"{API}/orders/15/refunds"]


def test_a_store_failure_is_recorded_and_retried(client, woo_shop, rsps, enqueued, monkeypatch):
    from connector.platforms.woocommerce.client import WooClient
    from connector.platforms.woocommerce.errors import WooError

    headers, body = live_delivery()
    post(client, *adapted(headers, body, refunds=[{"id": 19, "reason": "rest", "total": "-1.00"}]))
    [row] = deliveries()
    rsps.get(f"{API}/orders/15/refunds", status=503,
             json={"code": "internal_server_error", "message": "down", "data": {"status": 503}})
    real = WooClient.for_shop.__func__
    monkeypatch.setattr(WooClient, "for_shop", classmethod(lambda cls, shop: real(cls, shop, sleep=lambda s: None)))
    with pytest.raises(WooError) as caught:
        process_delivery(row.id)  # the job runner retries it
    assert caught.value.retryable
    row = deliveries()[0]
    assert row.processed_at is None and row.error
    assert order(woo_shop, "15") is None


def test_the_refunded_action_reads_the_order(client, woo_shop, rsps):
    headers, body = recorded("006")
    assert json.loads(body) == {"action": "woocommerce_order_refunded", "arg": 15}
    headers["X-WC-Webhook-Signature"] = sign(body)
    _h, live = live_delivery()
    rsps.get(f"{API}/orders/15", body=live, content_type="application/json")
    assert post(client, headers, body).status_code == 200
    assert order(woo_shop, "15").lines[0].platform_id == "8"
    [row] = deliveries()
    assert row.dedupe_key == "action.woocommerce_order_refunded 15 d:da6c69c4ce56ca7ac3ecbdc94b6c08e0"
    assert row.error is None and row.processed_at is not None


def test_an_unmappable_order_is_closed_with_its_error(client, woo_shop):
    headers, body = live_delivery()
    post(client, *adapted(headers, body, date_created_gmt=None))
    [row] = deliveries()
    assert row.processed_at is not None and row.error.startswith("payload:")


def test_a_disconnected_store_skips_its_stored_deliveries(client, woo_shop, enqueued):
    headers, body = live_delivery()
    post(client, headers, body)
    woo_shop.active = False
    db.session.commit()
    row = process_delivery(deliveries()[0].id)
    assert row.processed_at is not None and row.error is None and order(woo_shop, "15") is None


def test_lost_jobs_are_redriven_once_old_enough(client, woo_shop, enqueued):
    headers, body = live_delivery()
    post(client, headers, body)
    [row] = deliveries()
    enqueued.clear()
    assert redrive_deliveries() == 0  # just arrived: its job may still be queued
    later = row.received_at + timedelta(minutes=6)
    assert redrive_deliveries(now=later) == 1
    assert enqueued == [("woocommerce_webhook", {"delivery_id": row.id})]
    row.processed_at = later
    db.session.commit()
    assert redrive_deliveries(now=later) == 0  # processed: nothing to re-drive


def test_the_handled_topics_are_the_ones_the_connector_subscribes():
    assert set(TOPICS) == {"order.created", "order.updated", "order.restored", "order.deleted",
                           "action.woocommerce_order_refunded"}
