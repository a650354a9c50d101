"""POST /shopify/webhooks and the topic handlers: HMAC over the raw body, dedupe on the event id,
stored and enqueued without any outside call; orders, refunds, fulfilments, returns, uninstall."""
from __future__ import annotations

import json
import sys
import types
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from connector import db
from connector.platforms.shopify import credentials, rest_mapping
from connector.platforms.shopify.handlers import TOPICS, process_delivery
from connector.returns import lifecycle as lc
from connector.returns.context import runtime
from connector.returns.models import Order, Refund, Return, ReturnLine, Shop, WebhookDelivery
from tests.shopify.conftest import API_SECRET, SHOP_DOMAIN
from tests.shopify.deliveries import body_of, deliver, headers, order_payload, payload, sign
from tests.shopify.factories import line_gid, order_gid


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


@pytest.fixture
def enqueued(monkeypatch):
    """The jobs the request enqueues, recorded instead of run."""
    calls = []
    monkeypatch.setattr(runtime, "enqueue", lambda name, **kw: calls.append((name, kw)))
    return calls


def deliveries() -> list[WebhookDelivery]:
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def order(shop, number) -> Order:
    db.session.expire_all()
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.platform_id == order_gid(number)))


# ---------------------------------------------------------------------------- the endpoint


def test_signed_delivery_is_stored_and_enqueued_once(client, shopify_shop, enqueued, rsps):
    body = body_of(payload("orders_create"))
    resp = client.post("/shopify/webhooks", data=body, headers=headers("orders/create", body, event_id="evt-1"))
    assert resp.status_code == 200
    [row] = deliveries()
    assert (row.shop_id, row.platform, row.topic, row.dedupe_key) == (shopify_shop.id, "shopify", "orders/create",
                                                                      "orders/create evt-1")
    assert row.payload.encode() == body and row.processed_at is None and row.error is None
    assert enqueued == [("shopify_webhook", {"delivery_id": row.id})]
    assert len(rsps.calls) == 0  # no Shopify call, no outside call of any kind in the request


@pytest.mark.parametrize("hmac_header", [None, "", "not-base64", sign(b"{}"), sign(b'{"id": 1}', "another-secret")])
def test_wrong_or_missing_hmac_is_401_and_stores_nothing(client, shopify_shop, enqueued, hmac_header):
    body = body_of(payload("orders_create"))
    hdrs = headers("orders/create", body)
    if hmac_header is None:
        del hdrs["X-Shopify-Hmac-Sha256"]
    else:
        hdrs["X-Shopify-Hmac-Sha256"] = hmac_header
    assert client.post("/shopify/webhooks", data=body, headers=hdrs).status_code == 401
    assert deliveries() == [] and enqueued == []


def test_one_changed_byte_breaks_the_hmac(client, shopify_shop, enqueued):
    body = body_of(payload("orders_create"))
    hdrs = headers("orders/create", body)
    tampered = body.replace(b'"359.97"', b'"359.98"', 1)
    assert tampered != body
    assert client.post("/shopify/webhooks", data=tampered, headers=hdrs).status_code == 401
    assert deliveries() == [] and enqueued == []


def test_the_previous_secret_still_verifies_after_a_rotation(app, client, shopify_shop, enqueued):
    app.config["CONNECTOR"].shopify_api_secret_previous = "the-old-secret"
    assert deliver(client, "orders/create", payload("orders_create"), secret="the-old-secret").status_code == 200
    assert deliver(client, "orders/create", payload("orders_create"), secret=API_SECRET).status_code == 200
    assert deliver(client, "orders/create", payload("orders_create"), secret="never-issued").status_code == 401
    assert len(deliveries()) == 2


def test_reference_vector_verifies(app, client, enqueued):
    """shared/shopify/vectors.json webhook_hmac: the raw body and header as a peer library tests them."""
    vectors = json.loads((Path(__file__).resolve().parent.parent / "fixtures/shopify/vectors.json").read_text())
    vector = vectors["webhook_hmac"]["vectors"][0]
    app.config["CONNECTOR"].shopify_api_secret = vector["secret"]
    body = vector["raw_body"].encode()
    hdrs = headers("orders/create", body, hmac_header=vector["expected_header"], shop="no-such-shop.myshopify.com")
    assert client.post("/shopify/webhooks", data=body, headers=hdrs).status_code == 200
    hdrs["X-Shopify-Hmac-Sha256"] = vector["expected_header"].replace("Q", "R", 1)
    assert client.post("/shopify/webhooks", data=body, headers=hdrs).status_code == 401


def test_duplicate_event_id_answers_200_and_enqueues_nothing_more(client, shopify_shop, enqueued):
    data = payload("orders_create")
    assert deliver(client, "orders/create", data, event_id="evt-same").status_code == 200
    again = deliver(client, "orders/create", data, event_id="evt-same")
    assert (again.status_code, again.get_data(as_text=True)) == (200, "duplicate")
    assert len(deliveries()) == 1 and len(enqueued) == 1


def test_one_merchant_action_on_two_topics_is_two_deliveries(client, shopify_shop, enqueued):
    """Shopify shares X-Shopify-Event-Id across the deliveries of one action (refund -> refunds/create
    and orders/updated): the dedupe key is topic and event id together."""
    deliver(client, "refunds/create", payload("refunds_create"), event_id="evt-refund")
    deliver(client, "orders/updated", payload("orders_create"), event_id="evt-refund")
    assert [d.topic for d in deliveries()] == ["refunds/create", "orders/updated"] and len(enqueued) == 2


def test_webhook_id_is_the_key_when_there_is_no_event_id(client, shopify_shop, enqueued):
    body = body_of(payload("orders_create"))
    hdrs = headers("orders/create", body)
    del hdrs["X-Shopify-Event-Id"]
    hdrs["X-Shopify-Webhook-Id"] = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert client.post("/shopify/webhooks", data=body, headers=hdrs).status_code == 200
    assert client.post("/shopify/webhooks", data=body, headers=hdrs).get_data(as_text=True) == "duplicate"
    assert [d.dedupe_key for d in deliveries()] == ["orders/create b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"]


@pytest.mark.parametrize("topic", ["orders/create", "app/uninstalled", "shop/redact"])
def test_unknown_shop_is_200_and_nothing_is_stored(client, shopify_shop, enqueued, topic):
    resp = deliver(client, topic, payload("orders_create"), shop="someone-else.myshopify.com")
    assert (resp.status_code, resp.get_data(as_text=True)) == (200, "unknown shop")
    assert deliveries() == [] and enqueued == []


@pytest.mark.parametrize("domain", ["demo-shop.myshopify.com.evil.com", "evil.com", "demo-shop.myshopify.com:443",
                                    "https://demo-shop.myshopify.com", ""])
def test_a_shop_domain_that_is_not_myshopify_is_refused(client, shopify_shop, enqueued, domain):
    assert deliver(client, "orders/create", payload("orders_create"), shop=domain).status_code == 400
    assert deliveries() == []


def test_a_standalone_shop_with_the_same_domain_is_not_a_shopify_shop(client, shop, enqueued):
    shop.domain = SHOP_DOMAIN  # platform "standalone"
    db.session.commit()
    assert deliver(client, "orders/create", payload("orders_create")).get_data(as_text=True) == "unknown shop"


def test_body_over_2_mb_is_413(client, shopify_shop, enqueued):
    big = payload("orders_create")
    big["note"] = "x" * (2 * 1024 * 1024)
    assert deliver(client, "orders/create", big).status_code == 413
    assert deliveries() == [] and enqueued == []


@pytest.mark.parametrize("body", [b"{not json", b"[]"])
def test_a_signed_body_that_is_not_a_json_object_is_kept_for_inspection(client, shopify_shop, enqueued, body):
    """200, not 4xx: Shopify would only send the same bytes again and count failures against the
    subscription. The job closes the delivery with the reason; the body stays as received."""
    resp = deliver(client, "orders/create", body)
    assert resp.status_code == 200
    [row] = deliveries()
    assert enqueued == [("shopify_webhook", {"delivery_id": row.id})]
    row = process_delivery(row.id)
    assert row.payload == body.decode() and row.processed_at is not None and row.error.startswith("payload: ")


def test_answered_fast_without_running_the_handler(client, shopify_shop, enqueued, rsps):
    import time
    data = order_payload("1001", updated_at="2030-01-01T00:00:00Z", title="Changed")
    started = time.perf_counter()
    assert deliver(client, "orders/updated", data).status_code == 200
    assert time.perf_counter() - started < 1.0
    assert order(shopify_shop, "1001").lines[0].title == "Trail Jacket"  # processing waits for the job
    assert len(rsps.calls) == 0


# ---------------------------------------------------------------------------- orders


def test_orders_create_maps_the_documented_payload(client, shopify_shop):
    data = payload("orders_create")
    assert deliver(client, "orders/create", data).status_code == 200
    [row] = deliveries()
    assert row.processed_at is not None and row.error is None
    got = db.session.scalar(select(Order).where(Order.platform_id == "gid://shopify/Order/820982911946154508"))
    assert (got.shop_id, got.number, got.email, got.currency) == (shopify_shop.id, "9999", "jon@example.com", "USD")
    assert (got.total, got.shipping_total, got.shipping_tax) == (Decimal("359.97"), Decimal("10.00"), Decimal("0"))
    assert got.taxes_included is False and got.locale == "en" and got.tags == ["tag1", "tag2"]
    assert got.customer_name == "Steve Shipper" and (got.country, got.postcode) == ("US", "40003")
    assert got.customer_platform_id == "gid://shopify/Customer/115310627314723954"
    assert got.shipping_address["line1"] == "123 Shipping Street" and got.payment_gateway == "visa"
    assert got.cancelled_at == utc("2021-12-31T19:00:00-05:00") == got.platform_updated_at
    assert [(line.platform_id, line.title, line.sku, line.unit_price, line.quantity) for line in got.lines] == [
        ("gid://shopify/LineItem/487817672276298554", "Aviator sunglasses", "SKU2006-001", Decimal("89.99"), 1),
        ("gid://shopify/LineItem/976318377106520349", "Mid-century lounger", "SKU2006-020", Decimal("159.99"), 1),
        ("gid://shopify/LineItem/315789986012684393", "Coffee table", "SKU2006-035", Decimal("119.99"), 1)]


def test_mapping_reads_shop_money_discounts_taxes_and_refunds():
    data = payload("orders_create")
    item = data["line_items"][1]
    item["quantity"], item["current_quantity"] = 3, 1
    item["discount_allocations"] = [{"amount": "5.00", "discount_application_index": 0,
                                     "amount_set": {"shop_money": {"amount": "5.00", "currency_code": "USD"},
                                                    "presentment_money": {"amount": "4.50", "currency_code": "EUR"}}}]
    item["tax_lines"] = [{"title": "VAT", "rate": 0.19, "price": "27.00",
                          "price_set": {"shop_money": {"amount": "29.45", "currency_code": "USD"},
                                        "presentment_money": {"amount": "27.00", "currency_code": "EUR"}}}]
    own = payload("refunds_create")
    own["refund_line_items"] = [own["refund_line_items"][3]]  # one unit of the lounger, refunded by us
    data["refunds"] = [own]
    data["shipping_lines"][0]["tax_lines"] = [{"price": "1.90", "price_set": {"shop_money": {"amount": "1.90"}}}]
    mapped = rest_mapping.order_from_rest(data, is_own_refund=lambda r: r.platform_id.endswith("/890088186047892319"))
    line = mapped.lines[1]
    assert (line.discount_total, line.tax_total) == (Decimal("5.00"), Decimal("29.45"))
    assert line.refunded_quantity == 1  # 3 bought, 1 left, 1 of the 2 gone was our own refund
    assert mapped.shipping_tax == Decimal("1.90")
    foreign = rest_mapping.order_from_rest(data)
    assert foreign.lines[1].refunded_quantity == 2


def test_fulfilment_dates_follow_the_last_parcel():
    """As the GraphQL mapping: fulfilled when the last parcel left, delivered when every parcel
    sent has arrived (the return window of a split order runs from the last one)."""
    data = payload("orders_create")
    first = {"status": "success", "shipment_status": "delivered", "created_at": "2030-01-01T10:00:00Z",
             "updated_at": "2030-01-03T10:00:00Z"}
    second = {"status": "success", "shipment_status": "in_transit", "created_at": "2030-01-02T10:00:00Z",
              "updated_at": "2030-01-02T12:00:00Z"}
    cancelled = {"status": "cancelled", "shipment_status": None, "created_at": "2030-01-05T10:00:00Z"}
    data["fulfillments"] = [first, second, cancelled]
    assert rest_mapping.fulfilment_dates(data) == (utc("2030-01-02T10:00:00+00:00"), None)
    second.update(shipment_status="delivered", updated_at="2030-01-04T09:00:00Z")
    assert rest_mapping.fulfilment_dates(data) == (utc("2030-01-02T10:00:00+00:00"), utc("2030-01-04T09:00:00+00:00"))
    assert rest_mapping.fulfilment_dates(payload("orders_create")) == (None, None)


def test_out_of_order_orders_updated_never_overwrites_newer(client, shopify_shop):
    newer = order_payload("1001", updated_at="2030-01-02T10:00:00Z", title="Trail Jacket (newer)")
    older = order_payload("1001", updated_at="2030-01-01T10:00:00Z", title="Trail Jacket (older)")
    deliver(client, "orders/updated", newer)
    deliver(client, "orders/updated", older)
    got = order(shopify_shop, "1001")
    assert got.lines[0].title == "Trail Jacket (newer)"
    assert got.platform_updated_at == utc("2030-01-02T10:00:00+00:00")
    assert all(d.processed_at and not d.error for d in deliveries())


def test_orders_updated_keeps_a_known_delivery_date(client, shopify_shop):
    delivered = order(shopify_shop, "1001").delivered_at
    assert delivered is not None
    deliver(client, "orders/updated", order_payload("1001", updated_at="2030-01-01T00:00:00Z"))
    assert order(shopify_shop, "1001").delivered_at == delivered


def test_a_payload_that_cannot_be_mapped_is_closed_with_its_reason(client, shopify_shop):
    data = order_payload("1001")
    data["line_items"][0]["price_set"]["shop_money"]["amount"] = 12.5  # a JSON number is not money
    assert deliver(client, "orders/create", data).status_code == 200
    [row] = deliveries()
    assert row.processed_at is not None and "not taken as money" in row.error
    assert process_delivery(row.id).processed_at == row.processed_at  # closed: not run again


# ---------------------------------------------------------------------------- refunds


def make_received_return(shop, number="1001") -> Return:
    """A return of one unit of the order's first line, received in the warehouse."""
    got = order(shop, number)
    ret = Return(shop_id=shop.id, order_id=got.id, number=1001, email=got.email, state=lc.RECEIVED,
                 currency=got.currency, method="selfship", platform_id="gid://shopify/Return/777",
                 platform_status="OPEN", origin="portal")
    ret.lines.append(ReturnLine(shop_id=shop.id, order_line_id=got.lines[0].id, quantity=1, received_quantity=1,
                                grade="A", disposition="restock"))
    db.session.add(ret)
    db.session.commit()
    return ret


def refund_payload(number: str, *, note: str = "", created_at: str = "2030-01-01T10:00:00+00:00",
                   refund_id: int = 890088186047892319) -> dict:
    """The documented refunds/create sample, refunding one unit of the order's first line."""
    data = payload("refunds_create")
    data.update(id=refund_id, admin_graphql_api_id=f"gid://shopify/Refund/{refund_id}",
                order_id=int(order_gid(number).rsplit("/", 1)[1]), note=note, created_at=created_at)
    item = data["refund_line_items"][0]
    gid = line_gid(number, 1)
    item["line_item_id"] = int(gid.rsplit("/", 1)[1])
    item["line_item"].update(id=int(gid.rsplit("/", 1)[1]), admin_graphql_api_id=gid)
    data["refund_line_items"] = [item]
    return data


def test_a_refund_of_ours_seen_on_shopify_settles_it_once(client, shopify_shop, outbox):
    ret = make_received_return(shopify_shop)
    refund = Refund(shop_id=shopify_shop.id, return_id=ret.id, amount=Decimal("129.00"), currency="EUR",
                    idempotency_key=f"rc-{shopify_shop.id}-{ret.id}-1", state="unknown", attempts=1)
    db.session.add(refund)
    db.session.commit()
    from connector.platforms.shopify.returns_mapping import refund_note
    data = refund_payload("1001", note=refund_note("R-1001", refund.idempotency_key))  # as the adapter writes it
    deliver(client, "refunds/create", data)
    deliver(client, "refunds/create", data)  # a second delivery of the same refund, other event id
    db.session.expire_all()
    refund = db.session.get(Refund, refund.id)
    assert (refund.state, refund.platform_refund_id) == ("succeeded", "gid://shopify/Refund/890088186047892319")
    ret = db.session.get(Return, ret.id)
    assert ret.state == lc.REFUNDED and ret.pending_step is None
    assert [e.kind for e in ret.events].count("refund") == 1
    assert order(shopify_shop, "1001").lines[0].refunded_quantity == 0  # ours: counted from the Refund row
    assert len([m for m in outbox() if m["To"] == ret.email]) == 1  # one "refunded" mail


def test_a_key_of_another_shop_in_the_note_is_not_ours(client, shopify_shop):
    ret = make_received_return(shopify_shop)
    db.session.add(Refund(shop_id=shopify_shop.id, return_id=ret.id, amount=Decimal("1"), currency="EUR",
                          idempotency_key=f"rc-{shopify_shop.id}-{ret.id}-1", state="unknown"))
    db.session.commit()
    deliver(client, "refunds/create", refund_payload("1001", note=f"rc-{shopify_shop.id + 1}-{ret.id}-1"))
    assert db.session.scalar(select(Refund.state)) == "unknown"
    assert order(shopify_shop, "1001").lines[0].refunded_quantity == 1  # counted as a foreign refund


def test_a_foreign_refund_counts_its_units_once(client, shopify_shop):
    data = refund_payload("1001", note="Refunded at the till")
    deliver(client, "refunds/create", data)
    deliver(client, "refunds/create", data)
    got = order(shopify_shop, "1001")
    assert [line.refunded_quantity for line in got.lines] == [1, 0, 0]
    assert got.platform_updated_at == utc("2030-01-01T10:00:00+00:00")


def test_a_foreign_refund_older_than_our_copy_is_already_in_it(client, shopify_shop):
    deliver(client, "orders/updated", order_payload("1001", updated_at="2030-01-02T00:00:00Z"))
    deliver(client, "refunds/create", refund_payload("1001", created_at="2030-01-01T00:00:00Z"))
    assert order(shopify_shop, "1001").lines[0].refunded_quantity == 0


# ---------------------------------------------------------------------------- fulfilments, returns


def test_a_delivered_fulfilment_event_sets_the_delivery_date(client, shopify_shop):
    event = payload("fulfillment_events_create")
    event.update(order_id=int(order_gid("1002").rsplit("/", 1)[1]), status="delivered",
                 happened_at="2030-03-01T12:00:00+01:00")
    deliver(client, "fulfillment_events/create", event)
    assert order(shopify_shop, "1002").delivered_at == utc("2030-03-01T11:00:00+00:00")
    event.update(status="in_transit", happened_at="2030-03-05T12:00:00+01:00")
    deliver(client, "fulfillment_events/create", event)
    assert order(shopify_shop, "1002").delivered_at == utc("2030-03-01T11:00:00+00:00")


def test_the_documented_in_transit_event_changes_nothing(client, shopify_shop):
    event = payload("fulfillment_events_create")
    event["order_id"] = int(order_gid("1002").rsplit("/", 1)[1])
    before = order(shopify_shop, "1002").delivered_at
    deliver(client, "fulfillment_events/create", event)
    assert order(shopify_shop, "1002").delivered_at == before
    assert deliveries()[0].processed_at is not None


@pytest.mark.parametrize("topic,name", [("returns/request", "returns_request"), ("returns/close", "returns_close")])
def test_returns_topics_hand_the_return_to_the_mirror(client, shopify_shop, monkeypatch, topic, name):
    seen = []
    mirror = types.ModuleType("connector.platforms.shopify.returns_mirror")
    mirror.mirror_return = lambda shop, gid: seen.append((shop.id, gid))
    monkeypatch.setitem(sys.modules, "connector.platforms.shopify.returns_mirror", mirror)
    import connector.platforms.shopify as package
    monkeypatch.setattr(package, "returns_mirror", mirror, raising=False)
    deliver(client, topic, payload(name))
    assert seen == [(shopify_shop.id, "gid://shopify/Return/123134564567890")]


# ---------------------------------------------------------------------------- uninstall


def test_app_uninstalled_revokes_tokens_and_stops_the_shop(client, shopify_shop):
    assert credentials.load(shopify_shop) is not None
    deliver(client, "app/uninstalled", payload("app_uninstalled"))
    deliver(client, "app/uninstalled", payload("app_uninstalled"))  # twice: same outcome
    db.session.expire_all()
    shop = db.session.get(Shop, shopify_shop.id)
    assert credentials.load(shop) is None and shop.active is False
    assert shop.platform_data["uninstalled_at"] and shop.platform_data["location_id"]
    # Orders of an uninstalled shop are kept but no longer processed.
    deliver(client, "orders/updated", order_payload("1001", updated_at="2030-01-01T00:00:00Z", title="After"))
    assert order(shop, "1001").lines[0].title == "Trail Jacket"
    assert deliveries()[-1].processed_at is not None


def test_a_late_uninstall_does_not_revoke_a_newer_installation(client, shopify_shop):
    shopify_shop.platform_data = {**shopify_shop.platform_data, "installed_at": "2999-01-01T00:00:00+00:00"}
    db.session.commit()
    deliver(client, "app/uninstalled", payload("app_uninstalled"))
    db.session.expire_all()
    shop = db.session.get(Shop, shopify_shop.id)
    assert shop.active is True and credentials.load(shop) is not None


def test_every_handled_topic_is_a_subscribable_topic():
    """The topic list shopify.app.toml subscribes: each is a WebhookSubscriptionTopic of 2026-04
    (the three compliance topics are subscribed separately, as compliance_topics)."""
    from tests.shopify.schema import schema
    enum = set(schema().type_map["WebhookSubscriptionTopic"].values)
    assert "ORDERS_CREATE" in enum
    compliance = {"customers/data_request", "customers/redact", "shop/redact"}
    for topic in TOPICS:
        if topic not in compliance:
            assert topic.upper().replace("/", "_") in enum, topic


# ---------------------------------------------------------------------------- failures, re-drive


def test_a_transient_failure_is_recorded_and_raised_for_a_retry(client, shopify_shop, enqueued, monkeypatch):
    from connector.platforms.shopify import handlers
    deliver(client, "orders/create", payload("orders_create"))
    [row] = deliveries()
    monkeypatch.setitem(handlers.HANDLERS, "orders/create", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        process_delivery(row.id)
    db.session.expire_all()
    row = db.session.get(WebhookDelivery, row.id)
    assert row.processed_at is None and row.error == "OSError: disk full"


def test_a_refusal_shopify_will_repeat_closes_the_delivery(client, shopify_shop, enqueued, monkeypatch):
    from connector.platforms.shopify import handlers
    from connector.platforms.shopify.errors import ReconnectRequired

    def refuse(*_a):
        raise ReconnectRequired(SHOP_DOMAIN, "401")
    deliver(client, "returns/request", payload("returns_request"))
    monkeypatch.setitem(handlers.HANDLERS, "returns/request", refuse)
    row = process_delivery(deliveries()[0].id)
    assert row.processed_at is not None and "reconnect" in row.error


def test_the_reconciler_re_drives_deliveries_whose_job_was_lost(client, shopify_shop, enqueued):
    from datetime import timedelta

    from connector.platforms.shopify.handlers import redrive_deliveries
    deliver(client, "orders/create", payload("orders_create"))
    deliver(client, "orders/create", b"[]")
    [lost, closed] = deliveries()
    process_delivery(closed.id)  # closed with its error
    enqueued.clear()
    assert redrive_deliveries() == 0  # too fresh: its job may still be on its way
    later = lost.received_at + timedelta(minutes=6)
    assert redrive_deliveries(now=later) == 1
    assert enqueued == [("shopify_webhook", {"delivery_id": lost.id})]
    process_delivery(lost.id)
    enqueued.clear()
    assert redrive_deliveries(now=later) == 0 and enqueued == []
    assert closed.error
