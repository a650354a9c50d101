"""One shop's whole life with the Shopify app, through the app's real endpoints and jobs:

    install      the merchant opens the app home for a shop never seen: token exchange (an expiring
                 offline token), ShopInfo, the shop row with sealed tokens, the backfill started
    backfill     the backfill job polls the bulk operation and imports its JSONL file
    webhook      orders/create (and the parcel's `delivered` fulfilment event) for a new order
    return       the shopper signs in through the app proxy with order number and email, picks two
                 items with reasons, a drop-off label of the sandbox carrier, confirms: a Shopify
                 return (ReturnCreate), the label, its tracking (ReverseDeliveryCreateWithShipping)
    warehouse    the merchant marks it received and grades the items A and C in the embedded admin:
                 ReverseFulfillmentOrderDispose RESTOCKED at the shop's location and NOT_RESTOCKED
    refund       the page shows the amount; one click sends exactly one RefundCreate under the Refund
                 row's key; a second click sends nothing; Shopify's refunds/create echo changes nothing

Shopify is played only by `responses`: the token endpoint, the Admin GraphQL endpoint (ShopifyStub:
every document and variables dict validated against Admin 2026-04; returns and refunds kept by
ShopifyReturnsFake) and the bulk file's storage link. Nothing of the connector is patched.
"""
from __future__ import annotations

import base64
import json
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import pytest
import responses
from sqlalchemy import func, select

from connector import db
from connector.platforms.shopify import credentials
from connector.platforms.shopify.client import METER
from connector.returns import lifecycle as lc
from connector.returns import services
from connector.returns.models import Order, Refund, Return, Shop, WebhookDelivery
from tests.portal.conftest import _fresh_g, address_form, reason_id
from tests.shopify.conftest import API_KEY, API_SECRET
from tests.shopify.deliveries import deliver, order_payload, payload
from tests.shopify.factories import line_gid, order_gid
from tests.shopify.order_nodes import jsonl, line_node, order_node
from tests.shopify.returns_fake import ShopifyReturnsFake
from tests.shopify.session_token import session_token
from tests.shopify.stub import ShopifyStub
from tests.shopify.test_proxy import Storefront, proxied_page

DOMAIN = "alpine-goods.myshopify.com"
HANDLE = "alpine-goods"
HOST = base64.b64encode(b"admin.shopify.com/store/alpine-goods").decode().rstrip("=")
LOCATION = "gid://shopify/Location/8802"
OPERATION = "gid://shopify/BulkOperation/990011"
FILE_URL = ("https://storage.googleapis.com/shopify-tiers-assets-prod-us-east1/bulk-operation-outputs/"
            "alpine-goods-final?GoogleAccessId=assets-us-prod%40shopify-tiers.iam.gserviceaccount.com"
            "&Expires=1800000000&Signature=xyz&response-content-type=application%2Fjsonl")
SCOPES = "write_orders,read_all_orders,write_returns,read_customers,read_locations,read_fulfillments"
COST = {"requestedQueryCost": 4, "actualQueryCost": 4,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1996, "restoreRate": 100.0}}
PREFIX = "/apps/returns"
NEW_ORDER = "3104"
EMAIL = "lena.berger@example.de"


# ---------------------------------------------------------------------------- Shopify's answers


def token_answer() -> dict:
    """The token endpoint's answer for an expiring offline token (token exchange docs)."""
    return {"access_token": "shpat_alpine_1", "expires_in": 3600, "refresh_token": "shprt_alpine_1",
            "refresh_token_expires_in": 7776000, "scope": SCOPES}


def shop_info() -> dict:
    return {"data": {
        "shop": {"id": "gid://shopify/Shop/771100", "name": "Alpine Goods GmbH", "myshopifyDomain": DOMAIN,
                 "email": "owner@alpine-goods.example", "contactEmail": "service@alpine-goods.example",
                 "currencyCode": "EUR", "ianaTimezone": "Europe/Vienna", "shopAddress": {"countryCodeV2": "AT"}},
        "shopLocales": [{"locale": "de", "primary": True}, {"locale": "en", "primary": False}],
        "locations": {"nodes": [
            {"id": "gid://shopify/Location/8801", "name": "Showroom", "isActive": True, "shipsInventory": False,
             "fulfillsOnlineOrders": False},
            {"id": LOCATION, "name": "Lager Innsbruck", "isActive": True, "shipsInventory": True,
             "fulfillsOnlineOrders": True}]},
    }, "extensions": {"cost": COST}}


def bulk_run_answer() -> dict:
    return {"data": {"bulkOperationRunQuery": {
        "bulkOperation": {"id": OPERATION, "status": "CREATED", "createdAt": "2026-05-01T08:00:00Z"},
        "userErrors": []}}, "extensions": {"cost": COST}}


def bulk_operation(status: str, url: str | None = None, objects: str = "0") -> dict:
    return {"data": {"node": {
        "id": OPERATION, "status": status, "errorCode": None, "objectCount": objects, "rootObjectCount": "0",
        "fileSize": "2048" if url else None, "createdAt": "2026-05-01T08:00:00Z",
        "completedAt": "2026-05-01T08:02:00Z" if status == "COMPLETED" else None,
        "url": url, "partialDataUrl": None}}, "extensions": {"cost": COST}}


def backfill_orders() -> list[dict]:
    return [
        order_node("3101", email="Jana@Example.at", lines=[
            line_node("3101", 1, title="Merino Hoodie", price="119.00", tax="19.83"),
            line_node("3101", 2, title="Beanie", price="29.00", quantity=2, tax="9.67")]),
        order_node("3102", email="marco@example.it", lines=[line_node("3102", 1, title="Down Jacket",
                                                                      price="249.00", tax="41.50")]),
        order_node("3103", email="jana@example.at", lines=[line_node("3103", 1, title="Trail Socks",
                                                                     price="14.90", tax="2.48")]),
    ]


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------- the merchant's admin


def admin_url(path: str = "", **extra) -> str:
    """An embedded admin URL as App Bridge opens it (shop, host, the admin's language)."""
    return f"/admin/{HANDLE}/{path}?" + urlencode({"shop": DOMAIN, "host": HOST, "lang": "en", **extra})


def admin_get(client, path: str):
    _fresh_g()
    resp = client.get(admin_url(path, id_token=session_token(DOMAIN)))
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    assert f"frame-ancestors https://{DOMAIN} https://admin.shopify.com" in resp.headers["Content-Security-Policy"]
    return resp.get_data(as_text=True)


def admin_post(client, path: str, data: dict):
    """A form of the embedded admin, posted with a fresh session token (embedded.js puts one in)."""
    _fresh_g()
    resp = client.post(admin_url(path), data={"id_token": session_token(DOMAIN), **data})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    _fresh_g()
    page = client.get(resp.headers["Location"])  # carries the notice and the token
    assert page.status_code == 200
    return page.get_data(as_text=True)


def refund_card(html: str) -> str:
    return html.split('id="refund-title"', 1)[1].split("</section>", 1)[0]


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def fresh_meter():
    METER.clear()


@pytest.fixture
def token_requests(rsps):
    bodies: list[dict] = []

    def answer(request):
        bodies.append(json.loads(request.body))
        return 200, {}, json.dumps(token_answer())

    rsps.add_callback(responses.POST, f"https://{DOMAIN}/admin/oauth/access_token", callback=answer,
                      content_type="application/json")
    return bodies


def the_order(shop: Shop, number: str) -> Order | None:
    return db.session.scalar(select(Order).where(Order.shop_id == shop.id, Order.number == number))


# ---------------------------------------------------------------------------- the test


def test_a_shop_from_install_to_refund(app, client, rsps, token_requests, outbox):
    shopify = ShopifyStub(rsps, DOMAIN)
    shopify.on("ShopInfo", shop_info())
    shopify.on("BulkOrdersRun", bulk_run_answer())
    assert db.session.scalar(select(Shop).where(Shop.domain == DOMAIN)) is None  # never seen before

    # ======================================================================= 1. install
    id_token = session_token(DOMAIN)
    _fresh_g()
    home = client.get("/shopify/?" + urlencode({"embedded": "1", "shop": DOMAIN, "host": HOST, "locale": "en-GB",
                                                 "id_token": id_token}))
    assert home.status_code == 302, home.get_data(as_text=True)
    assert urlsplit(home.headers["Location"]).path == f"/admin/{HANDLE}/"
    assert f"frame-ancestors https://{DOMAIN} https://admin.shopify.com" in home.headers["Content-Security-Policy"]

    # The token exchange, as documented: the session token for an expiring offline token.
    assert token_requests == [{
        "client_id": API_KEY, "client_secret": API_SECRET,
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": id_token, "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token", "expiring": "1"}]
    shop = db.session.scalar(select(Shop).where(Shop.domain == DOMAIN))
    assert (shop.platform, shop.handle, shop.active, shop.name) == ("shopify", HANDLE, True, "Alpine Goods GmbH")
    assert (shop.currency, shop.timezone, shop.locale, shop.country) == ("EUR", "Europe/Vienna", "de", "AT")
    assert shop.platform_data["location_id"] == LOCATION  # active, ships inventory: where A items go back
    assert shop.platform_data["installed_at"] and not shop.platform_data.get("install_pending")
    # Sealed: no token readable in the row; the stored tokens are the exchanged ones.
    assert b"shpat_" not in shop.credentials and b"shprt_" not in shop.credentials
    stored = credentials.load(shop)
    assert (stored.access_token, stored.refresh_token) == ("shpat_alpine_1", "shprt_alpine_1")
    now = datetime.now(timezone.utc)
    assert now + timedelta(minutes=58) < stored.expires_at <= now + timedelta(hours=1)
    assert shopify.requests("ShopInfo")[0].headers["X-Shopify-Access-Token"] == "shpat_alpine_1"

    # The backfill job ran inline with the install and started the bulk operation.
    (run,) = shopify.calls("BulkOrdersRun")
    assert run["groupObjects"] is True and "created_at:>=" in run["query"] and "lineItems" in run["query"]
    assert shop.platform_data["backfill"]["id"] == OPERATION
    assert shop.platform_data["backfill"]["status"] == "CREATED"

    # The merchant lands on the embedded returns list (App Bridge, framed by their admin only).
    _fresh_g()
    listing = client.get(home.headers["Location"])
    assert listing.status_code == 200
    assert f'<meta name="shopify-api-key" content="{API_KEY}">' in listing.get_data(as_text=True)

    # ======================================================================= 2. backfill
    from connector import tasks

    shopify.on("BulkOperationGet", [bulk_operation("RUNNING", objects="3"),
                                    bulk_operation("COMPLETED", url=FILE_URL, objects="7")])
    rsps.add(responses.GET, FILE_URL, body=jsonl(backfill_orders()), content_type="application/jsonl")
    tasks.shopify_backfill.call_local(shop.id)  # as the scheduled job comes back while Shopify works
    db.session.refresh(shop)
    assert shop.platform_data["backfill"]["status"] == "RUNNING"
    tasks.shopify_backfill.call_local(shop.id)
    db.session.refresh(shop)
    assert shop.platform_data["backfill"]["status"] == "IMPORTED"
    assert shop.platform_data["backfill"]["imported"] == 3
    assert shopify.calls("BulkOperationGet") == [{"id": OPERATION}] * 2
    download = [c for c in rsps.calls if c.request.url == FILE_URL]
    assert len(download) == 1 and "X-Shopify-Access-Token" not in download[0].request.headers
    first = the_order(shop, "3101")
    assert first.platform_id == order_gid("3101") and first.email == "jana@example.at"
    assert first.customer_platform_id == "gid://shopify/Customer/903101"
    assert [(l.platform_id, l.title, l.quantity, l.unit_price) for l in first.lines] == [
        (line_gid("3101", 1), "Merino Hoodie", 1, Decimal("119.00")),
        (line_gid("3101", 2), "Beanie", 2, Decimal("29.00"))]
    assert the_order(shop, "3102").lines[0].title == "Down Jacket"
    assert the_order(shop, "3103") is not None
    assert len(shopify.calls("BulkOrdersRun")) == 1

    # ======================================================================= 3. orders/create webhook
    placed = now - timedelta(days=4)
    order_data = order_payload(NEW_ORDER, updated_at=iso(placed), email=EMAIL, lines=3,
                               title="Aviator sunglasses")
    order_data.update(created_at=iso(placed), processed_at=iso(placed), contact_email=EMAIL,
                      financial_status="paid", test=False, customer_locale="en")
    order_data["customer"].update(email=EMAIL, first_name="Lena", last_name="Berger")
    order_data["shipping_address"].update(
        first_name="Lena", last_name="Berger", name="Lena Berger", company=None, address1="Maria-Theresien-Str. 18",
        city="Innsbruck", zip="6020", province="Tirol", province_code=None, country="Austria", country_code="AT",
        phone="+43 512 123456")
    resp = deliver(client, "orders/create", order_data, shop=DOMAIN)
    assert resp.status_code == 200
    delivery = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.topic == "orders/create"))
    assert delivery.shop_id == shop.id and delivery.processed_at is not None and delivery.error is None

    db.session.expire_all()
    order = the_order(shop, NEW_ORDER)
    # The ids the webhook (REST) gives are the GraphQL GIDs the Admin API uses for the same objects.
    assert order.platform_id == order_gid(NEW_ORDER)
    assert [(l.platform_id, l.title, l.unit_price) for l in order.lines] == [
        (line_gid(NEW_ORDER, 1), "Aviator sunglasses", Decimal("89.99")),
        (line_gid(NEW_ORDER, 2), "Mid-century lounger", Decimal("159.99")),
        (line_gid(NEW_ORDER, 3), "Coffee table", Decimal("119.99"))]
    assert (order.email, order.currency, order.total) == (EMAIL, "EUR", Decimal("359.97"))
    assert order.customer_platform_id == "gid://shopify/Customer/115310627314723954"
    assert order.delivered_at is None and order.fulfilled_at is None  # a new order: nothing sent yet

    # The parcel is delivered (the carrier's fulfilment event): the return window starts.
    delivered = now - timedelta(days=2)
    event = payload("fulfillment_events_create")
    event.update(order_id=int(order_gid(NEW_ORDER).rsplit("/", 1)[1]), status="delivered",
                 message="Delivered", happened_at=iso(delivered), created_at=iso(delivered),
                 updated_at=iso(delivered), country="AT")
    assert deliver(client, "fulfillment_events/create", event, shop=DOMAIN).status_code == 200
    db.session.expire_all()
    order = the_order(shop, NEW_ORDER)
    assert order.delivered_at.replace(microsecond=0) == delivered.replace(microsecond=0)

    # ======================================================================= 4. the shopper's return (app proxy)
    fake = ShopifyReturnsFake(shopify, shop)
    storefront = Storefront(app.test_client(use_cookies=False), domain=DOMAIN)  # asserts no Set-Cookie, ever
    proxied_page(storefront.get(f"{PREFIX}/"))
    resp = storefront.submit(f"{PREFIX}/?", {"order_number": f"#{NEW_ORDER}", "contact": EMAIL})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(f"{PREFIX}/orders/{order.id}/items?ps=")
    page = proxied_page(storefront.follow(resp))
    assert "Aviator sunglasses" in page and "Mid-century lounger" in page

    sunglasses, lounger = order.lines[0], order.lines[1]
    resp = storefront.submit(None, {
        f"line-{sunglasses.id}-quantity": "1", f"line-{sunglasses.id}-reason": str(reason_id(shop, "too_small")),
        f"line-{lounger.id}-quantity": "1", f"line-{lounger.id}-reason": str(reason_id(shop, "changed_mind")),
        f"line-{lounger.id}-comment": "Does not fit the living room"})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(f"{PREFIX}/orders/{order.id}/method?ps=")
    page = proxied_page(storefront.follow(resp))
    assert 'value="dropoff"' in page  # the policy's label method (sandbox carrier)
    resp = storefront.submit(None, {"method": "dropoff"})
    assert resp.headers["Location"].startswith(f"{PREFIX}/orders/{order.id}/instructions?ps=")
    page = proxied_page(storefront.follow(resp))
    codes = re.findall(r'name="checklist" id="checklist-([a-z_]+)"', page)
    assert codes
    resp = storefront.submit(None, address_form(order) + [("checklist", c) for c in codes])
    assert resp.headers["Location"].startswith(f"{PREFIX}/orders/{order.id}/summary?ps=")
    proxied_page(storefront.follow(resp))
    assert shopify.calls("ReturnCreate") == []  # nothing reaches Shopify before the shopper confirms

    resp = storefront.submit("/confirm")
    ret = db.session.scalar(select(Return).where(Return.shop_id == shop.id, Return.order_id == order.id))
    assert resp.headers["Location"].startswith(f"{PREFIX}/returns/{ret.rma}/confirmed?ps=")
    page = proxied_page(storefront.follow(resp))
    assert ret.rma in page and f'href="{PREFIX}/returns/{ret.rma}/label.pdf?ps=' in page
    label = storefront.get(next(u for u in storefront.page.urls if "/label.pdf" in u))
    assert label.status_code == 200 and label.mimetype == "application/pdf" and label.data.startswith(b"%PDF")

    db.session.expire_all()
    ret = db.session.get(Return, ret.id)
    assert ret.state == lc.LABEL_READY and ret.method == "dropoff"  # auto-approved, label made
    shipment = ret.shipment
    assert shipment.carrier == "sandbox" and re.fullmatch(r"SBX\d{10}", shipment.tracking_number)
    assert shipment.label_key

    # The Shopify return: approved here at once, so returnCreate (OPEN), lines by fulfilment line.
    assert shopify.calls("ReturnRequest") == [] and shopify.calls("ReturnApproveRequest") == []
    (created,) = shopify.calls("ReturnCreate")
    assert created["returnInput"]["orderId"] == order_gid(NEW_ORDER)
    assert created["returnInput"]["returnLineItems"] == [
        {"fulfillmentLineItemId": fake.fli(line_gid(NEW_ORDER, 1)), "quantity": 1,
         "returnReasonDefinitionId": fake.reasons["too-small"],
         "returnReasonNote": "Zu klein"},  # no comment: the reason's label, in the shop's language
        {"fulfillmentLineItemId": fake.fli(line_gid(NEW_ORDER, 2)), "quantity": 1,
         "returnReasonDefinitionId": fake.reasons["changed-mind"],
         "returnReasonNote": "Does not fit the living room"}]
    assert created["returnInput"]["requestedAt"].endswith("Z")
    native = fake.returns[ret.platform_id]
    assert native["status"] == ret.platform_status == "OPEN"
    rfo = native["rfos"][0]
    assert [line.platform_id for line in ret.lines] == [rli["id"] for rli in native["lines"]]

    # The sandbox label's tracking (and the label's public link) on the reverse delivery.
    (reverse,) = shopify.calls("ReverseDeliveryCreateWithShipping")
    assert reverse["reverseFulfillmentOrderId"] == rfo["id"]
    assert reverse["reverseDeliveryLineItems"] == [
        {"reverseFulfillmentOrderLineItemId": line["id"], "quantity": 1} for line in rfo["lines"]]
    assert reverse["trackingInput"] == {"number": shipment.tracking_number}
    assert reverse["notifyCustomer"] is False
    assert reverse["labelInput"]["fileUrl"].startswith(
        f"https://returns.example.com/portal/{HANDLE}/returns/{ret.rma}/label.pdf?t=")
    assert shipment.platform_id == rfo["deliveries"][0]["id"]

    # ======================================================================= 5. receipt and grading
    page = admin_get(client, f"returns/{ret.id}")
    assert ret.rma in page and "Receive the parcel" in page
    a_line, c_line = ret.lines
    page = admin_post(client, f"returns/{ret.id}/receive", {f"received-{a_line.id}": "1",
                                                            f"received-{c_line.id}": "1"})
    assert f"Return {ret.rma} marked as received." in page
    db.session.expire_all()
    ret = db.session.get(Return, ret.id)
    assert ret.state == lc.RECEIVED and [l.received_quantity for l in ret.lines] == [1, 1]
    assert shopify.calls("ReverseFulfillmentOrderDispose") == []

    page = admin_post(client, f"returns/{ret.id}/inspect", {
        f"grade-{a_line.id}": "A", f"disposition-{a_line.id}": "restock", f"note-{a_line.id}": "As new",
        f"grade-{c_line.id}": "C", f"disposition-{c_line.id}": "dispose", f"note-{c_line.id}": "Scratched"})
    assert "Grading saved." in page
    db.session.expire_all()
    ret = db.session.get(Return, ret.id)
    assert ret.state == lc.INSPECTED
    assert [(l.grade, l.disposition) for l in ret.lines] == [("A", "restock"), ("C", "dispose")]
    assert all(l.platform_data["disposed"] for l in ret.lines)
    (disposed,) = shopify.calls("ReverseFulfillmentOrderDispose")
    assert disposed["dispositionInputs"] == [
        {"reverseFulfillmentOrderLineItemId": rfo["lines"][0]["id"], "quantity": 1, "dispositionType": "RESTOCKED",
         "locationId": LOCATION},
        {"reverseFulfillmentOrderLineItemId": rfo["lines"][1]["id"], "quantity": 1,
         "dispositionType": "NOT_RESTOCKED"}]
    assert [line["dispositions"] for line in rfo["lines"]] == [
        [{"quantity": 1, "type": "RESTOCKED", "location": LOCATION}],
        [{"quantity": 1, "type": "NOT_RESTOCKED", "location": None}]]
    assert native["status"] == "OPEN"  # not refunded yet

    # ======================================================================= 6. one-click refund
    plan = services.refund_preview(ret)
    assert plan.total == Decimal("89.99") + Decimal("159.99") - Decimal("3.95")  # the drop-off fee kept back
    card = refund_card(admin_get(client, f"returns/{ret.id}"))
    assert "Aviator sunglasses × 1" in card and "Mid-century lounger × 1" in card
    assert re.search(rf'Total refund</td><td class="num">{re.escape(str(plan.total))} EUR<', card)
    assert f'name="expected_total" value="{plan.total}"' in card
    assert f"Refund {plan.total} EUR" in card and "Refunded to: the original payment method" in card
    assert shopify.calls("RefundCreate") == [] and db.session.scalar(
        select(func.count()).select_from(Refund).where(Refund.shop_id == shop.id)) == 0

    page = admin_post(client, f"returns/{ret.id}/refund", {"expected_total": str(plan.total)})
    db.session.expire_all()
    ret = db.session.get(Return, ret.id)
    (refund,) = db.session.scalars(select(Refund).where(Refund.shop_id == shop.id)).all()
    assert refund.state == "succeeded" and ret.state == lc.REFUNDED
    (sent,) = shopify.calls("RefundCreate")
    assert sent["idempotencyKey"] == refund.idempotency_key
    assert b"@idempotent(key: $idempotencyKey)" in shopify.requests("RefundCreate")[0].body
    assert sent["input"] == {
        "orderId": order_gid(NEW_ORDER), "currency": "EUR", "notify": False,
        "note": f"Returns Connector {ret.rma} [{refund.idempotency_key}]",
        # a native return's stock moves with its dispositions, never with the refund as well
        "refundLineItems": [{"lineItemId": line_gid(NEW_ORDER, 1), "quantity": 1, "restockType": "NO_RESTOCK"},
                            {"lineItemId": line_gid(NEW_ORDER, 2), "quantity": 1, "restockType": "NO_RESTOCK"}],
        "discrepancyReason": "OTHER",
        "transactions": [{"orderId": order_gid(NEW_ORDER), "parentId": "gid://shopify/OrderTransaction/42",
                          "gateway": "shopify_payments", "kind": "REFUND", "amount": str(plan.total)}]}
    assert refund.amount == plan.total
    assert len(fake.refunds) == 1 and fake.refunds[0]["amount"] == str(plan.total)
    assert refund.platform_refund_id == fake.refunds[0]["id"]
    assert f"Refunded {plan.total} EUR to the shopper." in page
    assert "Shopify refund" in page and refund.platform_refund_id in page
    # Refunded and every line disposed: the Shopify return is closed.
    assert shopify.calls("ReturnClose") == [{"id": ret.platform_id}]
    assert native["status"] == ret.platform_status == "CLOSED"

    # A second click (another tab) sends nothing more.
    page = admin_post(client, f"returns/{ret.id}/refund", {"expected_total": str(plan.total)})
    assert f"The refund for {ret.rma} was already made; nothing more was done." in page
    assert len(shopify.calls("RefundCreate")) == 1 and len(fake.refunds) == 1
    assert db.session.scalar(select(func.count()).select_from(Refund).where(Refund.shop_id == shop.id)) == 1

    # Shopify's refunds/create for our own refund settles nothing twice and counts no units twice.
    echo = payload("refunds_create")
    refund_number = int(refund.platform_refund_id.rsplit("/", 1)[1])
    echo.update(id=refund_number, admin_graphql_api_id=refund.platform_refund_id, note=sent["input"]["note"],
                order_id=int(order_gid(NEW_ORDER).rsplit("/", 1)[1]), created_at=iso(datetime.now(timezone.utc)))
    for item, position in zip(echo["refund_line_items"], (1, 2)):
        gid = line_gid(NEW_ORDER, position)
        item.update(line_item_id=int(gid.rsplit("/", 1)[1]))
        item["line_item"].update(id=int(gid.rsplit("/", 1)[1]), admin_graphql_api_id=gid)
    assert deliver(client, "refunds/create", echo, shop=DOMAIN).status_code == 200
    db.session.expire_all()
    settled = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.topic == "refunds/create"))
    assert settled.processed_at is not None and settled.error is None
    refund = db.session.get(Refund, refund.id)
    assert refund.state == "succeeded" and refund.platform_refund_id == fake.refunds[0]["id"]
    assert [l.refunded_quantity for l in the_order(shop, NEW_ORDER).lines] == [0, 0, 0]
    assert db.session.get(Return, ret.id).state == lc.REFUNDED

    # ======================================================================= every call, counted
    assert Counter(name for name, _v, _r in shopify.log) == {
        "ShopInfo": 1, "BulkOrdersRun": 1, "BulkOperationGet": 2,
        "ReturnReasonDefinitions": 1, "ReturnableFulfillments": 1, "ReturnCreate": 1,
        "ReverseDeliveryCreateWithShipping": 1, "ReverseFulfillmentOrderDispose": 1,
        "OrderTransactions": 1, "RefundCreate": 1, "ReturnClose": 1,
        # read back after returnCreate (its ids), before the reverse delivery and before the dispositions
        "ReturnGet": 3,
    }
    assert len(token_requests) == 1  # one exchange; the hour-long token needed no refresh
    assert all(call.request.headers.get("X-Shopify-Access-Token") == "shpat_alpine_1"
               for call in rsps.calls if call.request.url.endswith("/graphql.json"))
    mails = [m["To"] for m in outbox()]
    assert EMAIL in mails  # the shopper heard from us (Shopify was told notify false)

